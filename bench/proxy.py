"""Proxy benchmarks (issue 4): Roost's edge vs nginx vs HAProxy, side by side, same upstream; autostart.

    .venv/bin/python bench/proxy.py [--duration 10] [--connections 50] [--trials 20] [--rate 2000] [--rounds 3]

Needs nginx, haproxy and wrk (as root it installs them with apt-get when missing). One run:
1. a fleet (server, one agent, the ams edge) and an upstream machine: nginx with one worker answering a
   short static body (`examples/nginx-static`), so that the upstream is not the bottleneck;
2. wrk -t1 -cN against: the upstream directly (baseline), Roost's edge with 1, 2 and 4 worker processes
   (SO_REUSEPORT; full routing and balancing), nginx (1 worker, keepalive upstream pool) and HAProxy
   (1 thread, http-reuse always) and a bare keep-alive relay on uvloop + httptools (bench/relay.py: the
   floor of this stack), all to that same upstream: saturated throughput and its latency;
3. the same targets at a fixed, unsaturated rate (open loop, --rate requests/s over keep-alive
   connections, latency from each request's scheduled time): what a proxy adds to a request when it is
   not queueing behind others;
4. autostart: the example Python app, stopped then requested through the edge (vs the app's own boot
   measured by starting it through its agent and probing its port), and suspended vs running.
Targets: Roost >= 0.8x nginx's throughput, added p99 <= 1 ms; stopped -> answered <= app boot + 15 ms;
suspended <= running + 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import BenchFleet, free_port, table
from common import start_nginx as common_nginx

from roost.dev.fleet import admin_get
from roost.drill.analysis import percentile
from roost.drill.load import LoadGenerator, LoadSpec

ROOT = Path(__file__).resolve().parents[1]


def ensure_tools() -> None:
    missing = [t for t in ("nginx", "haproxy", "wrk") if shutil.which(t) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, capture_output=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        for service in ("nginx", "haproxy"):  # Debian starts them on install; we run our own
            subprocess.run(["service", service, "stop"], capture_output=True)
    missing = [t for t in ("nginx", "haproxy", "wrk") if shutil.which(t) is None]
    if missing:
        sys.exit(f"bench/proxy.py needs {', '.join(missing)} (apt-get install nginx haproxy wrk)")


def parse_wrk(output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        latency[pct] = float(value) * scale
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {"rps": rps, "p50": latency.get("50", float("nan")), "p99": latency.get("99", float("nan")),
            "errors": float(errors.group(1)) if errors else 0.0 + (sum(map(int, sock.groups())) if sock else 0)}


def wrk(url: str, host: str | None, duration: int, connections: int) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30).stdout
    return parse_wrk(out)


def start_nginx(tmp: Path, port: int, upstream: str) -> subprocess.Popen[bytes]:
    return common_nginx(tmp, "nginx-proxy", f"""
    upstream app {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
                     proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }}
    }}""", error_log="warn")


def start_haproxy(tmp: Path, port: int, upstream: str) -> subprocess.Popen[bytes]:
    conf = tmp / "haproxy.cfg"
    conf.write_text(f"""
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
    option forwardfor
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server app {upstream}
""")
    return subprocess.Popen(["haproxy", "-f", str(conf), "-db"], stdout=subprocess.DEVNULL)


def start_roost_proxy(f: BenchFleet, port: int, workers: int, tmp: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "roost", "proxy", "--server", f.url,
                             "--region", "ams", "--listen", f"127.0.0.1:{port}", "--workers", str(workers),
                             "--tcp-prefix", "127.250", "--data-dir", str(tmp / f"edge-{workers}"),
                             "--id", f"bench-{workers}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "ROOST_API_TOKEN": f.token})  # not on the command line


def wait_ok(url: str, host: str | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers={"Host": host} if host else {}, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def throughput(f: BenchFleet, args: argparse.Namespace, tmp: Path) -> list[list[object]]:
    f.push("static:v1", "nginx-static", ["./start.sh"])
    f.api.post("/v1/apps", json={"app_name": "bench", "primary_region": "ams"}).raise_for_status()
    config = {"image": "static:v1", "services": [{"protocol": "tcp", "internal_port": 8080,
                                                  "ports": [{"port": 80, "handlers": ["http"]}]}]}
    m = f.api.post("/v1/apps/bench/machines", json={"config": config}).json()
    f.api.get(f"/v1/apps/bench/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    upstream = f"{m['private_ip']}:{m['roost']['ports']['8080']}"
    wait_ok(f"http://{upstream}/")
    edge = f.info["proxies"][0]["url"]
    wait_ok(f"{edge}/", "bench.localhost")
    procs = []
    ports = {name: free_port() for name in ("nginx", "haproxy", "roost2", "roost4", "relay")}
    procs.append(start_nginx(tmp, ports["nginx"], upstream))
    procs.append(start_haproxy(tmp, ports["haproxy"], upstream))
    procs.append(start_roost_proxy(f, ports["roost2"], 2, tmp))
    procs.append(start_roost_proxy(f, ports["roost4"], 4, tmp))
    procs.append(subprocess.Popen([sys.executable, str(ROOT / "bench" / "relay.py"), str(ports["relay"]), upstream],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        wait_ok(f"http://127.0.0.1:{ports['nginx']}/")
        wait_ok(f"http://127.0.0.1:{ports['haproxy']}/")
        wait_ok(f"http://127.0.0.1:{ports['roost2']}/", "bench.localhost")
        wait_ok(f"http://127.0.0.1:{ports['roost4']}/", "bench.localhost")
        wait_ok(f"http://127.0.0.1:{ports['relay']}/")
        runs = [("upstream direct (baseline)", f"http://{upstream}/", None),
                ("Roost edge, 1 worker", f"{edge}/", "bench.localhost"),
                ("Roost edge, 2 workers", f"http://127.0.0.1:{ports['roost2']}/", "bench.localhost"),
                ("Roost edge, 4 workers", f"http://127.0.0.1:{ports['roost4']}/", "bench.localhost"),
                ("nginx 1.22, 1 worker", f"http://127.0.0.1:{ports['nginx']}/", None),
                ("HAProxy 2.6, 1 thread", f"http://127.0.0.1:{ports['haproxy']}/", None),
                ("bare relay (uvloop + httptools)", f"http://127.0.0.1:{ports['relay']}/", None)]
        for _, url, host in runs:
            wrk(url, host, 2, args.connections)  # warm up
        # Rounds interleaved (every target once per round), so that a slow moment of the machine is shared.
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in runs}
        fixed_rounds: dict[str, list[tuple[float, float, int]]] = {name: [] for name, _, _ in runs}
        for _ in range(args.rounds):
            for name, url, host in runs:
                rounds[name].append(wrk(url, host, args.duration, args.connections))
            for name, url, host in runs:
                fixed_rounds[name].append(at_fixed_rate(url, host, args.rate, args.rate_seconds))
        results = {name: max(rs, key=lambda r: r["rps"]) for name, rs in rounds.items()}
        fixed = {name: min(fs, key=lambda f: f[1]) for name, fs in fixed_rounds.items()}
    finally:
        for proc in procs:
            stop(proc)
    base = results["upstream direct (baseline)"]
    nginx = results["nginx 1.22, 1 worker"]
    relay = results["bare relay (uvloop + httptools)"]
    rows = []
    for name, r in results.items():
        rows.append([name, " / ".join(f"{x['rps']:.0f}" for x in rounds[name]),
                     f"{r['rps']:.0f}", f"{r['rps'] / nginx['rps']:.2f}x", f"{r['rps'] / relay['rps']:.2f}x",
                     f"{r['p50']:.2f}",
                     f"{r['p99']:.2f}", "" if name.startswith("upstream") else f"{r['p50'] - base['p50']:+.2f}",
                     "" if name.startswith("upstream") else f"{r['p99'] - base['p99']:+.2f}", int(r["errors"])])
    base_fixed = fixed["upstream direct (baseline)"]
    fixed_rows = []
    for name, (p50, p99, errors) in fixed.items():
        added = not name.startswith("upstream")
        fixed_rows.append([name, " / ".join(f"{x[1]:.2f}" for x in fixed_rounds[name]), f"{p50:.2f}", f"{p99:.2f}",
                           f"{p50 - base_fixed[0]:+.2f}" if added else "",
                           f"{p99 - base_fixed[1]:+.2f}" if added else "", errors])
    f.api.delete(f"/v1/apps/bench/machines/{m['id']}", params={"force": "true"})
    return rows, fixed_rows


def at_fixed_rate(url: str, host: str | None, rate: int, seconds: float) -> tuple[float, float, int]:
    """Open-loop load at `rate` requests/s for `seconds` (after a 1 s warm-up): p50 and p99 ms, failures."""
    hostport = url.split("//", 1)[1].split("/", 1)[0]
    address = (hostport.rsplit(":", 1)[0], int(hostport.rsplit(":", 1)[1]))

    async def run(duration: float) -> list[float]:
        spec = LoadSpec(address=address, host=host or "bench.localhost", rps=rate, duration=duration, timeout=5.0)
        gen = LoadGenerator(spec)
        samples = await gen.run(gen.clock() + 0.05)
        failures.append(sum(1 for x in samples if not x.ok))
        return [(x.done - x.sent) * 1000 for x in samples if x.ok]

    failures: list[int] = []
    asyncio.run(run(1.0))
    latencies = asyncio.run(run(seconds))
    return percentile(latencies, 50) or 0.0, percentile(latencies, 99) or 0.0, failures[-1]


def autostart(f: BenchFleet, trials: int) -> list[list[object]]:
    f.push("hello:v1", "hello", ["python3", "app.py"])
    f.api.post("/v1/apps", json={"app_name": "wake", "primary_region": "ams"}).raise_for_status()
    config = {"image": "hello:v1", "restart": {"policy": "no"},
              "services": [{"protocol": "tcp", "internal_port": 8080, "autostart": True,
                            "ports": [{"port": 80, "handlers": ["http"]}]}]}
    m = f.api.post("/v1/apps/wake/machines", json={"config": config}).json()
    mid = m["id"]
    f.api.get(f"/v1/apps/wake/machines/{mid}/wait", params={"state": "started", "timeout": 30})
    addr = f"http://{m['private_ip']}:{m['roost']['ports']['8080']}/"
    agent = f.info["hosts"][0]["agent_url"]
    edge = f.info["proxies"][0]["url"]
    admin = f.info["proxies"][0]
    client = httpx.Client(trust_env=False, timeout=30, verify=f.verify)
    wait_ok(addr)

    def stopped() -> None:
        f.api.post(f"/v1/apps/wake/machines/{mid}/stop", json={"timeout": "2s"})
        f.api.get(f"/v1/apps/wake/machines/{mid}/wait", params={"state": "stopped", "timeout": 30})
        time.sleep(0.3)  # the edge hears of it through the watch feed

    boots, cold, waits, running, warm = [], [], [], [], []
    for _ in range(trials):
        stopped()
        instance = f.api.get(f"/v1/apps/wake/machines/{mid}").json()["instance_id"]
        t0 = time.perf_counter()
        client.post(f"{agent}/v1/machines/{mid}/start", headers=f.headers, json={"id": mid, "instance_id": instance})
        while True:  # the app's own boot: spawned until its port answers
            try:
                client.get(addr)
                break
            except httpx.HTTPError:
                time.sleep(0.001)
        boots.append(time.perf_counter() - t0)
        time.sleep(0.3)
        stopped()
        waited = autostart_seconds(client, admin)
        t0 = time.perf_counter()
        r = client.get(edge, headers={"Host": "wake.localhost"})
        cold.append(time.perf_counter() - t0)
        assert r.status_code == 200, r.text
        # what the edge itself waited for: its agent call and the app's boot until the port accepted
        waits.append(autostart_seconds(client, admin) - waited)
        time.sleep(0.3)
        for _ in range(3):
            t0 = time.perf_counter()
            client.get(edge, headers={"Host": "wake.localhost"})
            running.append(time.perf_counter() - t0)
        f.api.post(f"/v1/apps/wake/machines/{mid}/suspend")
        f.api.get(f"/v1/apps/wake/machines/{mid}/wait", params={"state": "suspended", "timeout": 30})
        time.sleep(0.3)
        t0 = time.perf_counter()
        r = client.get(edge, headers={"Host": "wake.localhost"})
        warm.append(time.perf_counter() - t0)
        assert r.status_code == 200
    client.close()
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    return [["app boot (agent start -> port answers), stopped machine", len(boots), f"{ms(boots):.1f}", ""],
            ["request to a stopped machine through the edge", len(cold), f"{ms(cold):.1f}",
             f"{ms(cold) - ms(boots):+.1f} ms over boot (target <= +15)"],
            ["  of which the edge waited for the start and boot", len(waits), f"{ms(waits):.1f}", ""],
            ["  edge's own cost per cold request (request - that wait)", len(cold),
             f"{statistics.median(c - w for c, w in zip(cold, waits, strict=True)) * 1000:.1f}", ""],
            ["request to a running machine through the edge", len(running), f"{ms(running):.2f}", ""],
            ["request to a suspended machine through the edge", len(warm), f"{ms(warm):.2f}",
             f"{ms(warm) - ms(running):+.2f} ms over running (target <= +5)"]]


def autostart_seconds(client: httpx.Client, admin: dict[str, Any]) -> float:
    """The edge's total time spent starting machines (its roost_proxy_autostart_seconds sum)."""
    text = admin_get(admin, "/metrics").text
    match = re.search(r'^roost_proxy_autostart_seconds_sum\{app="wake"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rate", type=int, default=2000, help="requests/s for the fixed-rate latency table")
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best of each is compared")
    args = parser.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="roost-bench-proxy-") as tmp_name, \
            BenchFleet(["ams"], 1, proxies=True, host_cpus=8, host_memory_mb=16384, idle_interval=3600.0) as f:
        tmp = Path(tmp_name)
        rows, fixed_rows = throughput(f, args, tmp)
        auto = autostart(f, args.trials)
    print(table(f"Proxies side by side: wrk -t1 -c{args.connections} -d{args.duration}s, same upstream "
                f"(nginx static, 1 worker), loopback, 2 cores; {args.rounds} rounds interleaved, the best compared",
                ["proxy", "requests/s each round", "best", "vs nginx", "vs relay", "p50 ms", "p99 ms", "added p50",
                 "added p99", "errors"], rows))
    print()
    print(table(f"Latency at a fixed rate: {args.rate} requests/s for {args.rate_seconds:g}s, open loop, keep-alive "
                f"(Python client, the same for every target); {args.rounds} rounds interleaved, the best p99 compared",
                ["proxy", "p99 ms each round", "p50 ms", "p99 ms", "added p50", "added p99", "failed"], fixed_rows))
    print()
    print(table("Autostart (example Python app)", ["measure", "n", "median ms", "vs target"], auto))


if __name__ == "__main__":
    main()
