"""Control-plane benchmarks (issue 2): create latency, listing 1,000 machines, watch-feed fan-out.

    .venv/bin/python bench/control_plane.py [--creates 500] [--machines 1000] [--changes 300] [--names 20000]

Runs a real server (SQLite store, synchronous commits) and one agent with the fake driver (placement
needs a live host; no workload runs), on loopback, and prints Markdown tables. Targets: create
(skip_launch) p50 <= 5 ms over HTTPS, with the admin token and with a deploy token (interleaved), beside the
same creates over plain HTTP on a fleet without TLS (before issue 15); list of 1,000 machines <= 50 ms; a
change reaches 10 watchers <= 10 ms p99. Then (issue 21) 20,000 creates without a name in one app: none
fails, every name distinct; with list and watch figures at 1,000, 4,000 and 10,000 machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter

import httpx
from common import BenchFleet, pct, summary_ms, table

CONFIG = {"image": "hello:v1", "services": [{"internal_port": 8080, "protocol": "tcp",
                                             "ports": [{"port": 80, "handlers": ["http"]}]}],
          "env": {"A": "1"}, "metadata": {"fly_process_group": "web"}}


def bench_create(f: BenchFleet, n: int, token: str | None = None) -> list[float]:
    """`n` creates with the admin token, or with `token` (a scoped one: its lookup and rule run each time)."""
    client = f.api if token is None else httpx.Client(base_url=f.url, headers={"Authorization": f"Bearer {token}"},
                                                      trust_env=False, verify=f.verify)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.post("/v1/apps/bench/machines", json={"config": CONFIG, "skip_launch": True})
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
    return times


def bench_list(f: BenchFleet, total: int, rounds: int = 30) -> tuple[list[float], list[float], int]:
    have = len(f.api.get("/v1/apps/bench/machines", params={"summary": "true"}).json())
    for _ in range(total - have):
        f.api.post("/v1/apps/bench/machines", json={"config": CONFIG, "skip_launch": True}).raise_for_status()
    full, summary = [], []
    count = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        r = f.api.get("/v1/apps/bench/machines")
        full.append(time.perf_counter() - t0)
        count = len(r.json())
        t0 = time.perf_counter()
        f.api.get("/v1/apps/bench/machines", params={"summary": "true"})
        summary.append(time.perf_counter() - t0)
    return full, summary, count


async def bench_watch(f: BenchFleet, subscribers: int, changes: int, app: str = "bench") -> list[float]:
    """Each subscriber holds an SSE stream; a writer changes one machine's metadata `changes` times."""
    mid = f.api.get(f"/v1/apps/{app}/machines", params={"summary": "true"}).json()[0]["id"]
    start_rev = f.api.get("/v1/watch", params={"since": 0}).json()["revision"]
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = 0
    done = asyncio.Event()
    got = {i: 0 for i in range(subscribers)}

    async def subscriber(i: int) -> None:
        nonlocal ready
        async with httpx.AsyncClient(headers=f.headers, timeout=None, trust_env=False, verify=f.verify) as client, \
                client.stream("GET", f"{f.url}/v1/watch", params={"since": start_rev},
                              headers={"Accept": "text/event-stream"}) as response:
            ready += 1
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                now = time.perf_counter()
                event = json.loads(line[6:])
                obj = event.get("object") or {}
                marker = (obj.get("config") or {}).get("metadata", {}).get("bench")
                if marker in sent:
                    latencies.append(now - sent[marker])
                    got[i] += 1
                    if got[i] >= changes:
                        return

    tasks = [asyncio.create_task(subscriber(i)) for i in range(subscribers)]
    deadline = time.monotonic() + 30
    while ready < subscribers:  # bounded: a subscriber that failed to connect ends the bench with its error
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise RuntimeError("a watch subscriber failed") from task.exception()
        if time.monotonic() > deadline:
            raise RuntimeError("watch subscribers did not connect within 30 s")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)

    def writer() -> None:
        with httpx.Client(base_url=f.url, headers=f.headers, trust_env=False, verify=f.verify) as client:
            for k in range(changes):
                marker = f"m{k}"
                sent[marker] = time.perf_counter()  # from the moment the write is sent
                client.post(f"/v1/apps/{app}/machines/{mid}/metadata/bench", json={"value": marker})
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    thread.join()
    done.set()
    return latencies


def bench_names(f: BenchFleet, total: int, checkpoints: list[int], changes: int, subscribers: int
                ) -> tuple[int, Counter[str], int, list[list[object]]]:
    """`total` unnamed creates (skip_launch) in one app: every one must succeed with a name of its own (the
    server draws again when a made-up name is taken). At each checkpoint, list and watch figures."""
    f.api.post("/v1/apps", json={"app_name": "names"}).raise_for_status()
    config = {**CONFIG, "metadata": {"fly_process_group": "web"}}
    failed: Counter[str] = Counter()  # why creates failed, by status and message
    rows: list[list[object]] = []
    made = 0
    for checkpoint in sorted([*checkpoints, total]):
        while made < checkpoint:
            r = f.api.post("/v1/apps/names/machines", json={"config": config, "skip_launch": True})
            if r.status_code != 200:
                failed[f"{r.status_code} {r.text[:120]}"] += 1
            made += 1
        if checkpoint not in checkpoints:
            continue
        full, summary = [], []
        for _ in range(10):
            t0 = time.perf_counter()
            f.api.get("/v1/apps/names/machines")
            full.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            f.api.get("/v1/apps/names/machines", params={"summary": "true"})
            summary.append(time.perf_counter() - t0)
        watch = asyncio.run(bench_watch(f, subscribers, changes, app="names"))
        lf, ls, w = summary_ms(full), summary_ms(summary), summary_ms(watch)
        rows.append([checkpoint, lf["p50"], lf["p99"], ls["p50"], ls["p99"], w["p50"], w["p99"]])
    names = [m["name"] for m in f.api.get("/v1/apps/names/machines", params={"summary": "true"}).json()]
    return made, failed, len(set(names)), rows


def names_section(args: argparse.Namespace) -> None:
    with BenchFleet(["ams"], 1, driver="fake", host_cpus=1_000_000, host_memory_mb=1_000_000_000) as big:
        big.push("hello:v1", "hello", ["python3", "app.py"])
        made, failed, unique, rows = bench_names(big, args.names, [c for c in (1000, 4000, 10000)
                                                                   if c < args.names], 100, args.subscribers)
    print(table(f"{made} creates without a name in one app (skip_launch; the server makes the names up)",
                ["creates", "failed", "distinct names", "target", "met"],
                [[made, sum(failed.values()), unique, "0 failed, all distinct",
                  "yes" if not failed and unique == made else "NO"]]))
    for why, count in failed.most_common():
        print(f"- {count} failed: {why}")
    print(table("The same app as it grows: list and watch",
                ["machines", "list p50 ms", "list p99 ms", "summary p50 ms", "summary p99 ms",
                 f"watch ({args.subscribers} watchers) p50 ms", "watch p99 ms"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=500)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--names", type=int, default=20000, help="unnamed creates in one app (0: skip)")
    parser.add_argument("--names-only", action="store_true", help="only the unnamed creates")
    args = parser.parse_args()
    if args.names_only:
        names_section(args)
        return
    # Before issue 15's TLS: the same creates over plain HTTP with the admin token, on a fleet of its own.
    with BenchFleet(["ams"], 1, driver="fake", host_cpus=100000, host_memory_mb=100_000_000, tls=False) as plain:
        plain.push("hello:v1", "hello", ["python3", "app.py"])
        plain.api.post("/v1/apps", json={"app_name": "bench"}).raise_for_status()
        bench_create(plain, 20)  # warm up
        clear = [t for _ in range(5) for t in bench_create(plain, args.creates // 5)]
    with BenchFleet(["ams"], 1, driver="fake", host_cpus=100000, host_memory_mb=100_000_000) as f:
        f.push("hello:v1", "hello", ["python3", "app.py"])
        f.api.post("/v1/apps", json={"app_name": "bench"}).raise_for_status()
        bench_create(f, 20)  # warm up
        deploy_token = f.api.post("/v1/tokens", json={"kind": "deploy", "app": "bench"}).json()["token"]
        creates, scoped = [], []
        for _ in range(5):  # interleaved, so that both see the same store
            creates += bench_create(f, args.creates // 5)
            scoped += bench_create(f, args.creates // 5, deploy_token)
        full, summary, count = bench_list(f, args.machines)
        watch = asyncio.run(bench_watch(f, args.subscribers, args.changes))
    if args.names:
        names_section(args)
    b = summary_ms(clear)
    c = summary_ms(creates)
    d = summary_ms(scoped)
    lf, ls = summary_ms(full), summary_ms(summary)
    w = summary_ms(watch)
    print(table("Control plane (one server, SQLite WAL + synchronous=FULL, loopback; HTTPS under the fleet CA "
                "unless said)",
                ["measure", "n", "p50 ms", "p99 ms", "max ms", "target", "met"],
                [["create machine (skip_launch), plain HTTP, admin token (before TLS)", b["n"], b["p50"], b["p99"],
                  b["max"], "", ""],
                 ["create machine (skip_launch), HTTPS, admin token", c["n"], c["p50"], c["p99"], c["max"],
                  "p50 <= 5 ms", "yes" if pct(creates, 50) <= 0.005 else "NO"],
                 ["create machine (skip_launch), HTTPS, an app's deploy token", d["n"], d["p50"], d["p99"], d["max"],
                  "p50 <= 5 ms", "yes" if pct(scoped, 50) <= 0.005 else "NO"],
                 [f"list {count} machines (full objects)", lf["n"], lf["p50"], lf["p99"], lf["max"], "<= 50 ms",
                  "yes" if pct(full, 50) <= 0.050 else "NO"],
                 [f"list {count} machines (summary=true)", ls["n"], ls["p50"], ls["p99"], ls["max"], "", ""],
                 [f"watch: write sent -> received by each of {args.subscribers} SSE watchers", w["n"], w["p50"],
                  w["p99"], w["max"], "p99 <= 10 ms", "yes" if pct(watch, 99) <= 0.010 else "NO"]]))


if __name__ == "__main__":
    main()
