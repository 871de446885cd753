"""Issue 20, the agent's metrics: usage read from cgroup files (v1 and v2) and /proc, why a machine ended, the
supervisor's counts over the fake driver, and the apps' [metrics] endpoints re-exported with Roost's labels,
where a target that hangs, errs or answers garbage is counted and cut off on time (real loopback sockets)."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from roost.agent import app_metrics, usage
from roost.agent.app_metrics import AppScraper, Target, parse, relabel
from roost.agent.drivers.base import ExitInfo, Usage
from roost.agent.metrics import AgentMetrics, MachineSample, exit_reason
from roost.core.agent_spec import AgentSpec
from tests.unit.test_supervisor import agent, spec


def test_usage_is_read_from_either_cgroup_version_and_from_proc(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
    (tmp_path / "memory.current").write_text("1048576\n")
    assert usage.cgroup_v2(tmp_path) == (2.5, 1048576)
    (tmp_path / "cpuacct.usage").write_text("1500000000\n")
    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    assert usage.cgroup_v1(tmp_path, tmp_path) == (1.5, 4096)
    assert usage.cgroup_v2(tmp_path / "gone") == (None, None), "a machine that just exited: unknown, no error"
    assert usage.cpu_stat_seconds("garbage") is None and usage.number("12ab") is None
    cpu, rss = usage.processes([os.getpid()])
    assert cpu is not None and cpu > 0 and rss is not None and rss > 1024 * 1024
    line = "1 (a (weird) name) S 0 0 0 0 0 0 0 0 0 0 300 100 20 10 0"
    ticks = os.sysconf("SC_CLK_TCK")
    assert usage.stat_cpu_seconds(line, children=False) == 400 / ticks
    assert usage.stat_cpu_seconds(line, children=True) == 430 / ticks


@pytest.mark.parametrize(("info", "asked", "fenced", "reason"), [
    (ExitInfo(0), False, False, "exit_zero"), (ExitInfo(3), False, False, "exit_nonzero"),
    (ExitInfo(None, signal=9), False, False, "signal"), (ExitInfo(137, signal=9, oom_killed=True), False, False, "oom"),
    (ExitInfo(None), False, False, "unknown"), (ExitInfo(0), True, False, "stopped"),
    (ExitInfo(None, signal=9), False, True, "fenced"),
])
def test_why_a_machine_ended(info: ExitInfo, asked: bool, fenced: bool, reason: str) -> None:
    assert exit_reason(info, asked, fenced) == reason


def value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert found, f"{sample} not in:\n{text}"
    return float(found.group(1))


async def test_the_supervisor_counts_starts_stops_exits_restarts_and_pulls(tmp_path: Path) -> None:
    sup, driver, _ = agent(tmp_path)
    await sup.start(spec("m1", policy="always"))
    await sup.start(spec("m2", policy="no"))
    driver.exit("m1", code=1)  # restarted by its policy
    driver.exit("m2", code=0)
    deadline = time.monotonic() + 5
    while sup.records["m1"].restart_count == 0 or not driver.inspect("m1"):
        assert time.monotonic() < deadline, "m1 was not restarted"
        await asyncio.sleep(0.01)
    await sup.stop("m1", 15, 1.0)
    await sup._watchers["m1"]  # the watcher sees the asked-for exit
    text = sup.metrics.render().decode()
    assert value(text, 'roost_agent_machine_starts_total{app="a",result="started"}') == 3
    assert value(text, 'roost_agent_machine_exits_total{app="a",reason="exit_nonzero"}') == 1
    assert value(text, 'roost_agent_machine_exits_total{app="a",reason="exit_zero"}') == 1
    assert value(text, 'roost_agent_machine_exits_total{app="a",reason="stopped"}') == 1
    assert value(text, 'roost_agent_machine_restarts_total{app="a"}') == 1
    assert value(text, 'roost_agent_machine_stops_total{app="a"}') == 1
    assert value(text, "roost_agent_machine_stop_seconds_count") == 1
    assert value(text, 'roost_agent_image_pulls_total{result="hit"}') == 3, "the image was already on the host"
    assert value(text, 'roost_agent_machines{state="stopped"}') == 2


def test_machines_usage_checks_and_the_cache_are_read_at_scrape(tmp_path: Path) -> None:
    metrics = AgentMetrics()
    (tmp_path / "sha256-aa").mkdir()
    (tmp_path / "sha256-aa" / "layer").write_bytes(b"x" * 5000)
    metrics.cache_dirs = [tmp_path]
    metrics.machines = lambda: [MachineSample("web", "m1", "started", Usage(1.25, 2048), {"alive": "passing"}),
                                MachineSample("web", "m2", "started", Usage(None, None), {"alive": "critical"}),
                                MachineSample("web", "m3", "stopped", Usage(), {})]
    text = metrics.render().decode()
    assert value(text, 'roost_agent_machine_cpu_seconds_total{app="web",machine="m1"}') == 1.25
    assert value(text, 'roost_agent_machine_memory_bytes{app="web",machine="m1"}') == 2048
    assert 'machine="m2"}' not in text.split("roost_agent_machine_memory_bytes")[-1].split("# HELP")[0]
    assert value(text, 'roost_agent_machine_check_passing{app="web",check="alive",machine="m1"}') == 1
    assert value(text, 'roost_agent_machine_check_passing{app="web",check="alive",machine="m2"}') == 0
    assert value(text, 'roost_agent_machines{state="started"}') == 2
    assert value(text, "roost_agent_image_cache_bytes") == 5000 and value(text, "roost_agent_image_cache_images") == 1


APP_TEXT = """# HELP jobs_done_total Jobs done
# TYPE jobs_done_total counter
jobs_done_total{queue="fast"} 7.0
# HELP queue_depth Waiting jobs
# TYPE queue_depth gauge
queue_depth{app="impostor"} 3.0
"""


def test_relabel_adds_roosts_labels_merges_machines_and_cannot_be_posed() -> None:
    one, two = Target("web", "m1", "u"), Target("web", "m2", "u")
    clash = "# TYPE queue_depth summary\nqueue_depth_sum 1.0\nqueue_depth_count 1.0\n"
    registry = CollectorRegistry()
    families = relabel([(one, parse(APP_TEXT)), (two, parse(APP_TEXT)), (two, parse(clash))], "ams")

    class Fixed:
        def collect(self):  # type: ignore[no-untyped-def]
            return families
    registry.register(Fixed())
    text = generate_latest(registry).decode()
    assert text.count("# TYPE jobs_done_total counter") == 1, "one family for both machines"
    assert value(text, 'jobs_done_total{app="web",machine="m1",queue="fast",region="ams"}') == 7
    assert value(text, 'jobs_done_total{app="web",machine="m2",queue="fast",region="ams"}') == 7
    assert value(text, 'queue_depth{app="web",machine="m1",region="ams"}') == 3, "the app's own app label is replaced"
    assert "impostor" not in text and "queue_depth_sum" not in text, "a name cannot hold two types"
    with pytest.raises(ValueError):
        parse("this is not {prometheus")


def test_targets_are_the_mapped_metrics_ports() -> None:
    def machine(mid: str, metrics: object, ports: dict[str, int]) -> AgentSpec:
        return AgentSpec.from_json({"id": mid, "app": "web", "instance_id": "v", "private_ip": "127.0.0.9",
                                    "config": {"image": "x", "metrics": metrics}, "ports": ports,
                                    "image": {"ref": "x", "digest": "sha256:" + "ab" * 32}, "env": {}})
    found = app_metrics.targets([machine("m1", {"port": 9091, "path": "/m"}, {"9091": 20001}),
                                 machine("m2", {"port": 9091}, {"9091": 20002}),
                                 machine("m3", {"port": 9091}, {}),  # not mapped: nothing to scrape
                                 machine("m4", {"port": 9091, "path": "evil"}, {"9091": 20004}),
                                 machine("m5", None, {"8080": 20005})])
    assert found == [Target("web", "m1", "http://127.0.0.9:20001/m"), Target("web", "m2", "http://127.0.0.9:20002/metrics")]


async def serve(answer: bytes | None) -> tuple[asyncio.Server, str]:
    """A loopback HTTP server answering `answer` to every request (None: never answers)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is None:
            await asyncio.sleep(30)
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/metrics"


def http(status: str, body: bytes) -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


async def test_a_hanging_or_garbage_target_is_counted_and_cut_off_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_metrics, "TIMEOUT", 0.5)
    monkeypatch.setattr(app_metrics, "MAX_BYTES", 1000)
    servers = [await serve(http("200 OK", APP_TEXT.encode())), await serve(None),
               await serve(http("200 OK", b"\x00\x01 not metrics {{{")), await serve(http("500 Oops", b"")),
               await serve(http("200 OK", b"# big\n" * 500))]
    registry = CollectorRegistry()
    scraper = AppScraper(registry, "ams")
    names = ["good", "hangs", "garbage", "fails", "huge"]
    began = time.monotonic()
    await scraper.refresh([Target(name, f"m-{name}", url) for name, (_, url) in zip(names, servers, strict=True)])
    took = time.monotonic() - began
    for server, _ in servers:
        server.close()
    assert took < 1.5, f"one hanging target held the scrape {took:.2f}s"
    registry.register(type("Extra", (), {"collect": lambda self: scraper.families()})())
    text = generate_latest(registry).decode()
    assert value(text, 'jobs_done_total{app="good",machine="m-good",queue="fast",region="ams"}') == 7
    for app, result in (("good", "ok"), ("hangs", "timeout"), ("garbage", "invalid"), ("fails", "error"),
                        ("huge", "invalid")):
        assert value(text, f'roost_agent_app_scrapes_total{{app="{app}",result="{result}"}}') == 1, (app, result)
