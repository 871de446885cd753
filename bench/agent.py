"""Agent benchmarks (issue 3): start latency, resume-to-first-request, 200 machines on one host, memory.

    .venv/bin/python bench/agent.py [--starts 50] [--resumes 50] [--machines 200]

Runs a real server and one agent with the process driver on loopback. Targets: start -> started for the
process driver minus the app's own boot <= 20 ms p50 (our `started` is reached when the workload is
spawned, so the app's boot is not inside it; the time to the app's first 200 is shown beside it);
resume -> first served request <= 5 ms p50; 200 machines start, serve and stop cleanly.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import httpx
from common import BenchFleet, summary_ms, table

from roost.dev.fleet import machine_pids, pid_alive


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_http(url: str, timeout: float = 30) -> float:
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            time.sleep(0.002)
    raise RuntimeError(f"{url} never answered")


def url_of(m: dict) -> str:
    return f"http://{m['private_ip']}:{m['roost']['ports']['8080']}/"


def bench_start(f: BenchFleet, n: int) -> tuple[list[float], list[float]]:
    config = {"image": "hello:v1", "services": [{"internal_port": 8080, "protocol": "tcp"}],
              "restart": {"policy": "no"}}
    m = f.api.post("/v1/apps/bench/machines", json={"config": config, "skip_launch": True}).json()
    mid = m["id"]
    starts, first_200 = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        r = f.api.post(f"/v1/apps/bench/machines/{mid}/start")
        started = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        assert f.api.get(f"/v1/apps/bench/machines/{mid}").json()["state"] == "started"
        starts.append(started)
        first_200.append(started + wait_http(url_of(m)))
        f.api.post(f"/v1/apps/bench/machines/{mid}/stop", json={"timeout": "2s"})
        f.api.get(f"/v1/apps/bench/machines/{mid}/wait", params={"state": "stopped", "timeout": 30})
    f.api.delete(f"/v1/apps/bench/machines/{mid}")
    return starts, first_200


def bench_resume(f: BenchFleet, n: int) -> tuple[list[float], list[float]]:
    config = {"image": "hello:v1", "services": [{"internal_port": 8080, "protocol": "tcp"}]}
    m = f.api.post("/v1/apps/bench/machines", json={"config": config}).json()
    f.api.get(f"/v1/apps/bench/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    wait_http(url_of(m))
    client = httpx.Client(trust_env=False, verify=f.verify)
    running = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.get(url_of(m))
        running.append(time.perf_counter() - t0)
    resumes = []
    for _ in range(n):
        f.api.post(f"/v1/apps/bench/machines/{m['id']}/suspend").raise_for_status()
        t0 = time.perf_counter()
        f.api.post(f"/v1/apps/bench/machines/{m['id']}/start").raise_for_status()
        r = client.get(url_of(m))
        resumes.append(time.perf_counter() - t0)
        assert r.status_code == 200
    # The proxy's path (issue 4): it asks the host's agent directly, not the control plane.
    agent = f.info["hosts"][0]["agent_url"]
    direct = []
    for _ in range(n):
        f.api.post(f"/v1/apps/bench/machines/{m['id']}/suspend").raise_for_status()
        current = f.api.get(f"/v1/apps/bench/machines/{m['id']}").json()
        t0 = time.perf_counter()
        client.post(f"{agent}/v1/machines/{m['id']}/start", headers=f.headers,
                    json={"id": m["id"], "instance_id": current["instance_id"]}).raise_for_status()
        r = client.get(url_of(m))
        direct.append(time.perf_counter() - t0)
        assert r.status_code == 200
        f.api.get(f"/v1/apps/bench/machines/{m['id']}/wait", params={"state": "started", "timeout": 10})
    client.close()
    f.api.delete(f"/v1/apps/bench/machines/{m['id']}", params={"force": "true"})
    return resumes, running, direct


def bench_many(f: BenchFleet, count: int) -> dict[str, object]:
    host = f.info["hosts"][0]
    agent_pid = host["pid"]
    base_rss = rss_kb(agent_pid)
    config = {"image": "hello:v1", "services": [{"internal_port": 8080, "protocol": "tcp"}],
              "restart": {"policy": "no"}, "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 64}}
    t0 = time.perf_counter()
    machines = [f.api.post("/v1/apps/many/machines", json={"config": config}).json() for _ in range(count)]
    for m in machines:
        f.api.get(f"/v1/apps/many/machines/{m['id']}/wait", params={"state": "started", "timeout": 60})
    started = time.perf_counter() - t0
    failures = 0
    t0 = time.perf_counter()
    for m in machines:
        try:
            wait_http(url_of(m), timeout=60)
        except RuntimeError:
            failures += 1
    served = time.perf_counter() - t0
    time.sleep(2)  # let the agent settle before measuring its memory
    agent_rss = rss_kb(agent_pid)
    machine_rss = sum(rss_kb(p) for p in machine_pids(Path(host["data_dir"])) if pid_alive(p))
    t0 = time.perf_counter()
    for m in machines:
        f.api.post(f"/v1/apps/many/machines/{m['id']}/stop", json={"timeout": "5s"})
    not_stopped = 0
    for m in machines:
        r = f.api.get(f"/v1/apps/many/machines/{m['id']}/wait", params={"state": "stopped", "timeout": 60})
        not_stopped += r.status_code != 200
    stopped = time.perf_counter() - t0
    left = [p for p in machine_pids(Path(host["data_dir"])) if pid_alive(p)]
    return {"count": count, "start_s": started, "serve_s": served, "stop_s": stopped, "serve_failures": failures,
            "not_stopped": not_stopped, "processes_left": len(left), "agent_rss_base_kb": base_rss,
            "agent_rss_kb": agent_rss, "per_machine_kb": (agent_rss - base_rss) / count,
            "machine_rss_mb": machine_rss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--resumes", type=int, default=50)
    parser.add_argument("--machines", type=int, default=200)
    args = parser.parse_args()
    with BenchFleet(["ams"], 1, host_cpus=64, host_memory_mb=200_000) as f:
        f.push("hello:v1", "hello", ["python3", "app.py"])
        for app in ("bench", "many"):
            f.api.post("/v1/apps", json={"app_name": app}).raise_for_status()
        starts, first_200 = bench_start(f, args.starts)
        resumes, running, direct = bench_resume(f, args.resumes)
        many = bench_many(f, args.machines)
    s, b, r, w = summary_ms(starts), summary_ms(first_200), summary_ms(resumes), summary_ms(running)
    d = summary_ms(direct)
    cgroups = "memory+freezer cgroups" if os.geteuid() == 0 else "no cgroups"
    print(table(f"Agent, process driver ({cgroups}), one host, loopback",
                ["measure", "n", "p50 ms", "p99 ms", "max ms", "target"],
                [["API start -> started (spawned, state written)", s["n"], s["p50"], s["p99"], s["max"],
                  "p50 <= 20 ms"],
                 ["API start -> app's first HTTP 200 (includes Python boot)", b["n"], b["p50"], b["p99"], b["max"], ""],
                 ["API resume of a suspended machine -> first request served", r["n"], r["p50"], r["p99"], r["max"],
                  ""],
                 ["agent resume (as the proxy asks it) -> first request served", d["n"], d["p50"], d["p99"],
                  d["max"], "p50 <= 5 ms more than running"],
                 ["request to a running machine (reference)", w["n"], w["p50"], w["p99"], w["max"], ""]]))
    print()
    print(table(f"{many['count']} machines on one host (Python HTTP app, 64 MB each)",
                ["start all (s)", "all serving (s)", "stop all (s)", "serve failures", "not stopped",
                 "processes left", "agent RSS idle -> loaded (MB)", "agent KB per machine", "machines' RSS (MB)"],
                [[f"{many['start_s']:.1f}", f"{many['serve_s']:.1f}", f"{many['stop_s']:.1f}",
                  many["serve_failures"], many["not_stopped"], many["processes_left"],
                  f"{many['agent_rss_base_kb'] / 1024:.1f} -> {many['agent_rss_kb'] / 1024:.1f}",
                  f"{many['per_machine_kb']:.0f}", f"{many['machine_rss_mb']:.0f}"]]))


if __name__ == "__main__":
    main()
