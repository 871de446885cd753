"""One suite every driver passes (design principle 6). A driver joins by adding a `Harness` below."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest

from roost.agent.cgroups import Cgroups
from roost.agent.drivers.base import DriverError, StartSpec
from roost.agent.drivers.container import ContainerDriver, runc_available
from roost.agent.drivers.fake import FakeDriver
from roost.agent.drivers.process import ProcessDriver
from roost.agent.netns import HostNetwork
from tests.images import busybox_rootfs

SH_SLEEPER = ["sh", "-c", "echo started; exec sleep 60"]
SH_IGNORES_INT = ["sh", "-c", "trap '' INT; echo started; while true; do sleep 0.05; done"]
SH_EXITS_3 = ["sh", "-c", "sleep 0.2; exit 3"]
SH_COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > count; sleep 0.02; done"]


class Harness:
    """Adapts a driver to the suite: how to make it, and the few workloads the suite needs."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.image = tmp / "image"
        self.image.mkdir()
        (self.image / "hello.txt").write_text("hi")
        self.network: HostNetwork | None = None
        if kind == "process":
            self.driver = ProcessDriver(tmp / "machines", Cgroups(f"conf-{tmp.name[-12:]}"))
        elif kind == "container":
            busybox_rootfs(self.image)
            self.network = HostNetwork(f"conf-{tmp.name[-12:]}", "10.213.250.0/24")
            self.driver = ContainerDriver(tmp / "machines", f"conf-{tmp.name[-12:]}", self.network)
        else:
            self.driver = FakeDriver()

    def spec(self, mid: str, argv: list[str], fresh: bool = True) -> StartSpec:
        return StartSpec(machine_id=mid, argv=argv, env={"PATH": "/usr/bin:/bin"}, image_dir=self.image,
                         memory_mb=256, fresh_rootfs=fresh, address="10.213.250.2" if mid == "m1" else "10.213.250.3")

    async def start(self, mid: str, workload: list[str], fresh: bool = True):
        info = await self.driver.start(self.spec(mid, workload, fresh))
        if self.kind == "fake":
            w = self.driver.workloads[mid]
            if workload is SH_IGNORES_INT:
                w.honours = {signal.SIGKILL}
            if workload is SH_EXITS_3:
                asyncio.get_running_loop().call_later(0.2, self.driver.exit, mid, 3)
        return info

    async def write_state(self, mid: str) -> None:
        if self.kind == "fake":
            self.driver.workloads[mid].files["count"] = "42"
        else:
            await asyncio.sleep(0.2)

    async def read_count(self, mid: str) -> int:
        """The counter's value: the shell rewrites the file (truncate, then write), so a read can land in
        between and see it empty; read again, bounded."""
        for _ in range(50):
            text = self.read_state(mid)
            if text:
                return int(text)
            await asyncio.sleep(0.01)
        raise AssertionError(f"{mid}'s counter file stayed empty")

    def read_state(self, mid: str) -> str | None:
        if self.kind == "fake":
            return self.driver.workloads[mid].files.get("count")
        path = self.driver.rootfs(mid) / "count"
        return path.read_text().strip() if path.exists() else None

    async def cleanup(self) -> None:
        for mid in list(getattr(self.driver, "_procs", {})) + list(getattr(self.driver, "workloads", {})):
            await self.driver.destroy(mid)
        if self.kind == "container":
            self.driver.close(teardown=True)
        if self.kind == "process":
            for base in self.driver.cgroups.bases(self.driver.cgroups.host_id):
                with contextlib.suppress(OSError):
                    base.rmdir()


@pytest.fixture(params=["process", "container", "fake"])
async def h(request, tmp_path):
    if request.param == "container" and not runc_available():
        pytest.skip("the container driver needs root and runc (./scripts/setup installs it)")
    harness = Harness(request.param, tmp_path)
    yield harness
    await harness.cleanup()


async def test_start_runs_and_stop_honours_the_signal(h):
    await h.start("m1", SH_SLEEPER)
    assert h.driver.inspect("m1")
    began = time.monotonic()
    info = await h.driver.stop("m1", signal.SIGTERM, 5)
    assert time.monotonic() - began < 2
    assert not h.driver.inspect("m1")
    assert info.signal == signal.SIGTERM or info.exit_code == 128 + signal.SIGTERM


async def test_stop_escalates_to_sigkill_after_the_timeout(h):
    await h.start("m1", SH_IGNORES_INT)
    await asyncio.sleep(0.1)
    began = time.monotonic()
    info = await h.driver.stop("m1", signal.SIGINT, 0.5)
    took = time.monotonic() - began
    assert 0.45 <= took < 3
    assert info.signal == signal.SIGKILL


async def test_an_exit_resolves_the_future_with_its_code(h):
    await h.start("m1", SH_EXITS_3)
    info = await asyncio.wait_for(h.driver.exited("m1"), 5)
    assert info.exit_code == 3
    assert not h.driver.inspect("m1")


async def test_starting_a_running_machine_is_refused(h):
    await h.start("m1", SH_SLEEPER)
    with pytest.raises(DriverError):
        await h.start("m1", SH_SLEEPER)


async def test_nothing_to_run_is_a_clear_error(h):
    with pytest.raises(DriverError, match="nothing to run"):
        await h.driver.start(h.spec("m1", []))


async def test_suspend_keeps_state_and_resume_continues(h):
    await h.start("m1", SH_COUNTER)
    await h.write_state("m1")
    assert await h.driver.suspend("m1")
    frozen = h.read_state("m1")
    await asyncio.sleep(0.2)
    assert h.read_state("m1") == frozen, "a suspended machine does not run"
    assert h.driver.inspect("m1")
    await h.driver.resume("m1")
    if h.kind != "fake":
        await asyncio.sleep(0.2)
        assert await h.read_count("m1") > int(frozen or 0)


async def test_fresh_start_resets_files_and_non_fresh_keeps_them(h):
    await h.start("m1", SH_COUNTER)
    await h.write_state("m1")
    await h.driver.stop("m1", signal.SIGKILL, 1)
    assert h.read_state("m1") is not None
    await h.start("m1", SH_SLEEPER, fresh=False)
    assert h.read_state("m1") is not None
    await h.driver.stop("m1", signal.SIGKILL, 1)
    await h.start("m1", SH_SLEEPER, fresh=True)
    assert h.read_state("m1") is None


async def test_recover_adopts_a_live_workload_and_refuses_a_dead_one(h):
    info = await h.start("m1", SH_SLEEPER)
    if h.kind in ("process", "container"):
        # A new driver instance stands for the restarted agent.
        if h.kind == "process":
            fresh_driver = ProcessDriver(h.driver.root, h.driver.cgroups)
        else:
            fresh_driver = ContainerDriver(h.driver.root, h.driver.cgroup_parent.removeprefix("roost-"), h.network)
        h.driver.shutdown()
        h.driver._procs.clear()
        h.driver = fresh_driver
    assert await h.driver.recover("m1", info, suspended=False)
    assert h.driver.inspect("m1")
    await h.driver.stop("m1", signal.SIGTERM, 2)
    assert not await h.driver.recover("m1", info, suspended=False)


async def test_destroy_kills_and_removes(h):
    await h.start("m1", SH_SLEEPER)
    await h.driver.destroy("m1")
    assert not h.driver.inspect("m1")
    if h.kind != "fake":
        assert not h.driver.machine_dir("m1").exists()


async def test_a_machine_cannot_fork_past_its_pids_limit(h):
    if h.kind == "fake":
        pytest.skip("the fake driver runs no processes")
    # Forks until a fork is refused (the shell then gives up), writing how many it made.
    workload = ["sh", "-c", "i=0; while [ $i -lt 60 ]; do sleep 30 & i=$((i+1)); echo $i > count; done; sleep 30"]
    spec = StartSpec(**{**h.spec("m1", workload).__dict__, "pids_limit": 20})
    await h.driver.start(spec)
    info = await asyncio.wait_for(h.driver.exited("m1"), 10)
    assert info.exit_code not in (0, None), "the shell gave up when its fork was refused"
    assert 1 <= await h.read_count("m1") < 20


async def test_output_is_logged_line_by_line_with_time_and_stream_across_an_agent_restart(h):
    if h.kind == "fake":
        pytest.skip("the fake driver runs no processes")
    from roost.core.logline import parse

    workload = ["sh", "-c", "echo one; echo two >&2; sleep 0.6; echo three; sleep 30"]
    info = await h.start("logged", workload)

    async def lines(n: int) -> list[dict]:
        for _ in range(300):
            path = h.driver.log_path("logged")
            # tini (the container driver's init) may warn in the log of its own, e.g. when `runc run` forwards
            # a signal to a child that just exited; only the workload's lines count here.
            found = [parse(x) for x in path.read_text().splitlines()] if path.exists() else []
            found = [x for x in found if not x["line"].startswith("[WARN  tini")]
            if len(found) >= n:
                return found
            await asyncio.sleep(0.01)
        raise AssertionError(f"fewer than {n} log lines: {found}")

    first = await lines(2)
    assert sorted((x["stream"], x["line"]) for x in first) == [("stderr", "two"), ("stdout", "one")]
    assert all(x["ts"] and x["ts"].endswith("Z") for x in first)
    # The agent goes away (a new driver stands for its restart): what the machine writes meanwhile waits.
    h.driver.shutdown()
    h.driver._procs.clear()
    await asyncio.sleep(0.8)
    if h.kind == "process":
        h.driver = ProcessDriver(h.driver.root, h.driver.cgroups)
    else:
        h.driver = ContainerDriver(h.driver.root, h.driver.cgroup_parent.removeprefix("roost-"), h.network)
    assert await h.driver.recover("logged", info, suspended=False)
    assert (await lines(3))[2]["line"] == "three"
