"""Observability costs (issue 20): `roost logs -f` delay from a line written to a line printed, and what a
metrics scrape costs the server and an agent at 1,000 machines.

    .venv/bin/python bench/observability.py [--trials 40] [--machines 1000]

- logs -f: one fleet (one region, two hosts, TLS); a hello machine logs every request it answers. A real
  `roost logs -a APP -f --json` runs in the background; per trial the clock starts just before a request to the
  machine and stops when the CLI prints the request's log line (so the figure includes the request itself).
  Goal: p99 <= 200 ms.
- server /metrics: the same fleet's control plane with N more machines (created with skip_launch: records the
  gauges count, no processes); scrape time through the API (TLS, token) and body size.
- agent /metrics: an agent's scrape of N machines, in process: the supervisor's samples with usage read from a
  cgroup v2 file pair per machine (what the container driver reads), rendered by the agent's registry. (1,000
  real machine processes do not fit this 2-core box next to the rest.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from queue import Empty, Queue

import httpx
from common import BenchFleet, summary_ms, table

from roost.agent import usage
from roost.agent.drivers.base import Usage
from roost.agent.metrics import AgentMetrics, MachineSample

SERVICE = {"protocol": "tcp", "internal_port": 8080, "ports": [{"port": 80, "handlers": ["http"]}]}


def follow_delays(f: BenchFleet, trials: int) -> list[float]:
    f.push("hello:v1", "hello", ["python3", "app.py"])
    f.api.post("/v1/apps", json={"app_name": "logs", "primary_region": "ams"}).raise_for_status()
    m = f.api.post("/v1/apps/logs/machines", json={"config": {"image": "hello:v1", "services": [SERVICE]}}).json()
    f.api.get(f"/v1/apps/logs/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    url = f"http://{m['private_ip']}:{m['roost']['ports']['8080']}"
    for _ in range(100):
        try:
            httpx.get(url, timeout=1, trust_env=False)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    env = {**os.environ, "ROOST_API_URL": f.url, "ROOST_API_TOKEN": f.token, "ROOST_CA_FILE": f.info.get("ca", "")}
    cli = subprocess.Popen([sys.executable, "-m", "roost", "logs", "-a", "logs", "-f", "--json", "-n", "0"],
                           env=env, stdout=subprocess.PIPE, text=True)
    printed: Queue[tuple[str, float]] = Queue()

    def read() -> None:
        assert cli.stdout is not None
        for line in cli.stdout:
            printed.put((json.loads(line)["message"], time.perf_counter()))

    threading.Thread(target=read, daemon=True).start()
    time.sleep(2)  # the follow is open
    delays = []
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            for _ in range(trials):
                marker = f"/m-{uuid.uuid4().hex[:12]}"
                began = time.perf_counter()
                client.get(url + marker)
                deadline = began + 10
                while True:
                    try:
                        message, at = printed.get(timeout=max(0.01, deadline - time.perf_counter()))
                    except Empty:
                        raise RuntimeError(f"line {marker} not printed within 10 s") from None
                    if marker in message:
                        delays.append(at - began)
                        break
                time.sleep(0.05)
    finally:
        cli.terminate()
        cli.wait(timeout=10)
    return delays


def server_scrape(f: BenchFleet, machines: int) -> tuple[list[float], int]:
    f.api.post("/v1/apps", json={"app_name": "many", "primary_region": "ams"}).raise_for_status()
    for _ in range(machines):
        f.api.post("/v1/apps/many/machines", json={"config": {"image": "hello:v1"}, "skip_launch": True,
                                                   "region": "ams"}).raise_for_status()
    times, size = [], 0
    with httpx.Client(trust_env=False, timeout=30, verify=f.verify, headers=f.headers) as client:
        for _ in range(20):
            began = time.perf_counter()
            body = client.get(f"{f.url}/metrics").content
            times.append(time.perf_counter() - began)
            size = len(body)
    return times, size


def agent_scrape(machines: int) -> tuple[list[float], int]:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = []
        for i in range(machines):
            d = Path(tmp) / f"m{i}"
            d.mkdir()
            (d / "cpu.stat").write_text(f"usage_usec {i * 1000}\nuser_usec 1\nsystem_usec 1\n")
            (d / "memory.current").write_text(f"{i * 4096}\n")
            dirs.append(d)
        metrics = AgentMetrics()

        def samples() -> list[MachineSample]:
            out = []
            for i, d in enumerate(dirs):
                cpu, memory = usage.cgroup_v2(d)
                out.append(MachineSample(f"app{i % 20}", f"{i:014x}", "started", Usage(cpu, memory),
                                         {"alive": "passing"}))
            return out

        metrics.machines = samples
        for i in range(machines):
            metrics.starts.labels(f"app{i % 20}", "started").inc()
        times, size = [], 0
        for _ in range(20):
            began = time.perf_counter()
            size = len(metrics.render())
            times.append(time.perf_counter() - began)
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--machines", type=int, default=1000)
    args = parser.parse_args()
    # Hosts that declare room for N small machines (the numbers are what a host reports, not what it has).
    with BenchFleet(["ams"], 2, host_memory_mb=max(4096, args.machines * 256), host_cpus=max(2, args.machines)) as f:
        delays = follow_delays(f, args.trials)
        server_times, server_bytes = server_scrape(f, args.machines)
    agent_times, agent_bytes = agent_scrape(args.machines)
    s = summary_ms(delays)
    print(table("roost logs -f: a request to the machine → its log line printed by the CLI (ms)",
                ["trials", "p50", "p99", "max", "mean", "goal p99"],
                [[s["n"], s["p50"], s["p99"], s["max"], s["mean"], "200"]]))
    print()
    rows = []
    for who, times, size in (("server (API, TLS)", server_times, server_bytes),
                             ("agent (in process)", agent_times, agent_bytes)):
        ms = summary_ms(times)
        rows.append([who, args.machines, ms["p50"], ms["max"], f"{statistics.fmean(times) * 1000:.1f}",
                     f"{size / 1024:.0f}"])
    print(table(f"One /metrics scrape at {args.machines} machines", ["component", "machines", "p50 ms", "max ms",
                                                                     "mean ms", "KiB"], rows))


if __name__ == "__main__":
    main()
