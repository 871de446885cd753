"""TLS cost at the edge (issue 15): Roost's edge and nginx, each with and without terminating TLS, side by side
in one run, to the same upstream.

    .venv/bin/python bench/tls.py [--duration 8] [--connections 50] [--rounds 3]

One fleet (server, one agent; TLS between them under the fleet CA) and an upstream machine (nginx answering
a short static body). Then, all to that upstream: Roost's edge (one worker) on plain HTTP and on its TLS port
(ECDSA P-256 certificate, TLS 1.3), and nginx (one worker, keep-alive upstream pool) on plain HTTP and TLS
with the same certificate. wrk -t1 -cN over keep-alive connections (a handshake per connection, then
requests): throughput and p50/p99, rounds interleaved, best round shown with every round's figure. What TLS
costs each proxy is its TLS row against its own plain row.
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import BenchFleet, free_port, table
from common import start_nginx as common_nginx
from proxy import ensure_tools, stop, wait_ok, wrk

from roost import pki


def start_edge(f: BenchFleet, port: int, tls_port: int, cert: Path, key: Path, tmp: Path
               ) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "roost", "proxy", "--server", f.url, "--region", "ams",
                             "--listen", f"127.0.0.1:{port}", "--tls-port", str(tls_port), "--tls-cert", str(cert),
                             "--tls-key", str(key), "--tcp-prefix", "127.247", "--data-dir", str(tmp / "edge"),
                             "--id", "bench-tls"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "ROOST_API_TOKEN": f.token})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_tools()
    with tempfile.TemporaryDirectory(prefix="roost-tls-bench-") as tmp_name, \
            BenchFleet(["ams"], 1, proxies=False, host_cpus=8, host_memory_mb=16384) as f:
        tmp = Path(tmp_name)
        ca = pki.new_ca("Bench CA")
        leaf = pki.issue(ca, ["127.0.0.1", "bench.localhost"])
        trust = ssl.create_default_context(cadata=ca.cert.decode())
        cert, key = tmp / "edge.pem", tmp / "edge.key"
        cert.write_bytes(leaf.cert)
        key.write_bytes(leaf.key)
        key.chmod(0o600)
        f.push("static:v1", "nginx-static", ["./start.sh"])
        f.api.post("/v1/apps", json={"app_name": "bench", "primary_region": "ams"}).raise_for_status()
        config = {"image": "static:v1", "services": [{"protocol": "tcp", "internal_port": 8080, "ports": [
            {"port": 80, "handlers": ["http"]}, {"port": 443, "handlers": ["tls", "http"]}]}]}
        m = f.api.post("/v1/apps/bench/machines", json={"config": config}).json()
        f.api.get(f"/v1/apps/bench/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
        upstream = f"{m['private_ip']}:{m['roost']['ports']['8080']}"
        wait_ok(f"http://{upstream}/")
        ports = {name: free_port() for name in ("edge", "edge_tls", "nginx", "nginx_tls")}
        procs = [start_edge(f, ports["edge"], ports["edge_tls"], cert, key, tmp),
                 common_nginx(tmp, "nginx-tls", f"""
    upstream app {{ server {upstream}; keepalive 64; }}
    ssl_certificate {cert}; ssl_certificate_key {key}; ssl_protocols TLSv1.2 TLSv1.3;
    server {{
        listen 127.0.0.1:{ports['nginx']};
        listen 127.0.0.1:{ports['nginx_tls']} ssl;
        location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
                     proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr;
                     proxy_set_header X-Forwarded-Proto $scheme; }}
    }}""", error_log="warn")]
        try:
            runs = [("Roost edge, HTTP", f"http://127.0.0.1:{ports['edge']}/", "bench.localhost"),
                    ("Roost edge, TLS", f"https://127.0.0.1:{ports['edge_tls']}/", "bench.localhost"),
                    ("nginx 1 worker, HTTP", f"http://127.0.0.1:{ports['nginx']}/", None),
                    ("nginx 1 worker, TLS", f"https://127.0.0.1:{ports['nginx_tls']}/", None)]
            for _, url, host in runs:
                if url.startswith("https"):
                    with httpx.Client(verify=trust, trust_env=False, timeout=2) as c:
                        for _ in range(600):
                            try:
                                if c.get(url, headers={"Host": host} if host else {}).status_code == 200:
                                    break
                            except httpx.HTTPError:
                                pass
                            time.sleep(0.05)
                else:
                    wait_ok(url, host)
                wrk(url, host, 2, args.connections)  # warm up
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in runs}
            for _ in range(args.rounds):
                for name, url, host in runs:
                    rounds[name].append(wrk(url, host, args.duration, args.connections))
        finally:
            for proc in procs:
                stop(proc)
        best = {name: max(rs, key=lambda r: r["rps"]) for name, rs in rounds.items()}
        rows = []
        for name, r in best.items():
            plain = best[name.replace("TLS", "HTTP")]
            rows.append([name, " / ".join(f"{x['rps']:.0f}" for x in rounds[name]), f"{r['rps']:.0f}",
                         f"{r['rps'] / plain['rps']:.2f}x", f"{r['p50']:.2f}", f"{r['p99']:.2f}",
                         f"{r['p99'] - plain['p99']:+.2f}" if "TLS" in name else "", int(r["errors"])])
        print(table(f"Edge with and without TLS vs nginx (wrk -t1 -c{args.connections}, {args.duration}s, "
                    f"keep-alive; best of {args.rounds} rounds)",
                    ["proxy", "req/s per round", "req/s", "vs own HTTP", "p50 ms", "p99 ms", "p99 added by TLS",
                     "errors"], rows))
        roost_ratio = best["Roost edge, TLS"]["rps"] / best["nginx 1 worker, TLS"]["rps"]
        print(f"\nRoost's TLS throughput is {roost_ratio:.2f}x nginx's TLS throughput in this run.")


if __name__ == "__main__":
    main()
