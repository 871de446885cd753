"""The private network and `.internal` names on a fleet of network hosts with real link latency (issue 19).

    .venv/bin/python bench/private_network.py [--queries 300] [--stops 10] [--fetches 100] [--paths both]

Root, runc and the OCI tools: a netns fleet (ewr and syd, two hosts each, container driver), machines of one app
in both regions, everything measured from inside a machine's own network namespace:
- DNS: answer time of the host's resolver for `<app>.internal` (p50/p99 over N questions);
- staleness: a started machine is stopped; time from the stop being accepted to its address leaving
  `<region>.<app>.internal` (goal <= 2 s);
- machine to machine over the private network: one HTTP GET on a new connection (connect + request + answer) to
  a machine on the same host, on another host in the same region, and on a host in the other region, beside the
  catalogue's round-trip time between the regions; between hosts over the WireGuard mesh and over plain routes,
  side by side (two fleets, one after the other).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BenchFleet, free_port, pct, table

from roost.agent.netns import HostNetwork
from roost.client import oci_build
from roost.core.regions import estimated_rtt_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.images import build_oci_image, busybox_rootfs, push

PROBE = """
import json, socket, sys, time
import dns.message, dns.query
mode, gateway, arg, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
out = []
if mode == "dns":
    for _ in range(n):
        t = time.perf_counter()
        dns.query.udp(dns.message.make_query(arg, "A"), gateway, timeout=2)
        out.append(time.perf_counter() - t)
elif mode == "names":
    reply = dns.query.udp(dns.message.make_query(arg, "A"), gateway, timeout=2)
    out = sorted(r.to_text() for rrset in reply.answer for r in rrset)
elif mode == "gone":  # arg: NAME=ADDRESS; when (wall clock) the address left the name, polled every 10 ms
    name, _, address = arg.partition("=")
    print("watching", flush=True)
    deadline = time.time() + n
    while time.time() < deadline:
        reply = dns.query.udp(dns.message.make_query(name, "A"), gateway, timeout=2)
        if address not in [r.to_text() for rrset in reply.answer for r in rrset]:
            out = [time.time()]
            break
        time.sleep(0.01)
else:
    for _ in range(n):
        t = time.perf_counter()
        s = socket.create_connection((arg, 8080), timeout=5)
        s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        while s.recv(65536):
            pass
        s.close()
        out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


def probe_argv(f: BenchFleet, m: dict, mode: str, arg: str, n: int) -> list[str]:
    host = next(h for h in f.info["hosts"] if h["id"] == m["host_id"])
    subnet = host["argv"][host["argv"].index("--machine-net") + 1]
    gateway = subnet.rsplit(".", 1)[0] + ".1"
    return ["nsenter", f"--net={HostNetwork(host['id']).netns_path(m['id'])}", sys.executable, "-c", PROBE, mode,
            gateway, arg, str(n)]


def in_machine(f: BenchFleet, m: dict, mode: str, arg: str, n: int = 1) -> list:
    done = subprocess.run(probe_argv(f, m, mode, arg, n), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return list(json.loads(done.stdout))


def measure(args: argparse.Namespace, wireguard: bool) -> tuple[str, list[list[object]]]:
    """One netns fleet, its private network between hosts over the WireGuard mesh or over routes: the rows."""
    with tempfile.TemporaryDirectory(prefix="roost-bench-privnet-") as tmp_name, \
            BenchFleet(["ewr", "syd"], 2, driver="container", netns=True, registry_port=free_port(),
                       server_args=("--allow-registry", "10.*.0.1:*"), wireguard=wireguard) as f:
        path = f.info.get("private_network", "routes")
        if wireguard and path != "wireguard":
            raise SystemExit("no WireGuard on this computer (apt-get install wireguard-tools wireguard-go)")
        tmp = Path(tmp_name)
        registry = f.info["registry"]["address"]
        oci_build.PLAIN_HTTP.add(registry)
        rootfs = busybox_rootfs(tmp / "rootfs")
        (rootfs / "www").mkdir(exist_ok=True)
        (rootfs / "www" / "index.html").write_text("hello\n")
        build_oci_image(tmp / "layout", "httpd", rootfs, ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
                        ports=["8080/tcp"])
        image = f"{registry}/bench/httpd:1"
        push(tmp / "layout", "httpd", image)
        f.api.post("/v1/apps", json={"app_name": "net", "primary_region": "ewr"}).raise_for_status()

        def machine(region: str) -> dict:
            body: dict = {"region": region, "config": {"image": image}}
            r = f.api.post("/v1/apps/net/machines", json=body)
            r.raise_for_status()
            m = r.json()
            f.api.get(f"/v1/apps/net/machines/{m['id']}/wait", params={"state": "started", "timeout": 60})
            return dict(f.api.get(f"/v1/apps/net/machines/{m['id']}").json())

        placed = [machine("ewr") for _ in range(4)] + [machine("syd")]
        asker = placed[0]
        same_host = next((m for m in placed[1:] if m["host_id"] == asker["host_id"]), None)
        other_host = next((m for m in placed[1:4] if m["host_id"] != asker["host_id"]), None)
        far = placed[4]
        time.sleep(1.0)
        rows: list[list[object]] = []
        if args.stops:  # names do not depend on the path between hosts: measured once
            answers = in_machine(f, asker, "dns", "net.internal", args.queries)
            rows.append(["DNS answer, net.internal (host's resolver)", len(answers), f"{pct(answers, 50) * 1000:.2f}",
                         f"{pct(answers, 99) * 1000:.2f}", "-"])
        for label, target, rtt in (("HTTP GET, same host", same_host, 0.0),
                                   ("HTTP GET, another host in ewr", other_host, 0.0),
                                   ("HTTP GET, a host in syd", far, estimated_rtt_ms("ewr", "syd"))):
            if target is None:
                continue
            took = in_machine(f, asker, "fetch", target["private_ip"], args.fetches)
            rows.append([f"{label} (new connection), {path}", len(took), f"{pct(took, 50) * 1000:.2f}",
                         f"{pct(took, 99) * 1000:.2f}", f"{rtt:.1f}"])
        stale = []
        for _ in range(args.stops):
            m = machine("syd")
            deadline = time.monotonic() + 10
            while m["private_ip"] not in in_machine(f, asker, "names", "syd.net.internal") \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            watcher = subprocess.Popen(probe_argv(f, asker, "gone", f"syd.net.internal={m['private_ip']}", 10),
                                       stdout=subprocess.PIPE, text=True)
            assert watcher.stdout is not None
            watcher.stdout.readline()  # watching
            f.api.post(f"/v1/apps/net/machines/{m['id']}/stop").raise_for_status()
            stopped = time.time()
            out, _ = watcher.communicate(timeout=30)
            gone = json.loads(out)
            stale.append(gone[0] - stopped if gone else 10.0)
            f.api.delete(f"/v1/apps/net/machines/{m['id']}", params={"force": "true"})
        if stale:
            rows.append(["a stopped machine out of syd.net.internal, after the stop", len(stale),
                         f"{pct(stale, 50) * 1000:.0f}", f"{pct(stale, 99) * 1000:.0f}", "goal <= 2000 ms"])
    return path, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--stops", type=int, default=10)
    parser.add_argument("--fetches", type=int, default=100)
    parser.add_argument("--paths", choices=["both", "wireguard", "routes"], default="both",
                        help="the private network between hosts: the WireGuard mesh, routes, or both side by side")
    args = parser.parse_args()
    rows: list[list[object]] = []
    for wireguard in {"both": (True, False), "wireguard": (True,), "routes": (False,)}[args.paths]:
        rows += measure(args, wireguard)[1]
        args.stops = 0  # the names' figures once
    print(table("The private network on a netns fleet (ewr and syd, 2 hosts each, container driver, links delayed "
                "by the catalogue's RTT), measured from inside a machine in ewr; between hosts over the WireGuard "
                "mesh (wireguard-go here) or plain routes",
                ["measure", "n", "p50 ms", "p99 ms", "catalogue RTT ms"], rows))


if __name__ == "__main__":
    main()
