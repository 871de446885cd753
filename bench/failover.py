"""Host-failure benchmarks and proofs (issue 6).

    .venv/bin/python bench/failover.py [--kills 20] [--partitions 30] [--soak 600] [--outage 60] [--netns]

On a local fleet (one region, three hosts, default detector and lease settings), with the fenced worker
example deployed as 1 + standby:
- kills: SIGKILL a worker's host (agent and machines, a power cut): time until the host is declared dead
  (from the server's host status on the watch feed) and until the standby's process runs (agents' run
  logs); targets: dead <= 2 s p99, standby running <= 3 s p95.
- partitions (root + iptables): cut the worker's host off from the control plane and its peers while its
  machines run: intervals where the worker and its standby ran at the same time (agents' run logs) and
  writes accepted with a stale fencing token (the shared log): both must be 0.
- soak: both cores loaded by machines (busy loops) for N seconds: hosts declared dead must be 0.
- outage: the control plane killed for N seconds, and a host cut off from the control plane only:
  machines stopped and takeovers must be 0.
Each trial deploys a fresh app, so trials are independent; the dead host is restarted after each.

--netns (root): the same on a fleet of network namespaces with real link latency (issue 19): the control plane
in ams, the worker, its standby and their peers on three hosts in syd, 250 ms round trip away; a power cut
also takes the host's link, a partition drops it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import ROOT, BenchFleet, pct, table

from roost.dev import faults
from roost.dev.fleet import restart_agent, restart_server

REGION = "ams"  # where the workers run (--netns: syd, a continent away from the control plane)


class Watch(threading.Thread):
    """Follows the watch feed and notes when each host's status changed (server clock = wall clock here)."""

    def __init__(self, f: BenchFleet) -> None:
        super().__init__(daemon=True)
        self.f = f
        self.changes: list[tuple[float, str, str]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        since = self.f.api.get("/v1/watch", params={"since": 0}).json()["revision"]
        while not self.stopping.is_set():
            try:
                batch = self.f.api.get("/v1/watch", params={"since": since, "timeout": 1}, timeout=5).json()
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            for e in batch["events"]:
                if e["kind"] == "host" and e["object"]:
                    self.changes.append((time.time(), e["key"], e["object"]["status"]))
            since = batch["revision"]

    def first(self, host: str, status: str, after: float) -> float | None:
        times = [t for t, h, s in self.changes if h == host and s == status and t >= after]
        return min(times) if times else None


def deploy(f: BenchFleet, work: Path, app: str) -> tuple[dict, dict, Path]:
    directory = work / app
    shutil.copytree(ROOT / "examples" / "fenced-worker", directory)
    shared = work / f"{app}.log"
    text = (directory / "fly.toml").read_text().replace('app = "fenced"', f'app = "{app}"')
    (directory / "fly.toml").write_text(text.replace("/tmp/roost-fenced/shared.log", str(shared)))
    import subprocess
    import sys

    env = {**os.environ, "ROOST_API_URL": f.url, "ROOST_API_TOKEN": f.token}
    if REGION != "ams":
        text = (directory / "fly.toml").read_text()
        (directory / "fly.toml").write_text(text.replace('primary_region = "ams"', f'primary_region = "{REGION}"'))
    for args in (["apps", "create", app, "--primary-region", REGION], ["deploy", "-c", str(directory / "fly.toml")]):
        subprocess.run([sys.executable, "-m", "roost", *args], env=env, check=True, capture_output=True, timeout=120)
    machines = f.api.get(f"/v1/apps/{app}/machines").json()
    worker = next(m for m in machines if not m["config"].get("standbys"))
    standby = next(m for m in machines if m["config"].get("standbys"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (shared.exists() and shared.read_text().count("\n") > 2):
        time.sleep(0.05)
    time.sleep(1.0)  # steady state: the worker's host has heard (and acknowledged) that a standby watches it
    return worker, standby, shared


def standby_start(f: BenchFleet, standby_id: str, after: float, timeout: float = 10) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        starts = [r.start for r in faults.runs(f.spec.data_dir) if r.machine == standby_id and r.start >= after]
        if starts:
            return min(starts)
        time.sleep(0.02)
    return None


def wait_ok(f: BenchFleet, host: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(h["id"] == host and h["status"] == "ok" for h in f.api.get("/v1/hosts").json()):
            return
        time.sleep(0.1)


def stale(shared: Path) -> int:
    highest = count = 0
    for line in shared.read_text().splitlines():
        token = int(line.split()[0])
        count += token < highest
        highest = max(highest, token)
    return count


def kills(f: BenchFleet, work: Path, watch: Watch, n: int) -> list[list[object]]:
    dead, running, failures = [], [], 0
    for i in range(n):
        worker, standby, _ = deploy(f, work, f"kill{i}")
        t = faults.kill_host(f.spec.data_dir, worker["host_id"])
        start = standby_start(f, standby["id"], t)
        declared = watch.first(worker["host_id"], "unreachable", t)
        if start is None or declared is None:
            failures += 1
        else:
            dead.append(declared - t)
            running.append(start - t)
        restart_agent(f.spec.data_dir, worker["host_id"])
        wait_ok(f, worker["host_id"])
    ms = lambda xs, p: f"{pct(xs, p) * 1000:.0f}" if xs else "-"  # noqa: E731
    return [["host declared dead after a power cut", len(dead), ms(dead, 50), ms(dead, 95), ms(dead, 99),
             "p99 <= 2000 ms", failures],
            ["standby's process running after the power cut", len(running), ms(running, 50), ms(running, 95),
             ms(running, 99), "p95 <= 3000 ms", failures]]


def partitions(f: BenchFleet, work: Path, n: int) -> list[list[object]]:
    overlaps = stale_total = fenced = missed = 0
    gaps = []
    for i in range(n):
        worker, standby, shared = deploy(f, work, f"cut{i}")
        t = faults.partition_host(f.spec.data_dir, worker["host_id"])
        try:
            start = standby_start(f, standby["id"], t)
            time.sleep(0.5)
            runs = faults.runs(f.spec.data_dir)
            old = [r for r in runs if r.machine == worker["id"]]
            new = [r for r in runs if r.machine == standby["id"]]
            overlaps += len(faults.overlaps(old, new))
            ended = [r.end for r in old if r.end_reason == "fenced" and r.end]
            fenced += bool(ended)
            if start is None:
                missed += 1
            elif ended:
                gaps.append(start - max(ended))
        finally:
            faults.heal(f.spec.data_dir)
        wait_ok(f, worker["host_id"])
        time.sleep(0.5)
        stale_total += stale(shared)
    return [[n, fenced, n - missed, overlaps, stale_total,
             f"{min(gaps) * 1000:.0f} / {statistics.median(gaps) * 1000:.0f}" if gaps else "-"]]


def soak(f: BenchFleet, seconds: int, watch: Watch) -> list[list[object]]:
    f.api.post("/v1/apps", json={"app_name": "burn", "primary_region": REGION})
    config = {"image": "burn:v1", "init": {"cmd": ["python3", "-c", "while True: pass"]},
              "guest": {"cpu_kind": "performance", "cpus": 1, "memory_mb": 256}}
    ids = [f.api.post("/v1/apps/burn/machines", json={"config": config}).json()["id"] for _ in range(4)]
    start = time.time()
    time.sleep(seconds)
    false_dead = [c for c in watch.changes if c[0] >= start and c[2] == "unreachable"]
    suspects = [c for c in watch.changes if c[0] >= start and c[2] == "unknown"]
    for mid in ids:
        f.api.delete(f"/v1/apps/burn/machines/{mid}", params={"force": "true"})
    return [[seconds, "4 busy-loop machines on 2 cores", len(suspects), len(false_dead), "0"]]


def outage(f: BenchFleet, work: Path, seconds: int) -> list[list[object]]:
    rows = []
    worker, standby, _ = deploy(f, work, "outage")
    before = {r.machine for r in faults.runs(f.spec.data_dir) if r.end is None}
    t = faults.kill_server(f.spec.data_dir)
    time.sleep(seconds)
    restart_server(f.spec.data_dir)
    time.sleep(3)
    after = {r.machine for r in faults.runs(f.spec.data_dir) if r.end is None}
    took = standby_start(f, standby["id"], t, timeout=0.1)
    rows.append([f"control plane killed for {seconds}s", len(before - after), 0 if took is None else 1])
    if faults.partition_unavailable() is None:
        worker, standby, _ = deploy(f, work, "island")
        before = {r.machine for r in faults.runs(f.spec.data_dir) if r.end is None}
        t = faults.partition_host(f.spec.data_dir, worker["host_id"], server_only=True)
        time.sleep(seconds)
        faults.heal(f.spec.data_dir)
        time.sleep(3)
        after = {r.machine for r in faults.runs(f.spec.data_dir) if r.end is None}
        took = standby_start(f, standby["id"], t, timeout=0.1)
        rows.append([f"host cut off from the control plane only for {seconds}s", len(before - after),
                     0 if took is None else 1])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=30)
    parser.add_argument("--soak", type=int, default=600)
    parser.add_argument("--outage", type=int, default=60)
    parser.add_argument("--netns", action="store_true", help="hosts in network namespaces, real link latency")
    args = parser.parse_args()
    global REGION
    regions, hosts = (["ams", "syd"], 3) if args.netns else (["ams"], 3)
    REGION = regions[-1]
    with tempfile.TemporaryDirectory(prefix="roost-bench-failover-") as tmp, \
            BenchFleet(regions, hosts, host_memory_mb=65536, host_cpus=8, netns=args.netns) as f:
        work = Path(tmp)
        f.push("fenced:latest", "fenced-worker", ["python3", "worker.py"])
        f.push("burn:v1", "fenced-worker", ["python3", "worker.py"])
        watch = Watch(f)
        watch.start()
        results = {}
        if args.kills:
            results["kills"] = kills(f, work, watch, args.kills)
        if args.partitions and faults.partition_unavailable() is None:
            results["partitions"] = partitions(f, work, args.partitions)
        if args.soak:
            results["soak"] = soak(f, args.soak, watch)
        if args.outage:
            results["outage"] = outage(f, work, args.outage)
        watch.stopping.set()
    if "kills" in results:
        print(table("Power cut of the worker's host (SIGKILL agent and machines); defaults: heartbeat 0.25 s, "
                    "suspect 0.75 s, dead 1.5 s, lease 1.0 s + 0.5 s margin",
                    ["measure", "trials", "p50 ms", "p95 ms", "p99 ms", "target", "missed"], results["kills"]))
        print()
    if "partitions" in results:
        print(table("Host cut off from the control plane and its peers (iptables on its address; --netns: its link "
                    "dropped), machines running",
                    ["trials", "worker fenced", "standby started", "double-run intervals", "stale-token writes",
                     "fence -> standby start, min / median ms"], results["partitions"]))
        print()
    if "soak" in results:
        print(table("False positives under load", ["seconds", "load", "hosts suspected", "hosts declared dead",
                                                    "target dead"], results["soak"]))
        print()
    if "outage" in results:
        print(table("Outages that must change nothing", ["fault", "machines stopped", "takeovers"],
                    results["outage"]))


if __name__ == "__main__":
    main()
