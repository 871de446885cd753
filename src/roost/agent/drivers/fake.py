"""A fake driver for the cores' tests: workloads are futures, exits are triggered by the test.

It keeps the interface's promises (start raises when already running, stop escalates to a kill after
the timeout unless the workload honours the signal, suspend keeps state) so that the conformance suite
holds for it too, and records every call so a test can assert exactly what the agent did.
"""

from __future__ import annotations

import asyncio
import signal as signals
import time
from dataclasses import dataclass, field
from pathlib import Path

from roost.agent.drivers.base import DriverError, ExitInfo, RunInfo, StartSpec


@dataclass
class FakeWorkload:
    spec: StartSpec
    exited: asyncio.Future[ExitInfo]
    pid: int
    suspended: bool = False
    honours: set[int] = field(default_factory=lambda: {signals.SIGINT, signals.SIGTERM, signals.SIGKILL})
    signals_seen: list[int] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # a stand-in for the rootfs


class FakeDriver:
    name = "fake"
    isolated = False

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.workloads: dict[str, FakeWorkload] = {}
        self.calls: list[tuple[str, str]] = []
        self._next_pid = 100000
        self.fail_next_start: str | None = None

    async def start(self, spec: StartSpec) -> RunInfo:
        self.calls.append(("start", spec.machine_id))
        if self.inspect(spec.machine_id):
            raise DriverError(f"machine {spec.machine_id} is already running")
        if self.fail_next_start:
            message, self.fail_next_start = self.fail_next_start, None
            raise DriverError(message)
        if not spec.argv:
            raise DriverError("nothing to run: set config.init.cmd, or push the image with --cmd")
        previous = self.workloads.get(spec.machine_id)
        files = {} if spec.fresh_rootfs or previous is None else previous.files
        self._next_pid += 1
        self.workloads[spec.machine_id] = FakeWorkload(spec, asyncio.get_running_loop().create_future(),
                                                       self._next_pid, files=files)
        return RunInfo(pid=self._next_pid, proc_start=self._next_pid, started_at=time.time())

    def exited(self, machine_id: str) -> asyncio.Future[ExitInfo]:
        w = self.workloads.get(machine_id)
        if w is None:
            raise DriverError(f"machine {machine_id} is not running")
        return w.exited

    def inspect(self, machine_id: str) -> bool:
        w = self.workloads.get(machine_id)
        return w is not None and not w.exited.done()

    def is_suspended(self, machine_id: str) -> bool:
        w = self.workloads.get(machine_id)
        return bool(w and w.suspended and not w.exited.done())

    def exit(self, machine_id: str, code: int | None = 0, signal: int | None = None, oom: bool = False) -> None:
        """Test hook: the workload ends on its own."""
        w = self.workloads[machine_id]
        if not w.exited.done():
            w.exited.set_result(ExitInfo(exit_code=code, signal=signal, oom_killed=oom, exited_at=time.time()))

    def signal(self, machine_id: str, signal: int) -> None:
        self.calls.append(("signal", machine_id))
        w = self.workloads.get(machine_id)
        if w is None or w.exited.done():
            raise DriverError(f"machine {machine_id} is not running")
        w.signals_seen.append(signal)
        if signal in w.honours and not w.suspended:
            self.exit(machine_id, 128 + signal, signal)

    async def stop(self, machine_id: str, signal: int, timeout: float) -> ExitInfo:
        self.calls.append(("stop", machine_id))
        w = self.workloads.get(machine_id)
        if w is None:
            return ExitInfo(exit_code=None, exited_at=time.time())
        if w.exited.done():
            return w.exited.result()
        w.suspended = False
        w.signals_seen.append(signal)
        if signal in w.honours:
            self.exit(machine_id, 128 + signal, signal)
        try:
            return await asyncio.wait_for(asyncio.shield(w.exited), timeout)
        except TimeoutError:
            w.signals_seen.append(signals.SIGKILL)
            self.exit(machine_id, 128 + signals.SIGKILL, signals.SIGKILL)
            return w.exited.result()

    async def suspend(self, machine_id: str) -> bool:
        self.calls.append(("suspend", machine_id))
        w = self.workloads.get(machine_id)
        if w is None or w.exited.done():
            raise DriverError(f"machine {machine_id} is not running")
        w.suspended = True
        return True

    async def resume(self, machine_id: str) -> None:
        self.calls.append(("resume", machine_id))
        w = self.workloads.get(machine_id)
        if w is None or w.exited.done():
            raise DriverError(f"machine {machine_id} is not running")
        w.suspended = False

    async def recover(self, machine_id: str, info: RunInfo, suspended: bool) -> bool:
        self.calls.append(("recover", machine_id))
        w = self.workloads.get(machine_id)
        if w is None or w.exited.done() or w.pid != info.pid:
            return False
        w.suspended = suspended
        return True

    async def destroy(self, machine_id: str) -> None:
        self.calls.append(("destroy", machine_id))
        w = self.workloads.pop(machine_id, None)
        if w is not None and not w.exited.done():
            w.exited.set_result(ExitInfo(exit_code=137, signal=signals.SIGKILL, exited_at=time.time()))

    def shutdown(self) -> None:
        return None
