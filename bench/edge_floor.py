"""Where an edge request's time goes (issue 14): a ladder from the bare relay to Roost's edge, one worker each,
same upstream, in one run with the rounds interleaved.

    .venv/bin/python bench/edge_floor.py [--duration 5] [--rounds 3] [--connections 50]

Rungs: the bare relay (bench/relay.py: httptools finds where each request ends, bytes pass unchanged);
`parse` (both heads also read by the edge's parser, header by header); `heads` (what the edge writes: Fly's
headers spliced into each request, Fly-Request-Id and Via into each answer); and Roost's edge itself on a
routing table filled by hand (no control plane), doing everything: routing, loads, limits, timers, metrics,
pooled upstream connections. wrk -t1 GETs a 17-byte body from nginx (1 worker). Each row gives requests/s
per round, the best, its ratio to the relay, and the proxy's own CPU time per request (from /proc during
the run), the figure that says what each rung costs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import cpu_seconds, free_port, start_nginx, table
from proxy import ensure_tools, parse_wrk

ROOT = Path(__file__).resolve().parents[1]


def serve_edge(port: int, upstream: int) -> None:
    """Roost's edge alone, on a routing table filled by hand (one app, one machine: the upstream)."""
    import uvloop

    from roost.proxy.main import Edge, ProxyConfig

    async def main() -> None:
        edge = Edge(ProxyConfig(server_url="http://127.0.0.1:1", token="bench", region="ams"))
        edge.table.reset([
            {"kind": "host", "key": "h1", "object": {"id": "h1", "region": "ams", "status": "ok"}},
            {"kind": "app", "key": "web", "object": {"name": "web", "primary_region": "ams"}},
            {"kind": "machine", "key": "m1", "object": {
                "id": "m1", "app": "web", "region": "ams", "state": "started", "private_ip": "127.0.0.1",
                "roost": {"host_id": "h1", "ports": {"8080": upstream}},
                "config": {"services": [{"protocol": "tcp", "internal_port": 8080,
                                         "ports": [{"port": 80, "handlers": ["http"]}]}]}}}], 1)
        server = await asyncio.get_running_loop().create_server(edge.http.protocol, "127.0.0.1", port, backlog=2048)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--serve-edge", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_edge:
        serve_edge(*args.serve_edge)
        return
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="roost-bench-floor-") as tmp:
        up = free_port()
        procs = {"nginx": start_nginx(Path(tmp), "nginx", f"""
    server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello from nginx\\n"; }} }}""")}
        targets: dict[str, int] = {}
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for mode in ("bare", "parse", "heads"):
            port = targets[f"relay, {mode}"] = free_port()
            procs[mode] = subprocess.Popen([sys.executable, str(ROOT / "bench" / "relay.py"), str(port),
                                            f"127.0.0.1:{up}", mode], env=env)
        port = targets["Roost edge"] = free_port()
        procs["edge"] = subprocess.Popen([sys.executable, __file__, "--serve-edge", str(port), str(up)], env=env)
        pids = {"relay, bare": procs["bare"].pid, "relay, parse": procs["parse"].pid,
                "relay, heads": procs["heads"].pid, "Roost edge": procs["edge"].pid}
        try:
            for port in [up, *targets.values()]:
                wait_port(port)
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, port in targets.items():
                    before = cpu_seconds([pids[name]])
                    out = subprocess.run(["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "-H",
                                          "Host: web.localhost", f"http://127.0.0.1:{port}/"],
                                         capture_output=True, text=True, timeout=args.duration + 30).stdout
                    rps = parse_wrk(out)["rps"]
                    used = cpu_seconds([pids[name]]) - before
                    runs[name].append((rps, used / max(1.0, rps * args.duration) * 1e6))
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(10)
    floor = max(r for r, _ in runs["relay, bare"])
    rows = []
    for name, results in runs.items():
        best = max(results)
        rows.append([name, *[f"{r:.0f}" for r, _ in results], f"{best[0]:.0f}", f"{best[0] / floor:.2f}x",
                     f"{min(us for _, us in results):.0f}"])
    print(table(f"From the relay to the edge: wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds "
                "interleaved, one worker each, same nginx upstream, loopback, 2 cores",
                ["proxy", *[f"round {i + 1} req/s" for i in range(args.rounds)], "best", "vs relay",
                 "proxy CPU µs per request"], rows))


if __name__ == "__main__":
    main()
