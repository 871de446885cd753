"""Drill benchmarks (issue 8): every fault of `roost drill`, under open-loop load, on one dev fleet.

    .venv/bin/python bench/drills.py [--rps 100] [--duration 30] [--at 10] [--heal-after 10] [--repeat 1]

A fleet with ams, ewr and syd (two hosts each), an edge per region and the anycast entry. Apps: `web` (two
machines in ams, one in ewr, one in syd: the HTTP app; clients in ams), `crunch` (a fenced worker and its
standby), `ledger` (the primary-db example: primary in ams, replica in ewr). Each drill runs through the
same code as `roost drill` (roost.drill.runner) and one row per drill is printed; the targets come from
issue 8:
- kill-host on a two-machine HTTP app: 0 failed GETs;
- kill-host under a worker with a standby: the standby runs (takeover time shown), 0 double runs;
- kill-region: the region's clients shift to the next nearest region, ewr (~90 ms from ams), not syd;
- kill-server: traffic unaffected (0 failed);
- partition-host (root): the watched worker is fenced before its standby starts, 0 double runs; and under
  the HTTP app, no failed GET (the edge drops requests waiting on a host declared unreachable and retries);
- writes to the primary region while its host is killed: 0 acknowledged writes lost.
And from issue 12:
- kill-machine on the HTTP app: only the requests users could tell count (time to shift well under 1 s,
  not the whole time the restarted machine serves);
- kill-region: the clients moved to ewr pay ewr's distance (p50 during ~90 ms), and new connections go back
  to ams after the heal;
- kill-region on the stack example (worker + standby both in ams), healed: the worker or its standby runs
  within 5 s of the heal (column "after the heal");
- a second kill-host on the failed-over worker's app: 0 double runs and no takeover counted (only its own
  window is judged).
And from issue 17, each beside its "before" in the same run:
- slow-machine on `web` (latency-aware balancing, the default) and on `webfly` (the same machines with
  `concurrency.balancing = "random"`, Fly's rule): p99 during <= 3x p99 before, the slow machine <= 10% of
  requests after the first second;
- partition-host on `webfly` with the ams edge as before issue 17 (`--connect-timeout 2
  --route-to-suspect-hosts`), then on `web` with the edge as now (connect timeouts from measured connect
  times, suspect hosts avoided, latency-aware balancing): 0 failed, p99 during <= 250 ms.

- freeze-agent (SIGSTOP the worker's agent for 3 s) on a fenced worker with a standby, repeated (30 trials,
  the work handed back to the worker after each): double runs, without the fence keeper (agents started
  with `--no-fence-keeper`, 10 trials) and with it: 0 in 30.

- chaos (`--chaos-seconds 600 --seeds 1,2,3`): the stack example (web in ams and ewr, the worker's standby
  in ewr) under 20 req/s, random faults for the whole time, each invariant's count per seed: all 0.

`--only slow,partition` runs just those rows (names: kill-host, kill-machine, kill-region, kill-server,
stop-machine, slow, partition, worker, stack, island, freeze, chaos, ledger).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import ROOT, BenchFleet, table

from roost.client.api import Api
from roost.dev import faults
from roost.dev.fleet import admin_get, pid_alive, read_fleet, restart_agent, restart_proxy, write_fleet
from roost.drill.campaign import CampaignOptions, Chaos
from roost.drill.runner import Drill, DrillOptions

SERVICE = {"protocol": "tcp", "internal_port": 8080, "autostop": False, "autostart": False,
           "ports": [{"port": 80, "handlers": ["http"]}]}


def roost(f: BenchFleet, *args: str) -> None:
    env = {"ROOST_API_URL": f.url, "ROOST_API_TOKEN": f.token, "ROOST_DEV_DIR": str(f.spec.data_dir),
           "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "roost", *args], check=True, capture_output=True, timeout=300,
                   env=env)


def known_everywhere(f: BenchFleet, app: str, n: int) -> None:
    for proxy in f.info["proxies"]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            routes = admin_get(proxy, "/routes").json()["apps"]
            if sum(1 for m in routes.get(app, {}).get("machines", []) if m["state"] == "started") >= n:
                break
            time.sleep(0.1)


def web(f: BenchFleet, app: str = "web", balancing: str = "latency") -> list[dict[str, Any]]:
    f.api.post("/v1/apps", json={"app_name": app, "primary_region": "ams"})
    service = {**SERVICE, "concurrency": {"type": "requests", "soft_limit": 20, "balancing": balancing}}
    out = []
    for region in ("ams", "ams", "ewr", "syd"):
        m = f.api.post(f"/v1/apps/{app}/machines", json={"config": {"image": "hello:v1", "services": [service]},
                                                          "region": region}).json()
        f.api.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
        out.append(m)
    known_everywhere(f, app, 4)
    return out


OLD_EDGE = ["--connect-timeout", "2", "--route-to-suspect-hosts"]
_BASE_ARGV: dict[str, list[str]] = {}


def restart_with(f: BenchFleet, kind: str, key: str, value: str, argv: Callable[[list[str]], list[str]],
                 restart: Callable[[Path, str], object]) -> None:
    """Stop one of the fleet's processes (a "proxies" entry by region, a "hosts" entry by id), change the command
    line it is restarted with, and restart it."""
    fleet = read_fleet(f.spec.data_dir)
    assert fleet is not None
    entry = next(e for e in fleet[kind] if e[key] == value)
    subprocess.run(["kill", str(entry["pid"])], check=False)
    deadline = time.monotonic() + 10
    while pid_alive(entry["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    entry["argv"] = argv(list(entry["argv"]))
    write_fleet(f.spec.data_dir, fleet)
    restart(f.spec.data_dir, value)


def edge_mode(f: BenchFleet, region: str, old: bool) -> None:
    """Restart a region's edge as before issue 17 (a fixed 2 s connect timeout, suspect hosts kept in the
    routing set) or as now."""
    def argv(now: list[str]) -> list[str]:
        return _BASE_ARGV.setdefault(region, now) + (OLD_EDGE if old else [])

    restart_with(f, "proxies", "region", region, argv, restart_proxy)
    known_everywhere(f, "web", 4)


def chaos_row(f: BenchFleet, api: Api, args: argparse.Namespace, app: str, seed: int) -> list[object]:
    options = CampaignOptions(app=app, rps=20.0, fault_time=5.0, seed=seed, duration=args.chaos_seconds)
    chaos = Chaos(f.spec.data_dir, api, options, lambda m: print(f"  chaos {seed}: {m}", file=sys.stderr))
    chaos.prepare()
    result = chaos.run()
    if args.reports:
        args.reports.mkdir(parents=True, exist_ok=True)
        (args.reports / f"chaos-{seed}.json").write_text(json.dumps(result))
    for failure in result["failures"]:  # each failed or excused request, with its cause, whatever --reports says
        print(f"  chaos {seed}: request failed: {json.dumps(failure)}", file=sys.stderr)
    kinds = Counter(s["fault"] for s in result["steps"])
    settles = [s["recovered_after_s"] for s in result["steps"] if s["recovered_after_s"] is not None]
    inv = result["invariants"]
    return [seed, len(result["steps"]), ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())), result["sent"],
            result["excused_failures"], inv["double_runs"], inv["not_recovered"], inv["failed_requests"],
            f"{max(settles):.1f} s" if settles else "-", "pass" if result["passed"] else "FAIL"]


def example(f: BenchFleet, work: Path, source: str, app: str, replace: dict[str, str], *deploy: str) -> Path:
    directory = work / app
    shutil.copytree(ROOT / "examples" / source, directory)
    text = (directory / "fly.toml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    (directory / "fly.toml").write_text(text)
    roost(f, "apps", "create", app, "--primary-region", "ams")
    roost(f, "deploy", "-c", str(directory / "fly.toml"), *deploy)
    return directory


def run(f: BenchFleet, api: Api, args: argparse.Namespace, fault: str, app: str, target: str | None = None,
        **kw: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"rps": args.rps, "duration": args.duration, "at": args.at,
                                "heal_after": args.heal_after, **kw}
    options = DrillOptions(fault=fault, app=app, target=target, **settings)
    drill = Drill(f.spec.data_dir, api, options, lambda m: print(f"  {fault}: {m}", file=sys.stderr))
    drill.prepare()
    report = drill.run()
    if args.reports:
        args.reports.mkdir(parents=True, exist_ok=True)
        (args.reports / f"{len(list(args.reports.iterdir())):02d}-{fault}-{app}.json").write_text(json.dumps(report))
    time.sleep(3)  # let the healed parts rejoin before the next drill
    return report


def back_after_heal(f: BenchFleet, app: str, report: dict[str, Any]) -> str:
    """Which of the app's worker and standby ran first after the heal, and how long after it."""
    machines = f.api.get(f"/v1/apps/{app}/machines").json()
    pair = {w: "standby" for m in machines for w in [m["id"]] if (m.get("config") or {}).get("standbys")}
    pair.update({w: "worker" for m in machines for w in (m.get("config") or {}).get("standbys") or []})
    starts = sorted((r.start - report["heal_time"], pair[r.machine]) for r in faults.runs(f.spec.data_dir)
                    if r.machine in pair and r.start >= report["heal_time"])
    return f"{starts[0][1]} in {starts[0][0] * 1000:.0f} ms" if starts else "nothing ran"


def agent_keeper(f: BenchFleet, host_id: str, keeper: bool) -> None:
    """Restart a host's agent with or without its fence keeper (machines keep running across it)."""
    def argv(now: list[str]) -> list[str]:
        return [a for a in now if a != "--no-fence-keeper"] + ([] if keeper else ["--no-fence-keeper"])

    restart_with(f, "hosts", "id", host_id, argv, restart_agent)
    time.sleep(2.0)  # registered, watched list learned


def freeze_trials(f: BenchFleet, api: Api, args: argparse.Namespace, app: str, trials: int,
                  keeper: bool) -> list[object]:
    """`trials` freeze-agent drills on the worker's host, handing the work back after each."""
    machines = f.api.get(f"/v1/apps/{app}/machines").json()
    worker = next(m for m in machines if not m["config"].get("standbys"))
    host = worker["host_id"]
    agent_keeper(f, host, keeper)
    if keeper:  # the other hosts too (a takeover's standby host is one of them)
        for other in {m["host_id"] for m in machines} - {host}:
            agent_keeper(f, other, True)
    double = took_over = 0
    takeover_ms: list[float] = []
    for _ in range(trials):
        report = run(f, api, args, "freeze-agent", app, host, duration=7.0, at=1.0, heal_after=3.0, rps=1.0)
        double += report["double_runs"] or 0
        row = next((r for r in report["standbys"] if r["watched"] == worker["id"]), None)
        if row and row["standby_started_after_s"] is not None:
            took_over += 1
            takeover_ms.append(row["standby_started_after_s"] * 1000)
        # Hand the work back: the worker runs again, its standby watches it.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = f.api.get(f"/v1/apps/{app}/machines/{worker['id']}").json()["state"]
            if state == "started":
                break
            f.api.post(f"/v1/apps/{app}/machines/{worker['id']}/start")
            time.sleep(1.0)
        time.sleep(1.5)
    if not keeper:
        agent_keeper(f, host, True)
    median = sorted(takeover_ms)[len(takeover_ms) // 2] if takeover_ms else None
    return ["freeze-agent", f"{host} x{trials}", "with the keeper" if keeper else "no keeper (before)",
            f"{took_over}/{trials}", "-" if median is None else f"{median:.0f} ms", f"{double}",
            "0 double runs in 30" if keeper else "before"]


def target_share(report: dict[str, Any]) -> str:
    """The targeted machine's share of the answers from one second into the fault until the heal."""
    if report["target"]["kind"] != "machine" or report["heal_at_s"] is None:
        return "-"
    since, until = report["fault_at_s"] + 1.0, report["heal_at_s"]
    mine = total = 0
    for bucket in report["timeline"]["buckets"]:
        if since <= bucket["start"] and bucket["start"] + report["timeline"]["width_s"] <= until:
            total += sum(bucket["ok"].values())
            mine += bucket["ok"].get(report["target"]["name"], 0)
    return f"{100 * mine / total:.1f}%" if total else "-"


def row(expect: str, report: dict[str, Any], after: str = "") -> list[object]:
    t, shift = report["totals"], report["shift"]
    during = report["phases"]["during"]
    served = ", ".join(f"{k} {v}" for k, v in (during["by_region"] if report["target"]["kind"] == "region"
                                                 else during["by_machine"]).items()) or "-"
    standby = report["standbys"][0] if report["standbys"] else None
    causes = ", ".join(f"{n} {c}" for c, n in t["causes"].items())
    back = report.get("after_heal") or {}
    if not after and report["target"]["kind"] == "region" and back.get("by_region"):
        total = sum(back["by_region"].values())
        after = "new conns: " + ", ".join(f"{r} {100 * n / total:.0f}%" for r, n in back["by_region"].items())
        if back.get("back_after_s") is not None:
            after += f"; ams again in {back['back_after_s'] * 1000:.0f} ms"
    return [report["fault"], report["target"]["name"], t["sent"], f"{t['failed']}" + (f" ({causes})" if causes else ""),
            report["phases"]["before"]["p50_ms"] or "-", during["p50_ms"] or "-",
            report["phases"]["before"]["p99_ms"] or "-", during["p99_ms"] or "-", during["max_ms"] or "-",
            "no traffic" if shift["requests"] == 0 else "never" if shift["seconds"] is None
            else f"{shift['seconds'] * 1000:.0f} ms ({shift['affected']} affected)",
            served[:40],
            "-" if standby is None or standby["standby_started_after_s"] is None
            else f"{standby['standby_started_after_s'] * 1000:.0f} ms (token {standby['fencing_token']})",
            "-" if report["double_runs"] is None else report["double_runs"],
            "-" if report["writes"] is None else f"{report['writes']['lost']}/{report['writes']['acknowledged']}",
            after or "-", target_share(report), expect]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--at", type=float, default=10)
    parser.add_argument("--heal-after", type=float, default=10)
    parser.add_argument("--chaos-seconds", type=float, default=600.0)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--reports", type=Path, default=None, help="write each drill's JSON report here")
    parser.add_argument("--only", default="", help="comma-separated row names (see above); default: all")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str) -> bool:
        return not only or name in only
    work = Path(tempfile.mkdtemp(prefix="roost-drills-"))
    rows: list[list[object]] = []
    freeze_rows: list[list[object]] = []
    chaos_rows: list[list[object]] = []
    with BenchFleet(["ams", "ewr", "syd"], 2, proxies=True, idle_interval=3600.0) as f:
        api = Api(f.url, f.token)
        f.push("hello:v1", "hello", ["python3", "app.py"])
        machines = web(f)
        ams_host = machines[0]["host_id"]
        if wanted("kill-host"):
            rows.append(row("0 failed", run(f, api, args, "kill-host", "web", ams_host)))
        if wanted("kill-machine"):
            rows.append(row("shift < 1 s", run(f, api, args, "kill-machine", "web", machines[1]["id"])))
        if wanted("kill-region"):
            rows.append(row("shift to ewr, ~90 ms", run(f, api, args, "kill-region", "web", "ams")))
        if wanted("kill-server"):
            rows.append(row("0 failed", run(f, api, args, "kill-server", "web")))
        if wanted("stop-machine"):
            rows.append(row("-", run(f, api, args, "stop-machine", "web", machines[1]["id"])))
        fly = web(f, "webfly", "random") if wanted("slow") or wanted("partition") else []
        if wanted("slow"):
            edge_mode(f, "ams", old=True)
            rows.append(row("before: Fly's rule, 2 s connect",
                            run(f, api, args, "slow-machine", "webfly", fly[1]["id"])))
            edge_mode(f, "ams", old=False)
            rows.append(row("p99 <= 3x before, <= 10%", run(f, api, args, "slow-machine", "web", machines[1]["id"])))
        if wanted("partition") and faults.partition_unavailable() is None:
            edge_mode(f, "ams", old=True)
            rows.append(row("before: Fly's rule, 2 s connect, suspects kept",
                            run(f, api, args, "partition-host", "webfly", fly[0]["host_id"])))
            edge_mode(f, "ams", old=False)
            rows.append(row("0 failed, p99 <= 250 ms", run(f, api, args, "partition-host", "web", ams_host)))
        if wanted("worker"):
            example(f, work, "fenced-worker", "crunch", {'app = "fenced"': 'app = "crunch"',
                                                         "/tmp/roost-fenced/shared.log": str(work / "crunch.log")})
            time.sleep(3)
            rows.append(row("standby runs, 0 double", run(f, api, args, "kill-host", "crunch")))
            rows.append(row("no takeover, 0 double", run(f, api, args, "kill-host", "crunch")))
        if wanted("stack"):
            example(f, work, "stack", "stack", {})
            time.sleep(3)
            stack = run(f, api, args, "kill-region", "stack", "ams", rps=20.0)
            rows.append(row("worker back < 5 s", stack, back_after_heal(f, "stack", stack)))
        if wanted("freeze"):
            example(f, work, "fenced-worker", "icy", {'app = "fenced"': 'app = "icy"',
                                                      "/tmp/roost-fenced/shared.log": str(work / "icy.log")})
            time.sleep(3)
            freeze_rows.append(freeze_trials(f, api, args, "icy", 10, keeper=False))
            freeze_rows.append(freeze_trials(f, api, args, "icy", 30, keeper=True))
        if wanted("chaos"):
            example(f, work, "stack", "every", {'app = "stack"': 'app = "every"'}, "--standby-region", "ewr")
            roost(f, "scale", "count", "3", "--region", "ams,ewr", "-g", "web", "-a", "every", "--yes")
            time.sleep(3)
            for seed in [int(s) for s in args.seeds.split(",") if s]:
                chaos_rows.append(chaos_row(f, api, args, "every", seed))
        if wanted("island") and faults.partition_unavailable() is None:
            example(f, work, "fenced-worker", "island", {'app = "fenced"': 'app = "island"',
                                                         "/tmp/roost-fenced/shared.log": str(work / "island.log")})
            time.sleep(3)
            rows.append(row("fenced first, 0 double", run(f, api, args, "partition-host", "island")))
        if not wanted("ledger"):
            print_rows(args, rows, freeze_rows, chaos_rows)
            return
        edge = next(p for p in f.info["proxies"] if p["region"] == "ams")["url"]
        example(f, work, "primary-db", "ledger", {'app = "notes"': 'app = "ledger"', 'source = "notes"':
                                                  'source = "ledger"', "http://127.0.0.1:4400": edge})
        roost(f, "scale", "count", "2", "--region", "ams,ewr", "-a", "ledger", "--yes")
        known_everywhere(f, "ledger", 2)
        rows.append(row("0 writes lost", run(f, api, args, "kill-host", "ledger", method="POST", path="/items",
                                             check_writes="/items")))
    shutil.rmtree(work, ignore_errors=True)
    print_rows(args, rows, freeze_rows, chaos_rows)


def print_rows(args: argparse.Namespace, rows: list[list[object]], freeze_rows: list[list[object]],
               chaos_rows: list[list[object]]) -> None:
    if chaos_rows:
        print(table(f"Chaos on the stack example, {args.chaos_seconds:g} s per seed, 20 req/s",
                    ["seed", "faults injected", "by kind", "requests", "excused (died with an edge)", "double runs",
                     "not recovered", "failed requests", "slowest settle", "result"], chaos_rows))
    if freeze_rows:
        print(table("A frozen agent (SIGSTOP 3 s) under a fenced worker with a standby, repeated",
                    ["fault", "target", "agents", "standby took over", "median takeover", "double runs", "target"],
                    freeze_rows))
    if not rows:
        return
    print(table(f"Drills at {args.rps:g} req/s for {args.duration:g}s: fault at {args.at:g}s, healed "
                f"{args.heal_after:g}s later (latencies in ms)",
                ["fault", "target", "sent", "failed", "p50 before", "p50 during", "p99 before", "p99 during",
                 "max during", "time to shift", "served during", "standby ran after", "double runs", "writes lost",
                 "after the heal", "target's share after 1 s", "target"], rows))


if __name__ == "__main__":
    main()
