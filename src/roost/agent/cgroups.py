"""cgroup v1 helpers for the process driver: a memory cgroup (limit, OOM count), a freezer cgroup
(suspend/resume) and a pids cgroup (a bound on its processes) per machine, nested under the agent's own
cgroups. Everything is best effort: where the host does not allow cgroups, `Cgroups.available` is False and
the driver falls back to process groups and SIGSTOP/SIGCONT."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("roost.agent.cgroups")
ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str) -> str:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                return path
    except OSError:
        pass
    return "/"


class Cgroups:
    def __init__(self, host_id: str, enabled: bool = True) -> None:
        self.host_id = host_id
        self.memory_base, self.freezer_base, self.pids_base = self.bases(host_id)
        self.available = enabled and self._probe()
        self.limits_pids = self.available and self._probe_pids()

    @staticmethod
    def bases(host_id: str) -> tuple[Path, Path, Path]:
        """Where a host's machine cgroups live (memory, freezer, pids), under this process's own cgroups."""
        return (ROOT / "memory" / _own_path("memory").lstrip("/") / f"roost-{host_id}",
                ROOT / "freezer" / _own_path("freezer").lstrip("/") / f"roost-{host_id}",
                ROOT / "pids" / _own_path("pids").lstrip("/") / f"roost-{host_id}")

    def _probe_pids(self) -> bool:
        try:
            self.pids_base.mkdir(parents=True, exist_ok=True)
            return (self.pids_base / "pids.max").exists()
        except OSError:
            return False

    def _probe(self) -> bool:
        try:
            for base in (self.memory_base, self.freezer_base):
                base.mkdir(parents=True, exist_ok=True)
            return (self.memory_base / "cgroup.procs").exists() and (self.freezer_base / "freezer.state").exists()
        except OSError as exc:
            log.info("cgroups unavailable (%s): using process groups and SIGSTOP/SIGCONT", exc)
            return False

    def memory(self, machine_id: str) -> Path:
        return self.memory_base / machine_id

    def freezer(self, machine_id: str) -> Path:
        return self.freezer_base / machine_id

    def create(self, machine_id: str, memory_mb: int, pids_limit: int = 0) -> list[str]:
        """Make the machine's cgroups and set its memory and pids limits; returns the cgroup.procs files to join."""
        if not self.available:
            return []
        mem, frz = self.memory(machine_id), self.freezer(machine_id)
        mem.mkdir(exist_ok=True)
        frz.mkdir(exist_ok=True)
        self.thaw(machine_id)
        limit = str(memory_mb * 1024 * 1024)
        with contextlib.suppress(OSError):
            (mem / "memory.memsw.limit_in_bytes").write_text("-1")
        (mem / "memory.limit_in_bytes").write_text(limit)
        with contextlib.suppress(OSError):
            (mem / "memory.memsw.limit_in_bytes").write_text(limit)  # no swapping past the limit either
        files = [str(mem / "cgroup.procs"), str(frz / "cgroup.procs")]
        if self.limits_pids:
            pids = self.pids_base / machine_id
            pids.mkdir(exist_ok=True)
            (pids / "pids.max").write_text(str(pids_limit) if pids_limit > 0 else "max")
            files.append(str(pids / "cgroup.procs"))
        return files

    def memory_limit(self, machine_id: str) -> int | None:
        return read_limit(self.memory(machine_id) / "memory.limit_in_bytes") if self.available else None

    def set_memory_limit(self, machine_id: str, limit_bytes: int) -> None:
        mem = self.memory(machine_id)
        write_limit(mem / "memory.limit_in_bytes", limit_bytes, mem / "memory.memsw.limit_in_bytes")

    def pids(self, machine_id: str) -> list[int]:
        if not self.available:
            return []
        try:
            text = (self.freezer(machine_id) / "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def oom_kills(self, machine_id: str) -> int:
        try:
            for line in (self.memory(machine_id) / "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def freeze(self, machine_id: str, timeout: float = 2.0) -> bool:
        return self._set_freezer(machine_id, "FROZEN", timeout)

    def thaw(self, machine_id: str, timeout: float = 2.0) -> bool:
        return self._set_freezer(machine_id, "THAWED", timeout)

    def _set_freezer(self, machine_id: str, target: str, timeout: float) -> bool:
        return write_and_wait(self.freezer(machine_id) / "freezer.state", target, timeout, 0.001)

    def remove(self, machine_id: str) -> None:
        for path in (self.memory(machine_id), self.freezer(machine_id), self.pids_base / machine_id):
            with contextlib.suppress(OSError):
                os.rmdir(path)


def read_limit(path: Path) -> int | None:
    """A cgroup memory limit file (v1 memory.limit_in_bytes, v2 memory.max) in bytes; None if unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def write_limit(limit_file: Path, limit_bytes: int, swap_file: Path | None = None) -> None:
    """Set a memory limit (and its memory+swap twin on v1, raised first when growing, lowered after when
    shrinking, since the kernel keeps memsw >= memory). Raises OSError as the kernel answers: EBUSY when the
    machine uses more than the new limit and nothing can be reclaimed."""
    old = read_limit(limit_file) or 0
    value = str(limit_bytes)
    if swap_file is not None and swap_file.exists() and limit_bytes > old:
        swap_file.write_text(value)
    limit_file.write_text(value)
    if swap_file is not None and swap_file.exists() and limit_bytes <= old:
        swap_file.write_text(value)


def limit_refused(exc: OSError) -> str:
    """Why the kernel refused a new memory limit, in a user's terms."""
    if exc.errno == errno.EBUSY:
        return "the machine uses more memory than that and the kernel could not reclaim enough; ask for more"
    return f"the kernel refused the new memory limit: {exc.strerror or exc}"


def write_and_wait(state_file: Path, target: str, timeout: float, poll: float) -> bool:
    """Write a cgroup state file (freezer.state, cgroup.freeze) and wait until it reads back so; False if it
    did not within `timeout`, or the cgroup is gone."""
    try:
        state_file.write_text(target)
        deadline = time.monotonic() + timeout
        while state_file.read_text().strip() != target:
            if time.monotonic() > deadline:
                return False
            time.sleep(poll)
        return True
    except OSError:
        return False
