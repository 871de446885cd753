"""The control plane on SQLite, on PostgreSQL, and as three replicas on PostgreSQL (issue 18), side by side.

    .venv/bin/python bench/replicas.py [--creates 300] [--machines 10000] [--changes 200] [--kills 20]

Each column is a fresh local fleet (two hosts with the fake driver: placement needs live hosts, no workload
runs), HTTPS under the fleet CA, on loopback. Rows: create latency (through the leader, and for the replicas
through a follower, which forwards it), listing N machines, a change reaching 10 SSE watchers (on a follower
for the replicas), 100 hosts heartbeating (server CPU per heartbeat). Then failover, on a fresh fleet of three
replicas: the leader and a worker's host SIGKILLed at once under 50 API writes/s (a drill's probe), `--kills`
times: when writes succeed again (goal <= 3 s), when a new leader decides (goal <= 5 s), acknowledged writes
lost (goal 0), the worker's standby started exactly once (takeovers decided twice: goal 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import threading
import time
from typing import Any

import httpx
from common import BenchFleet, cpu_seconds, free_port, pct, summary_ms, table
from control_plane import CONFIG, bench_create, bench_watch

from roost.dev.faults import kill_host, kill_server
from roost.dev.fleet import restart_agent, restart_server, status
from roost.drill.analysis import takeovers_twice
from roost.drill.control_plane import ControlPlaneProbe, figures
from roost.failover import replicas

WRITES_PER_SECOND = 50.0
COLUMNS = [("SQLite, one server", {"store": "sqlite", "servers": 1}),
           ("PostgreSQL, one server", {"store": "postgresql", "servers": 1}),
           ("PostgreSQL, three replicas", {"store": "postgresql", "servers": 3})]


def consecutive_ports(n: int) -> int:
    import socket

    for _ in range(100):
        base = free_port()
        ok = True
        for port in range(base + 1, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no free block of ports")


def client(f: BenchFleet, url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=f.headers, timeout=120, trust_env=False, verify=f.verify)


def leader_index(f: BenchFleet) -> int:
    fleet = status(f.spec.data_dir)
    assert fleet is not None
    return next(i for i, s in enumerate(fleet["servers"]) if s.get("leads"))


def fill(f: BenchFleet, total: int) -> None:
    """Machines up to `total`, created by 8 writers at once."""
    have = len(f.api.get("/v1/apps/bench/machines", params={"summary": "true"}).json())
    todo = list(range(total - have))

    def writer() -> None:
        with client(f, f.url) as c:
            while todo:
                try:
                    todo.pop()
                except IndexError:
                    return
                c.post("/v1/apps/bench/machines", json={"config": CONFIG, "skip_launch": True}).raise_for_status()

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def list_times(f: BenchFleet, url: str, rounds: int = 10) -> tuple[list[float], int]:
    times, count = [], 0
    with client(f, url) as c:
        for _ in range(rounds):
            t0 = time.perf_counter()
            count = len(c.get("/v1/apps/bench/machines", params={"summary": "true"}).json())
            times.append(time.perf_counter() - t0)
    return times, count


def failover(f: BenchFleet, kills: int) -> list[dict[str, object]]:
    """`kills` rounds: a worker on one host with its standby on the other; the leader and the worker's host
    killed at once under the probe's writes; what the API saw, and how often the standby was taken over."""
    out = []
    fleet = status(f.spec.data_dir)
    assert fleet is not None
    servers = tuple(s["url"] for s in fleet["servers"])
    f.api.post("/v1/apps", json={"app_name": "pair"}).raise_for_status()
    for k in range(kills):
        index = leader_index(f)
        worker, standby = _pair(f)
        probe = ControlPlaneProbe(servers, f.token, f.info.get("ca", ""), f"k{k}", rate=WRITES_PER_SECOND)
        killed_at, killed_wall = asyncio.run(_kill_under_probe(f, probe, index, worker["host_id"]))
        with client(f, servers[(index + 1) % len(servers)]) as c:
            api = _Api(c)
            taken = _wait_taken_over(c, standby["id"])
            result = figures(probe, killed_at, f"server-{index + 1}", probe.lost(api),
                             takeovers_twice([taken], killed_wall))
            result["standby_started"] = taken.get("state") == "started"
            probe.clean_up(api)
            restart_agent(f.spec.data_dir, worker["host_id"])
            restart_server(f.spec.data_dir, index)
            _wait_host_ok(c, worker["host_id"])
            for m in (worker, standby):
                c.delete(f"/v1/apps/pair/machines/{m['id']}", params={"force": "true"})
        out.append(result)
        print(f"  kill {k + 1}: writes back {result['writes_back_after_s']} s, new leader "
              f"{result['new_leader_after_s']} s, lost {result['writes_lost']}, standby started "
              f"{result['standby_started']}, takeovers decided twice {result['takeovers_decided_twice']}", flush=True)
    return out


def _pair(f: BenchFleet) -> tuple[dict[str, Any], dict[str, Any]]:
    """A started worker and a standby for it (placed by the scheduler on the other host)."""
    worker = f.api.post("/v1/apps/pair/machines", json={
        "config": {"image": "hello:v1", "metadata": {"fly_process_group": "worker"}}, "region": "ams"}).json()
    standby = f.api.post("/v1/apps/pair/machines", json={
        "config": {"image": "hello:v1", "standbys": [worker["id"]], "metadata": {"fly_process_group": "worker"}},
        "region": "ams", "skip_launch": True}).json()
    assert standby.get("host_id") not in (None, worker["host_id"]), (worker, standby)
    f.api.get(f"/v1/apps/pair/machines/{worker['id']}/wait", params={"state": "started", "timeout": 30}
              ).raise_for_status()
    time.sleep(1.0)  # the worker's host acknowledges that a standby watches it (its next heartbeats)
    return worker, standby


def _wait_taken_over(c: httpx.Client, standby_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The standby once it runs (and 3 s more, for a second takeover to show), or as it is at the timeout."""
    deadline = time.monotonic() + timeout
    m: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            m = c.get(f"/v1/apps/pair/machines/{standby_id}").json()
            if m.get("state") == "started":
                time.sleep(3.0)  # a late decision by the deposed leader, or a second one, would land by now
                return dict(c.get(f"/v1/apps/pair/machines/{standby_id}").json())
        time.sleep(0.2)
    return m


def _wait_host_ok(c: httpx.Client, host_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if any(h["id"] == host_id and h["status"] == "ok" for h in c.get("/v1/hosts").json()):
                return
        time.sleep(0.2)
    raise SystemExit(f"host {host_id} did not come back within {timeout:.0f} s")


async def _kill_under_probe(f: BenchFleet, probe: ControlPlaneProbe, index: int, host_id: str) -> tuple[float, float]:
    """7 s of the probe's writes; the leader and `host_id` killed at 2 s; returns when (seconds into the probe,
    and wall clock)."""
    start = time.monotonic()
    task = asyncio.ensure_future(probe.run(start, 7.0))
    await asyncio.sleep(2.0)
    killed_at, killed_wall = time.monotonic() - start, time.time()
    await asyncio.gather(asyncio.to_thread(kill_server, f.spec.data_dir, index),
                         asyncio.to_thread(kill_host, f.spec.data_dir, host_id))
    await task
    return killed_at, killed_wall


def creates_via(f: BenchFleet, url: str, n: int) -> list[float]:
    times = []
    with client(f, url) as c:
        for _ in range(n):
            t0 = time.perf_counter()
            c.post("/v1/apps/bench/machines", json={"config": CONFIG, "skip_launch": True}).raise_for_status()
            times.append(time.perf_counter() - t0)
    return times


def heartbeats(f: BenchFleet, urls: list[str], hosts: int, seconds: float) -> tuple[int, int, float, list[float]]:
    """`hosts` hosts (no agent behind them) each registering, then heartbeating every 250 ms through `urls`
    (spread over them). Measured for `seconds` after a 2 s warm-up, so that no host registered early goes
    silent (and is judged dead, probed and taken over) while the others register: (sent, answered 200, server
    CPU seconds of every replica, latencies), all within the measured window."""
    fleet = status(f.spec.data_dir)
    assert fleet is not None
    pids = [s["pid"] for s in replicas(fleet)]
    latencies: list[float] = []
    counts = {"sent": 0, "ok": 0}
    warmup = 2.0

    async def host(i: int, c: httpx.AsyncClient, start: float) -> None:
        (await c.post("/v1/hosts", json={"id": f"hb-{i:03d}", "region": "ams", "address": f"127.0.250.{i + 1}",
                                         "agent_url": f"https://127.0.250.{i + 1}:1", "cpus": 1,
                                         "memory_mb": 1024})).raise_for_status()
        k = 0
        while (due := start + (i / hosts) * 0.25 + k * 0.25) < start + warmup + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            measured = due >= start + warmup
            t0 = time.perf_counter()
            counts["sent"] += measured
            try:
                r = await c.post(f"/v1/hosts/hb-{i:03d}/heartbeat", json={"watched": []})
                counts["ok"] += measured and r.status_code == 200
            except httpx.HTTPError:
                pass
            if measured:
                latencies.append(time.perf_counter() - t0)
            k += 1

    async def run() -> float:
        clients = [httpx.AsyncClient(base_url=u, headers=f.headers, timeout=5, trust_env=False, verify=f.verify,
                                     limits=httpx.Limits(max_connections=50)) for u in urls]
        start = time.monotonic()
        work = asyncio.gather(*(host(i, clients[i % len(clients)], start) for i in range(hosts)))
        await asyncio.sleep(warmup)
        before = cpu_seconds(pids)
        await work
        used = cpu_seconds(pids) - before
        for c in clients:
            await c.aclose()
        return used

    cpu = asyncio.run(run())
    return counts["sent"], counts["ok"], cpu, latencies


class _Api:
    """What the probe's read-back and clean-up need of an API client."""

    def __init__(self, c: httpx.Client) -> None:
        self.c = c

    def get(self, path: str) -> object:
        return self.c.get(path).json()

    def delete(self, path: str) -> None:
        self.c.delete(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--machines", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--heartbeat-seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows: dict[str, list[str]] = {}
    kills: list[dict[str, object]] = []
    for name, kw in COLUMNS:
        print(f"{name}...", flush=True)
        with BenchFleet(["ams"], 2, driver="fake", host_cpus=1_000_000, host_memory_mb=1_000_000_000,
                        postgres_port=free_port(), server_port=consecutive_ports(3), **kw) as f:
            f.push("hello:v1", "hello", ["python3", "app.py"])
            f.api.post("/v1/apps", json={"app_name": "bench"}).raise_for_status()
            bench_create(f, 20)
            creates = bench_create(f, args.creates)
            c = summary_ms(creates)
            rows.setdefault("create machine (skip_launch), through the leader: p50 / p99 ms", []).append(
                f"{c['p50']} / {c['p99']}")
            watch_url = f.url
            if kw["servers"] > 1:
                follower = f.info["servers"][(leader_index(f) + 1) % 3]["url"]
                watch_url = follower
                d = summary_ms(creates_via(f, follower, args.creates))
                rows.setdefault("create machine, through a follower (forwarded): p50 / p99 ms", []).append(
                    f"{d['p50']} / {d['p99']}")
            else:
                rows.setdefault("create machine, through a follower (forwarded): p50 / p99 ms", []).append("-")
            print(f"  creates done; filling to {args.machines} machines", flush=True)
            fill(f, args.machines)
            print("  listing, watching, heartbeats", flush=True)
            listed, count = list_times(f, watch_url)
            rows.setdefault(f"list {args.machines} machines (summary=true; a follower's for replicas): p50 ms",
                            []).append(f"{pct(listed, 50) * 1000:.1f} ({count})")
            f.url, saved = watch_url, f.url
            w = asyncio.run(bench_watch(f, args.subscribers, args.changes))
            f.url = saved
            rows.setdefault(f"a change reaches {args.subscribers} SSE watchers (on a follower for replicas): "
                            "p50 / p99 ms", []).append(f"{pct(w, 50) * 1000:.2f} / {pct(w, 99) * 1000:.2f}")
            followers = [s["url"] for i, s in enumerate(f.info.get("servers") or []) if i != leader_index(f)] \
                if kw["servers"] > 1 else [f.url]
            sent, answered, cpu, hb = heartbeats(f, followers, args.hosts, args.heartbeat_seconds)
            rows.setdefault(f"{args.hosts} hosts heartbeating every 250 ms (to the followers for replicas, which "
                            "forward them): server CPU per heartbeat (all replicas), p99", []).append(
                f"{cpu / max(1, sent) * 1e6:.0f} µs, {pct(hb, 99) * 1000:.1f} ms ({answered}/{sent} ok)")
    if args.kills:
        # On a fresh fleet of three replicas: a round kills a host, and a host of the fleet above holds
        # thousands of machines whose recovery is not what this measures.
        print("failover rounds on a fresh fleet of three replicas...", flush=True)
        with BenchFleet(["ams"], 2, driver="fake", postgres_port=free_port(), server_port=consecutive_ports(3),
                        store="postgresql", servers=3) as f:
            f.push("hello:v1", "hello", ["python3", "app.py"])
            try:
                kills = failover(f, args.kills)
            except (Exception, SystemExit) as exc:  # the other figures are still worth printing
                print(f"  failover rounds stopped: {type(exc).__name__}: {exc}", flush=True)
    header = ["measure", *[name for name, _ in COLUMNS]]
    print(table("Control plane: SQLite, PostgreSQL, three replicas (loopback, HTTPS, fake driver)", header,
                [[k, *v] for k, v in rows.items()]))
    if kills:
        back = [float(k["writes_back_after_s"]) for k in kills if k["writes_back_after_s"] is not None]
        leader = [float(k["new_leader_after_s"]) for k in kills if k["new_leader_after_s"] is not None]
        lost = sum(int(k["writes_lost"]) for k in kills)  # type: ignore[call-overload]
        twice = sum(int(k["takeovers_decided_twice"]) for k in kills)  # type: ignore[call-overload]
        not_started = sum(1 for k in kills if not k["standby_started"])
        print()
        print(table(f"Failover: the leader and a worker's host SIGKILLed at once under {WRITES_PER_SECOND:g} API "
                    f"writes/s, {len(kills)} times", [
            "measure", "median", "max", "goal", "met"], [
            ["writes succeed again after the kill (s)", f"{statistics.median(back):.2f}", f"{max(back):.2f}",
             "<= 3 s", "yes" if back and max(back) <= 3 else "NO"],
            ["a new leader decides after the kill (s)", f"{statistics.median(leader):.2f}", f"{max(leader):.2f}",
             "<= 5 s", "yes" if leader and max(leader) <= 5 else "NO"],
            ["acknowledged writes lost (all kills)", str(lost), "", "0", "yes" if lost == 0 else "NO"],
            ["takeovers decided twice (all kills)", str(twice), "", "0", "yes" if twice == 0 else "NO"],
            ["standbys that did not start (all kills)", str(not_started), "", "0",
             "yes" if not_started == 0 else "NO"],
            ["kills without a new leader seen / without writes back", str(len(kills) - len(leader)),
             str(len(kills) - len(back)), "0", "yes" if len(leader) == len(back) == len(kills) else "NO"]]))


if __name__ == "__main__":
    main()
