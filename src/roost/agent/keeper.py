"""A host's fence keeper: fencing that does not depend on the agent running.

The agent fences its watched machines itself when its lease runs out (agent/uplink.py), but a frozen agent
(SIGSTOP, a stuck disk, a debugger) or a crashed one cannot: its machines would keep running while the
control plane, hearing nothing, starts their standbys elsewhere. So each host also runs this small process,
in a session of its own, that knows only a lease and what to kill:

- the agent writes `keeper/lease.json` (0600) every time its lease moves: until when (CLOCK_MONOTONIC, the
  same clock in every process of the host) and, for each watched machine, its run's pid and the cgroup
  files listing its processes;
- every 50 ms the keeper reads it; once `until` has passed it SIGKILLs every process of every watched
  machine (its process group, and everything its cgroups list, thawed first so a frozen machine dies too),
  records the end in the host's run log and leaves a marker `keeper/fenced/<id>`, so that the agent, when
  it runs again, treats the exit as fencing (the control plane decides what runs), not as a crash to
  restart.

The keeper fences at the same moment the agent's own watchdog would (last contact + lease), and the
control plane starts a standby only after last heartbeat + lease + margin, so even a frozen agent's
machines are gone first. It exits when the agent has stopped cleanly (it writes `stop`), or when the
agent is gone and nothing is left to fence. A paused VM pauses the keeper too, but then its machines are
paused as well; at resume the keeper finds the lease long expired and kills them within one tick.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from roost import logsetup
from roost.pids import pid_alive

log = logging.getLogger("roost.agent.keeper")

TICK = 0.05
MAX_MACHINES = 10_000


class KeeperFiles:
    """The files the agent and its keeper share, in the agent's data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "keeper"
        self.lease = self.dir / "lease.json"
        self.pid = self.dir / "keeper.pid"
        self.fenced = self.dir / "fenced"
        self.runs_log = data_dir / "runs.log"
        self.log = self.dir / "keeper.log"

    def prepare(self) -> None:
        self.fenced.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)

    def write_lease(self, until: float, agent_pid: int, machines: list[dict[str, Any]], stop: bool = False) -> None:
        body = json.dumps({"until": until, "agent_pid": agent_pid, "machines": machines, "stop": stop})
        tmp = self.lease.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        os.replace(tmp, self.lease)

    def read_lease(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.lease.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _marker(self, machine_id: str) -> Path:
        if not machine_id.isalnum():  # machine ids are hex: nothing else names a file here
            raise ValueError(f"not a machine id: {machine_id!r}")
        return self.fenced / machine_id

    def mark_fenced(self, machine_id: str) -> None:
        self._marker(machine_id).write_text(f"{time.time():.6f}\n")

    def take_fenced(self, machine_id: str) -> bool:
        """Whether the keeper fenced this machine since the agent last looked (and forget it)."""
        try:
            self._marker(machine_id).unlink()
            return True
        except (OSError, ValueError):
            return False

    def keeper_pid(self) -> int | None:
        try:
            pid = int(self.pid.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"roost.agent.keeper" in cmdline else None


class KeeperClient:
    """The agent's side: start the keeper (or find the one already running) and keep its lease current."""

    def __init__(self, data_dir: Path) -> None:
        self.files = KeeperFiles(data_dir)
        self._last: tuple[float, str] | None = None
        self.pid: int | None = None
        self._checked = 0.0

    def start(self) -> int:
        """Find the host's keeper (one may outlive a crashed agent, and fences for it) or start one."""
        self.files.prepare()
        pid = self.files.keeper_pid()
        if pid is not None:
            self.pid = pid
            return pid
        # A new keeper must not act on a lease left by an agent that is gone: this one holds it now.
        self.files.write_lease(0.0, os.getpid(), [])
        self._last = None
        with open(self.files.log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "roost.agent.keeper", str(self.files.dir.parent)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                    close_fds=True)
        self.files.pid.write_text(f"{proc.pid}\n")
        self.pid = proc.pid
        return proc.pid

    def publish(self, until: float, machines: list[dict[str, Any]]) -> None:
        """The lease runs until `until` (monotonic) for these watched machines; written only when it moved
        by a tick or the machines changed."""
        now = time.monotonic()
        if now - self._checked > 1.0:  # a keeper that ended (its agent seemed gone) is started again
            self._checked = now
            if self.pid is None or not pid_alive(self.pid):
                with contextlib.suppress(OSError):
                    self.start()
        key = json.dumps(machines, sort_keys=True)
        if self._last is not None and self._last[1] == key and abs(self._last[0] - until) < TICK:
            return
        self._last = (until, key)
        with contextlib.suppress(OSError):
            self.files.write_lease(until, os.getpid(), machines)

    def stop(self, timeout: float = 2.0) -> None:
        """The agent stops cleanly: the keeper ends without fencing anything."""
        with contextlib.suppress(OSError):
            self.files.write_lease(0.0, os.getpid(), [], stop=True)
        pid = self.files.keeper_pid()
        deadline = time.monotonic() + timeout
        while pid is not None and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(TICK)


def fence_machine(entry: dict[str, Any]) -> bool:
    """SIGKILL every process of one machine: thaw its freezer cgroups (a frozen process dies only once
    thawed), kill its process group and everything its cgroups list, until they list nothing (bounded).
    Returns whether anything of it was still running."""
    for pair in entry.get("thaw") or []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            state, value = pair
            Path(state).write_text(str(value))
    pid = entry.get("pid")
    found = False
    if isinstance(pid, int) and pid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            found = True
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        left = 0
        for procs in entry.get("procs") or []:
            try:
                pids = [int(p) for p in Path(procs).read_text().split()]
            except (OSError, ValueError):
                continue
            for other in pids:
                if other > 1 and other != os.getpid():
                    left += 1
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(other, signal.SIGKILL)
        if not left:
            return found
        found = True
        time.sleep(0.01)
    return found


def run(data_dir: Path) -> None:
    files = KeeperFiles(data_dir)
    files.prepare()
    fenced_until: float | None = None  # the lease we have fenced for (a new lease re-arms)
    seen_mtime = -1
    lease: dict[str, Any] | None = None
    log.info("fence keeper for %s (pid %d)", data_dir, os.getpid())
    while True:
        try:
            mtime = files.lease.stat().st_mtime_ns
        except OSError:
            mtime = -1
        if mtime != seen_mtime:
            seen_mtime = mtime
            lease = files.read_lease()
        if lease is not None:
            if lease.get("stop"):
                log.info("the agent stopped: keeper done")
                return
            until = float(lease.get("until") or 0.0)
            machines = [m for m in (lease.get("machines") or [])[:MAX_MACHINES] if isinstance(m, dict)]
            agent_alive = pid_alive(int(lease.get("agent_pid") or 0))
            if machines and time.monotonic() > until and fenced_until != until:
                fenced_until = until
                log.warning("lease ran out %.2fs ago%s: fencing %s", time.monotonic() - until,
                            "" if agent_alive else " (the agent is gone)",
                            ", ".join(str(m.get("id")) for m in machines))
                for entry in machines:
                    mid = str(entry.get("id") or "")
                    # The marker first: a running agent may see the exit before this loop goes on, and must
                    # know it was fencing (never a crash to restart).
                    with contextlib.suppress(OSError, ValueError):
                        files.mark_fenced(mid)
                    if not fence_machine(entry):
                        files.take_fenced(mid)  # already gone (with its host, or on its own): nothing done
                        continue
                    with contextlib.suppress(OSError), open(files.runs_log, "a") as fh:
                        fh.write(json.dumps({"machine": mid, "pid": entry.get("pid"), "event": "end",
                                             "time": time.time(), "reason": "fenced"}) + "\n")
            if not agent_alive and (not machines or fenced_until == until):
                log.info("the agent is gone and nothing is left to fence: keeper done")
                return
        elif not pid_alive(os.getppid()) and not files.lease.exists():
            return
        time.sleep(TICK)


if __name__ == "__main__":
    logsetup.configure()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run(Path(sys.argv[1]))
