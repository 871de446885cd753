"""The edge under hostile clients (issue 14): legitimate traffic at a fixed rate through one edge while
attackers, in processes of their own, try to stall it or grow it:

  slowloris  N connections trickling a header line each second, never finishing their heads;
  headers    two clients streaming endless header bytes (reconnecting whenever cut off);
  bodies     M clients uploading 100 MB bodies (half announced with Content-Length, half chunked) to an
             app whose limit is 1 MB (reconnecting whenever cut off).

    .venv/bin/python bench/edge_hostile.py [--rate 1000] [--seconds 12] [--slowloris 500] [--uploaders 50]

Rows, for Roost's edge and then for nginx in front of the same machines with the same limits (the peer):
the legitimate requests' p50/p99 without an attack and under each (then all at once), failures, the
proxy's peak RSS, and for the attackers: connections, how many the proxy closed, the longest any stayed
open, and the most bytes one connection got in; and where the CPU went during the phase (the proxy's, and
the attacker processes' own). The upstream is nginx (examples/nginx-static) so that it is not the
bottleneck. Everything on loopback; every attacker stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import BenchFleet, cpu_seconds, free_port, table
from common import start_nginx as common_nginx
from proxy import ensure_tools

from roost.drill.analysis import percentile
from roost.drill.load import LoadGenerator, LoadSpec

HEADER_TIMEOUT = 5.0
LIMIT = "1MB"


# ---- attackers (run as `edge_hostile.py --attack KIND PORT SECONDS N`, print one JSON line) ----

def attack(kind: str, port: int, seconds: float, n: int) -> dict[str, float]:
    stats = {"connections": 0, "closed_by_edge": 0, "longest_open_s": 0.0, "most_bytes_in": 0}
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def record(opened: float, sent: int, closed: bool) -> None:
        with lock:
            stats["connections"] += 1
            stats["closed_by_edge"] += int(closed)
            stats["longest_open_s"] = max(stats["longest_open_s"], round(time.monotonic() - opened, 2))
            stats["most_bytes_in"] = max(stats["most_bytes_in"], sent)

    def one_slowloris(i: int) -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened, sent, closed = time.monotonic(), 0, False
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench.localhost\r\n")
            while time.monotonic() < end and not closed:
                time.sleep(1.0)
                try:
                    s.sendall(b"X-Slow-%d: 1\r\n" % i)
                    sent += 14
                    s.setblocking(False)
                    try:
                        closed = s.recv(4096) == b""
                    except BlockingIOError:
                        pass
                    s.setblocking(True)
                except OSError:
                    closed = True
        finally:
            s.close()
            record(opened, sent, closed)

    def streamer(head: bytes, piece: bytes) -> None:
        while time.monotonic() < end:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            opened, sent, closed = time.monotonic(), 0, False
            try:
                s.sendall(head)
                while time.monotonic() < end and sent < 100 << 20:
                    s.sendall(piece)
                    sent += len(piece)
            except OSError:
                closed = True
            finally:
                s.close()
                record(opened, sent, closed)

    if kind == "slowloris":
        workers = [threading.Thread(target=one_slowloris, args=(i,)) for i in range(n)]
    elif kind == "headers":
        workers = [threading.Thread(target=streamer, args=(
            b"GET / HTTP/1.1\r\nHost: bench.localhost\r\nX-Endless: ", b"a" * 16384)) for _ in range(n)]
    else:
        announced = b"POST /up HTTP/1.1\r\nHost: capped.localhost\r\nContent-Length: 104857600\r\n\r\n"
        chunked = b"POST /up HTTP/1.1\r\nHost: capped.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        workers = [threading.Thread(target=streamer, args=(
            (announced, b"z" * 65536) if i % 2 else (chunked, b"10000\r\n" + b"z" * 65536 + b"\r\n")))
            for i in range(n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 30)
    return stats


# ---- the run ----

def legit(port: int, rate: int, seconds: float) -> tuple[float, float, int]:
    async def run() -> list[tuple[bool, float]]:
        gen = LoadGenerator(LoadSpec(address=("127.0.0.1", port), host="bench.localhost", rps=rate,
                                     duration=seconds, timeout=5.0))
        return [(x.ok, (x.done - x.sent) * 1000) for x in await gen.run(gen.clock() + 0.05)]
    samples = asyncio.run(run())
    ok = [ms for good, ms in samples if good]
    return percentile(ok, 50) or 0.0, percentile(ok, 99) or 0.0, sum(1 for good, _ in samples if not good)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def family(pid: int) -> list[int]:
    """A process and its children (nginx's master and workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def phase(proxy: str, proxy_pid: int, port: int, args: argparse.Namespace,
          attacks: list[tuple[str, int]]) -> list[object]:
    pids = family(proxy_pid)
    peak = [sum(rss_mb(pid) for pid in pids)]
    cpu_before, attackers_before = cpu_seconds(pids), children_cpu()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            peak[0] = max(peak[0], sum(rss_mb(pid) for pid in pids))

    sampler = threading.Thread(target=sample)
    sampler.start()
    procs = [subprocess.Popen([sys.executable, __file__, "--attack", kind, str(port), str(args.seconds), str(n)],
                              stdout=subprocess.PIPE, text=True) for kind, n in attacks]
    time.sleep(1.0 if attacks else 0.0)  # the attack is under way before the measured traffic starts
    p50, p99, failed = legit(port, args.rate, args.seconds - 2)
    results = [json.loads(p.communicate(timeout=args.seconds + 60)[0].strip().splitlines()[-1]) for p in procs]
    stop.set()
    sampler.join()
    proxy_cpu, attackers_cpu = cpu_seconds(pids) - cpu_before, children_cpu() - attackers_before
    name = " + ".join(f"{kind} ({n})" for kind, n in attacks) or "no attack"
    conns = sum(r["connections"] for r in results)
    closed = sum(r["closed_by_edge"] for r in results)
    return [proxy, name, f"{p50:.2f}", f"{p99:.2f}", failed, f"{peak[0]:.0f}", conns or "", closed if attacks else "",
            max((r["longest_open_s"] for r in results), default="") if attacks else "",
            max((r["most_bytes_in"] for r in results), default="") if attacks else "",
            f"{proxy_cpu:.1f}", f"{attackers_cpu:.1f}" if attacks else ""]


def start_nginx(tmp: str, port: int, bench: str, capped: str) -> subprocess.Popen[bytes]:
    """nginx in front of the same two machines, with the edge's limits: header timeout, body limit, a
    64 KiB head."""
    return common_nginx(Path(tmp), "nginx-hostile", f"""
    client_header_timeout {HEADER_TIMEOUT:g}s; large_client_header_buffers 4 16k;
    client_max_body_size 1m;
    upstream bench {{ server {bench}; keepalive 64; }}
    upstream capped {{ server {capped}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        server_name bench.localhost;
        location / {{ proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name capped.localhost;
        location / {{ proxy_pass http://capped; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}""", quiet=True)


def serving(port: int) -> None:
    deadline = time.monotonic() + 30
    while legit(port, 20, 0.5)[2]:
        if time.monotonic() > deadline:
            raise SystemExit("the proxy does not serve the bench app: nothing to measure")
        time.sleep(0.5)




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--slowloris", type=int, default=500)
    parser.add_argument("--uploaders", type=int, default=50)
    parser.add_argument("--attack", nargs=4, metavar=("KIND", "PORT", "SECONDS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attack:
        kind, port, seconds, n = args.attack
        print(json.dumps(attack(kind, int(port), float(seconds), int(n))))
        return
    ensure_tools()  # nginx for the upstream
    with tempfile.TemporaryDirectory(prefix="roost-bench-hostile-") as tmp, \
            BenchFleet(["ams"], 1, proxies=False, host_cpus=8, host_memory_mb=16384) as f:
        f.push("static:v1", "nginx-static", ["./start.sh"])
        upstreams: dict[str, str] = {}
        for app, options in (("bench", {}), ("capped", {"http_options": {"max_request_body_size": LIMIT}})):
            f.api.post("/v1/apps", json={"app_name": app, "primary_region": "ams"}).raise_for_status()
            config = {"image": "static:v1", "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [
                {"port": 80, "handlers": ["http"], **options}]}]}
            m = f.api.post(f"/v1/apps/{app}/machines", json={"config": config}).json()
            f.api.get(f"/v1/apps/{app}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
            upstreams[app] = f"{m['private_ip']}:{m['roost']['ports']['8080']}"
        def start_edge(port: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-m", "roost", "proxy", "--server", f.url,
                                     "--region", "ams", "--listen", f"127.0.0.1:{port}", "--tcp-prefix", "127.249",
                                     "--header-timeout", str(HEADER_TIMEOUT), "--data-dir", os.path.join(tmp, "edge"),
                                     "--id", "hostile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    env={**os.environ, "ROOST_API_TOKEN": f.token})

        phases: list[list[tuple[str, int]]] = [
            [], [("slowloris", args.slowloris)], [("headers", 2)], [("bodies", args.uploaders)],
            [("slowloris", args.slowloris), ("headers", 2), ("bodies", args.uploaders)], []]
        proxies: list[tuple[str, Callable[[int], subprocess.Popen[bytes]]]] = [
            ("Roost edge", start_edge),
            ("nginx 1.22", lambda port: start_nginx(tmp, port, upstreams["bench"], upstreams["capped"]))]
        rows = []
        for name, start in proxies:  # one after the other, each alone on the machine
            port = free_port()
            proc = start(port)
            try:
                serving(port)
                rows += [phase(name, proc.pid, port, args, attacks) for attacks in phases]
            finally:
                proc.terminate()
                proc.wait(10)
    print(table(f"Proxies under hostile clients: legitimate GETs at {args.rate}/s for {args.seconds - 2:g}s during "
                f"each attack (header timeout {HEADER_TIMEOUT:g}s, body limit {LIMIT}), one worker each, loopback, "
                "2 cores",
                ["proxy", "attack", "legit p50 ms", "legit p99 ms", "legit failed", "peak RSS MB", "attack conns",
                 "closed by proxy", "longest open s", "most bytes in one conn", "proxy CPU s", "attackers CPU s"],
                rows))


if __name__ == "__main__":
    main()
