"""The process driver: a machine is a process group (and, where allowed, memory + freezer cgroups).

Each start copies the image into the machine's own rootfs directory (a stopped machine starts from a
fresh copy, as a Fly machine does); the workload runs with that directory as its working directory,
its output appended to the machine's log file. Processes are spawned with posix_spawn through a tiny
/bin/sh prologue that joins the cgroups and changes directory before exec'ing the command, so the pid
we hold is the workload's own. Exits are noticed through a pidfd on the event loop: no thread per
machine, and the same mechanism watches processes re-adopted after an agent restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal as signals
import time
from pathlib import Path
from typing import Any

from roost.agent import usage
from roost.agent.cgroups import Cgroups, limit_refused
from roost.agent.drivers.base import DriverError, ExecResult, ExitInfo, RunInfo, StartSpec, Usage
from roost.agent.drivers.commands import run_command
from roost.agent.drivers.pidwatch import PidWatcher, Watched, proc_start_time
from roost.agent.logrelay import machine_ends

log = logging.getLogger("roost.agent.process")

# $1 = working directory, $2 = number of cgroup.procs files that follow, then the files, then argv.
_PROLOGUE = (
    'd=$1; n=$2; shift 2; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 126; shift; n=$((n-1)); done; '
    'cd "$d" || exit 126; exec "$@"'
)
KILL_GRACE = 5.0
LOG_MAX_BYTES = 16 * 1024 * 1024
LOG_KEEP_BYTES = 4 * 1024 * 1024


def trim_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP_BYTES) -> None:
    """Keep a machine's log bounded: past max_bytes, keep only its last `keep` bytes (writers use O_APPEND)."""
    try:
        size = path.stat().st_size
        if size <= max_bytes:
            return
        with open(path, "r+b") as fh:
            fh.seek(size - keep)
            tail = fh.read()
            fh.seek(0)
            fh.write(tail)
            fh.truncate(len(tail))
    except OSError:
        pass


class ProcessDriver(PidWatcher):
    name = "process"
    isolated = False  # it shares the host's files, users, processes and network (docs/agent.md)

    def __init__(self, root: Path, cgroups: Cgroups) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.cgroups = cgroups
        super().__init__()

    # ---- paths ----

    def machine_dir(self, machine_id: str) -> Path:
        return self.root / machine_id

    def rootfs(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "rootfs"

    def log_path(self, machine_id: str) -> Path:
        return self.machine_dir(machine_id) / "machine.log"

    # ---- interface ----

    async def start(self, spec: StartSpec) -> RunInfo:
        mid = spec.machine_id
        if self.inspect(mid):
            raise DriverError(f"machine {mid} is already running")
        mdir = self.machine_dir(mid)
        mdir.mkdir(parents=True, exist_ok=True)
        rootfs = self.rootfs(mid)
        if spec.fresh_rootfs or not rootfs.exists():
            await asyncio.to_thread(_fresh_copy, spec.image_dir, rootfs)
        if spec.volume:
            _link_volume(rootfs, spec.volume[0], spec.volume[1])
        argv = resolve_argv(spec.argv, rootfs, spec.env.get("PATH", os.defpath))
        try:
            cgroup_files = self.cgroups.create(mid, spec.memory_mb, spec.pids_limit)
        except OSError as exc:
            log.warning("cgroups for %s: %s; running without limits", mid, exc)
            cgroup_files = []
        oom_before = self.cgroups.oom_kills(mid) if cgroup_files else 0
        log_path = self.log_path(mid)
        trim_log(log_path)
        ends = machine_ends(mdir)  # its stdout and stderr: FIFOs the relay reads into its log, line by line
        try:
            pid = os.posix_spawn(
                "/bin/sh", ["roost-init", "-c", _PROLOGUE, "roost-init", str(rootfs), str(len(cgroup_files)),
                            *cgroup_files, *argv],
                spec.env,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, ends["stdout"], 1),
                    (os.POSIX_SPAWN_DUP2, ends["stderr"], 2),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise DriverError(f"could not spawn machine {mid}: {exc}") from exc
        finally:
            for fd in ends.values():
                os.close(fd)
        self._relay(mid)
        started = proc_start_time(pid) or 0
        self._watch(mid, pid, child=True, oom_before=oom_before)
        return RunInfo(pid=pid, proc_start=started, started_at=time.time(), extra={"oom_before": oom_before})

    def signal(self, machine_id: str, signal: int) -> None:
        proc = self._running(machine_id)
        self._kill_group(machine_id, proc.pid, signal)

    async def stop(self, machine_id: str, signal: int, timeout: float) -> ExitInfo:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            return proc.exited.result() if proc else ExitInfo(exit_code=None, exited_at=time.time())
        if proc.suspended:
            await self.resume(machine_id)
        self._kill_group(machine_id, proc.pid, signal)
        try:
            return await asyncio.wait_for(asyncio.shield(proc.exited), timeout)
        except TimeoutError:
            pass
        proc.killed_by_us = True
        self._kill_group(machine_id, proc.pid, signals.SIGKILL)
        try:
            return await asyncio.wait_for(asyncio.shield(proc.exited), KILL_GRACE)
        except TimeoutError:
            raise DriverError(f"machine {machine_id} did not exit after SIGKILL") from None

    async def suspend(self, machine_id: str) -> bool:
        proc = self._running(machine_id)
        if self.cgroups.available and await asyncio.to_thread(self.cgroups.freeze, machine_id):
            proc.suspended = True
            return True
        self._kill_group(machine_id, proc.pid, signals.SIGSTOP)
        proc.suspended = True
        return True

    async def resume(self, machine_id: str) -> None:
        proc = self._running(machine_id)
        if self.cgroups.available:
            await asyncio.to_thread(self.cgroups.thaw, machine_id)
        self._kill_group(machine_id, proc.pid, signals.SIGCONT)
        proc.suspended = False

    async def recover(self, machine_id: str, info: RunInfo, suspended: bool) -> bool:
        if proc_start_time(info.pid) != info.proc_start or info.proc_start == 0:
            return False
        self._watch(machine_id, info.pid, child=False, oom_before=int(info.extra.get("oom_before", 0)))
        self._procs[machine_id].suspended = suspended
        self._relay(machine_id)
        return True

    async def destroy(self, machine_id: str) -> None:
        proc = self._procs.get(machine_id)
        if proc is not None and not proc.exited.done():
            proc.killed_by_us = True
            if proc.suspended and self.cgroups.available:
                self._kill_group(machine_id, proc.pid, signals.SIGKILL)
                await asyncio.to_thread(self.cgroups.thaw, machine_id)
            self._kill_group(machine_id, proc.pid, signals.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(proc.exited), KILL_GRACE)
        self._procs.pop(machine_id, None)
        self.kill_leftovers(machine_id)
        await asyncio.to_thread(shutil.rmtree, self.machine_dir(machine_id), True)
        self.cgroups.remove(machine_id)

    async def exec(self, machine_id: str, argv: list[str], env: dict[str, str], stdin: bytes,
                   timeout: float) -> ExecResult:
        """Run a command beside the machine, in its directory and environment (on the host: nothing isolates it)."""
        proc = self._running(machine_id)
        if proc.suspended:
            raise DriverError(f"machine {machine_id} is suspended: start it before running commands in it")
        rootfs = self.rootfs(machine_id)
        resolved = resolve_argv(argv, rootfs, env.get("PATH", os.defpath))
        return await run_command(resolved, stdin=stdin, timeout=timeout, env=env, cwd=rootfs)

    def console_command(self, machine_id: str, argv: list[str],
                        env: dict[str, str]) -> tuple[list[str], Path | None, dict[str, str]]:
        proc = self._running(machine_id)
        if proc.suspended:
            raise DriverError(f"machine {machine_id} is suspended: start it before opening a console in it")
        rootfs = self.rootfs(machine_id)
        return resolve_argv(argv, rootfs, env.get("PATH", os.defpath)), rootfs, {**env, "TERM": "xterm"}

    def processes(self, machine_id: str) -> list[int]:
        proc = self._running(machine_id)
        return self.cgroups.pids(machine_id) or [proc.pid]

    def usage(self, machine_id: str) -> Usage:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            return Usage()
        pids = [proc.pid, *(p for p in self.cgroups.pids(machine_id) if p != proc.pid)]
        cpu, rss = usage.processes(pids)
        if self.cgroups.available:  # the cgroup's count includes page cache, as a limit sees it
            _, memory = usage.cgroup_v1(None, self.cgroups.memory(machine_id))
            rss = memory if memory is not None else rss
        return Usage(cpu, rss)

    def memory_limit(self, machine_id: str) -> int | None:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            return None
        return self.cgroups.memory_limit(machine_id)

    def set_memory_limit(self, machine_id: str, limit_bytes: int) -> None:
        self._running(machine_id)
        if not self.cgroups.available:
            raise DriverError("this host gives the process driver no memory cgroups, so a machine's memory limit "
                              "cannot change while it runs; update the machine's guest.memory_mb instead")
        try:
            self.cgroups.set_memory_limit(machine_id, limit_bytes)
        except OSError as exc:
            raise DriverError(limit_refused(exc)) from exc

    # ---- internals ----

    def _kill_group(self, machine_id: str, pid: int, signal: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal)
        # Processes that left the group (setsid) are still in the machine's cgroup.
        for other in self.cgroups.pids(machine_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(other) != pid:
                    os.kill(other, signal)

    def fence_targets(self, machine_id: str) -> dict[str, list[Any]]:
        if not self.cgroups.available:
            return {}
        freezer = self.cgroups.freezer(machine_id)
        return {"procs": [str(freezer / "cgroup.procs")], "thaw": [[str(freezer / "freezer.state"), "THAWED"]]}

    def kill_leftovers(self, machine_id: str) -> None:
        for other in self.cgroups.pids(machine_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(other, signals.SIGKILL)
        if self.cgroups.available:
            self.cgroups.thaw(machine_id, timeout=0.5)

    def _finish(self, machine_id: str, proc: Watched, code: int | None, sig: int | None) -> None:
        self._unrelay(machine_id)
        oom = sig == signals.SIGKILL and not proc.killed_by_us and \
            self.cgroups.oom_kills(machine_id) > proc.oom_before
        # A machine is its whole process tree: nothing it started outlives it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signals.SIGKILL)
        self.kill_leftovers(machine_id)
        if not proc.exited.done():
            proc.exited.set_result(ExitInfo(exit_code=code, signal=sig, oom_killed=oom, exited_at=time.time()))


def _fresh_copy(image_dir: Path, rootfs: Path) -> None:
    if rootfs.exists():
        shutil.rmtree(rootfs, ignore_errors=True)
    shutil.copytree(image_dir, rootfs, symlinks=True)


def _link_volume(rootfs: Path, host_dir: Path, guest_path: str) -> None:
    """Make the volume appear at its guest path inside the rootfs (the process runs with rootfs as cwd)."""
    host_dir.mkdir(parents=True, exist_ok=True)
    link = rootfs / guest_path.strip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(host_dir, target_is_directory=True)


def resolve_argv(argv: list[str], rootfs: Path, path_env: str) -> list[str]:
    """Find argv[0] in the image first, then on PATH; a missing command is a clear start error."""
    if not argv or not argv[0]:
        raise DriverError("nothing to run: set config.init.cmd, or push the image with --cmd")
    cmd = argv[0]
    if "/" in cmd:
        inside = rootfs / cmd.lstrip("/")
        if inside.exists():
            resolved = str(inside)
        elif Path(cmd).is_absolute() and Path(cmd).exists():
            resolved = cmd
        else:
            raise DriverError(f"command {cmd!r} not found in the image")
    else:
        found = shutil.which(cmd, path=path_env)
        if found is None:
            raise DriverError(f"command {cmd!r} not found in the image or on PATH")
        resolved = found
    if not os.access(resolved, os.X_OK):
        raise DriverError(f"command {cmd!r} is not executable (chmod +x it, or run it through its interpreter)")
    return [resolved, *argv[1:]]
