"""Watching the process that stands for a machine (the workload itself, or the runtime that waits for it):
a pidfd on the event loop per machine, so no thread per machine, and the same mechanism for processes
re-adopted after an agent restart (which are not our children: their exit code is unknown)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from roost.agent.drivers.base import DriverError, ExitInfo
from roost.agent.logrelay import LogRelay
from roost.pids import stat_fields


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks since boot), or None if the pid is gone."""
    fields = stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):  # a zombie has exited; nobody reaped it yet
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass
class Watched:
    pid: int
    child: bool  # ours to waitpid (False for re-adopted processes)
    exited: asyncio.Future[ExitInfo]
    oom_before: int = 0
    suspended: bool = False
    pidfd: int = -1
    killed_by_us: bool = False
    extra: dict[str, int] = field(default_factory=dict)


class PidWatcher:
    """The bookkeeping both real drivers share; a subclass says what an exit means in `_finish`."""

    def __init__(self) -> None:
        self._procs: dict[str, Watched] = {}
        self._relays: dict[str, LogRelay] = {}

    def log_path(self, machine_id: str) -> Path:
        raise NotImplementedError

    def machine_dir(self, machine_id: str) -> Path:
        raise NotImplementedError

    def _relay(self, machine_id: str) -> None:
        """Follow the machine's output into its log (again, after an agent restart)."""
        self._unrelay(machine_id)
        relay = LogRelay(self.machine_dir(machine_id), self.log_path(machine_id))
        relay.start()
        self._relays[machine_id] = relay

    def _unrelay(self, machine_id: str) -> None:
        relay = self._relays.pop(machine_id, None)
        if relay is not None:
            relay.stop()

    def exited(self, machine_id: str) -> asyncio.Future[ExitInfo]:
        proc = self._procs.get(machine_id)
        if proc is None:
            raise DriverError(f"machine {machine_id} is not running")
        return proc.exited

    def inspect(self, machine_id: str) -> bool:
        proc = self._procs.get(machine_id)
        return proc is not None and not proc.exited.done()

    def is_suspended(self, machine_id: str) -> bool:
        proc = self._procs.get(machine_id)
        return bool(proc and proc.suspended and not proc.exited.done())

    def _running(self, machine_id: str) -> Watched:
        proc = self._procs.get(machine_id)
        if proc is None or proc.exited.done():
            raise DriverError(f"machine {machine_id} is not running")
        return proc

    def _watch(self, machine_id: str, pid: int, *, child: bool, oom_before: int) -> Watched:
        loop = asyncio.get_running_loop()
        proc = Watched(pid=pid, child=child, exited=loop.create_future(), oom_before=oom_before)
        self._procs[machine_id] = proc
        try:
            proc.pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._on_exit(machine_id, proc)
            return proc
        loop.add_reader(proc.pidfd, self._on_exit, machine_id, proc)
        return proc

    def _on_exit(self, machine_id: str, proc: Watched) -> None:
        self._unwatch(proc)
        code: int | None = None
        sig: int | None = None
        if proc.child:
            try:
                _, status = os.waitpid(proc.pid, os.WNOHANG)
                if os.WIFEXITED(status):
                    code = os.WEXITSTATUS(status)
                elif os.WIFSIGNALED(status):
                    sig = os.WTERMSIG(status)
                    code = 128 + sig
            except ChildProcessError:
                pass
        self._finish(machine_id, proc, code, sig)

    def _finish(self, machine_id: str, proc: Watched, code: int | None, sig: int | None) -> None:
        raise NotImplementedError

    @staticmethod
    def _unwatch(proc: Watched) -> None:
        if proc.pidfd >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = -1

    def shutdown(self) -> None:
        """Stop watching (agent exit); the machines themselves keep running (their output waits in its FIFOs)."""
        for proc in self._procs.values():
            self._unwatch(proc)
        for machine_id in list(self._relays):
            self._unrelay(machine_id)
