"""Region benchmarks (issue 7): nearest region, a dead region's shift, fly-replay's cost.

    .venv/bin/python bench/regions.py [--trials 10] [--replays 30]

A fleet with ams, ewr and syd (one host each), an edge per region and simulated RTTs (ams–ewr ~90 ms,
ams–syd ~252 ms, ewr–syd ~242 ms, from core/regions.py):
- an app with machines in ewr (near to ams) and syd (far), requested through the ams edge: where requests
  go; then ewr's host is power-cut: how long until the ams edge no longer chooses ewr (its routing table
  marks the machine unhealthy), and how many client requests failed meanwhile (target: edges stop choosing a
  dead region within 2 s);
- fly-replay: a write sent to a replica in syd is replayed to the primary in ams; its time minus a write
  sent straight to the primary minus the syd–ams RTT is the replay's own cost (target <= 2 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import ROOT, BenchFleet, table

from roost.core.regions import RttTable
from roost.dev import faults
from roost.dev.fleet import admin_get, restart_agent

SERVICE = {"protocol": "tcp", "internal_port": 8080, "autostop": False, "ports": [{"port": 80, "handlers": ["http"]}]}


def routes(f: BenchFleet, region: str, app: str) -> list[dict]:
    edge = next(p for p in f.info["proxies"] if p["region"] == region)
    return admin_get(edge, "/routes").json()["apps"].get(app, {}).get("machines", [])


def shift(f: BenchFleet, trials: int) -> list[list[object]]:
    edge = next(p for p in f.info["proxies"] if p["region"] == "ams")["url"]
    times, failed, near = [], 0, 0
    for i in range(trials):
        app = f"far{i}"
        f.api.post("/v1/apps", json={"app_name": app, "primary_region": "ewr"})
        ms = {}
        for region in ("ewr", "syd"):
            m = f.api.post(f"/v1/apps/{app}/machines",
                           json={"config": {"image": "hello:v1", "services": [SERVICE]}, "region": region}).json()
            f.api.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
            ms[region] = m
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(1 for m in routes(f, "ams", app) if m["healthy"]) < 2:
            time.sleep(0.05)
        seen: list[str] = []
        with httpx.Client(headers={"Host": f"{app}.localhost"}, trust_env=False, timeout=10) as client:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    answer = client.get(f"{edge}/")
                    seen.append(f"{answer.status_code}:{answer.json().get('region')}")
                    if answer.json()["region"] == "ewr":
                        near += 1
                        break
                except (httpx.HTTPError, ValueError) as exc:
                    seen.append(type(exc).__name__)
                time.sleep(0.05)
            else:
                print(f"trial {i}: never answered from ewr; answers: {seen[:5]} ... {seen[-3:]}; "
                      f"ams edge routes: {routes(f, 'ams', app)}", file=sys.stderr)
                if os.environ.get("ROOST_BENCH_KEEP"):
                    shutil.copytree(f.spec.data_dir / "logs", Path(os.environ["ROOST_BENCH_KEEP"]) / f"trial{i}",
                                    dirs_exist_ok=True)
        results: list[tuple[float, int]] = []
        stop = threading.Event()

        def load(app: str = app, stop: threading.Event = stop, results: list[tuple[float, int]] = results) -> None:
            with httpx.Client(headers={"Host": f"{app}.localhost"}, trust_env=False, timeout=10) as client:
                for _ in range(1000):
                    if stop.is_set():
                        return
                    try:
                        results.append((time.time(), client.get(f"{edge}/").status_code))
                    except httpx.HTTPError:
                        results.append((time.time(), -1))
                    time.sleep(0.02)

        thread = threading.Thread(target=load)
        thread.start()
        killed = faults.kill_host(f.spec.data_dir, f.info["hosts"][1]["id"])  # ewr-1
        gone = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not any(m["healthy"] and m["region"] == "ewr" for m in routes(f, "ams", app)):
                gone = time.time()
                break
            time.sleep(0.01)
        time.sleep(0.5)
        stop.set()
        thread.join(20)
        failed += sum(1 for t, code in results if t >= killed and code != 200)
        if gone is not None:
            times.append(gone - killed)
        restart_agent(f.spec.data_dir, f.info["hosts"][1]["id"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                h["id"] == "ewr-1" and h["status"] == "ok" for h in f.api.get("/v1/hosts").json()):
            time.sleep(0.1)
        f.api.delete(f"/v1/apps/{app}")
    return [[trials, f"{near}/{trials} to ewr", f"{statistics.median(times) * 1000:.0f}",
             f"{max(times) * 1000:.0f}", failed, "<= 2000 ms"]]


def replay(f: BenchFleet, work: Path, n: int) -> list[list[object]]:
    directory = work / "notes"
    shutil.copytree(ROOT / "examples" / "primary-db", directory)
    ams_edge = next(p for p in f.info["proxies"] if p["region"] == "ams")["url"]
    syd_edge = next(p for p in f.info["proxies"] if p["region"] == "syd")["url"]
    text = (directory / "fly.toml").read_text().replace("http://127.0.0.1:4400", ams_edge)
    (directory / "fly.toml").write_text(text)
    env = {"ROOST_API_URL": f.url, "ROOST_API_TOKEN": f.token, "PATH": "/usr/bin:/bin"}
    for args in (["apps", "create", "notes", "--primary-region", "ams"], ["deploy", "-c", str(directory / "fly.toml")],
                 ["scale", "count", "3", "--region", "ams,ewr,syd", "-a", "notes", "--yes"]):
        subprocess.run([sys.executable, "-m", "roost", *args], env=env, check=True, capture_output=True, timeout=300)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sum(1 for m in routes(f, "syd", "notes") if m["healthy"]) < 3:
        time.sleep(0.1)
    time.sleep(1)
    direct, replayed = [], []
    with httpx.Client(headers={"Host": "notes.localhost"}, trust_env=False, timeout=20) as client:
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post(f"{ams_edge}/items", json={"text": f"direct {i}"})
            direct.append(time.perf_counter() - t0)
            assert r.status_code == 201, r.text
            t0 = time.perf_counter()
            r = client.post(f"{syd_edge}/items", json={"text": f"replayed {i}"})
            replayed.append(time.perf_counter() - t0)
            assert r.status_code == 201 and r.json()["region"] == "ams", r.text
    rtt = RttTable().rtt("syd", "ams")
    d, r = statistics.median(direct) * 1000, statistics.median(replayed) * 1000
    return [[n, f"{d:.1f}", f"{r:.1f}", f"{rtt:.1f}", f"{r - d - rtt:+.1f}", "<= 2 ms"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--replays", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="roost-bench-regions-") as tmp, \
            BenchFleet(["ams", "ewr", "syd"], 1, proxies=True, idle_interval=3600.0, host_memory_mb=16384) as f:
        f.push("hello:v1", "hello", ["python3", "app.py"])
        shifted = shift(f, args.trials)
        replays = replay(f, Path(tmp), args.replays)
    print(table("Edge in ams, app with machines in ewr (near) and syd (far); then ewr's host is power-cut",
                ["trials", "before the cut", "edge stops choosing ewr, median ms", "max ms",
                 "client requests failed", "target"], shifted))
    print()
    print(table("fly-replay: a write to the syd replica replayed to the primary in ams (simulated RTTs)",
                ["writes", "direct to primary, median ms", "via syd replica + replay, median ms",
                 "syd-ams RTT ms", "replay's own cost", "target"], replays))


if __name__ == "__main__":
    main()
