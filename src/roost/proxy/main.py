"""`roost proxy`: wire the routing table, balancer, HTTP and TCP edges, idle loop and admin port."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from roost import logsetup
from roost.core.regions import RttTable
from roost.proxy.admin import json_page, serve_admin
from roost.proxy.certstore import CertFollower, CertStore
from roost.proxy.forwarding import HttpSettings
from roost.proxy.http_edge import HttpEdge
from roost.proxy.idle import IdleLoop
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.router import Router
from roost.proxy.starter import Starter
from roost.proxy.table import RoutingTable
from roost.proxy.tcp import TcpProxy, app_address
from roost.tasks import spawn
from roost.tls import Listener, Trust
from roost.watchfeed import FeedFollower

log = logging.getLogger("roost.proxy")
REGISTER_EVERY = 15.0
TRAFFIC_EVERY = 2.0  # seconds between two traffic reports to the control plane (the dashboard's charts)
MAX_TRAFFIC_ROWS = 50_000


@dataclass
class ProxyConfig:
    server_url: str
    token: str
    region: str
    listen_host: str = "127.0.0.1"
    listen_port: int = 4400
    advertise: str = ""  # the address clients and the control plane know this edge by (default: listen_host)
    admin_host: str = "127.0.0.1"
    admin_port: int = 0  # 0: no admin port
    domain: str = "localhost"
    tcp_prefix: str = "127.100"
    idle_interval: float = 300.0
    data_dir: Path | None = None
    workers: int = 1
    worker_index: int = 0
    proxy_id: str = ""
    rtt_file: Path | None = None
    simulate_rtt: bool = False  # the dev fleet: crossing regions costs their round-trip time
    http: HttpSettings = field(default_factory=HttpSettings)
    trust: Trust = field(default_factory=Trust)  # whom it trusts: the server, the agents (a pinned fleet CA)
    tls_port: int = 0  # where it terminates TLS for apps (handlers = ["tls", "http"]); 0: nowhere
    tls_default: Listener | None = None  # the certificate for names no app has one for (e.g. *.DOMAIN)


class Edge:
    def __init__(self, cfg: ProxyConfig) -> None:
        self.cfg = cfg
        self.table = RoutingTable()
        snapshot = cfg.data_dir / "routes.json" if cfg.data_dir and cfg.worker_index == 0 else None
        if cfg.data_dir:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.follower = FeedFollower(self.table, cfg.server_url, cfg.token, snapshot, cfg.trust)
        self.loads = Loads()
        self.metrics = Metrics()
        self.metrics.in_flight = lambda: [(m.app if (m := self.table.machines.get(mid)) else "-", mid, n)
                                          for mid, n in list(self.loads.in_flight.items())]
        self.starter = Starter(self.table, cfg.server_url, cfg.token, cfg.trust)
        self.rtt = RttTable.from_file(cfg.rtt_file) if cfg.rtt_file else RttTable()
        self.router = Router(self.table, self.loads, self.starter, cfg.region, self.rtt.rtt, self.metrics)
        self.table.on_host_lost = self._host_lost
        self.table.on_host_suspect = self._host_suspect
        cfg.http.region = cfg.region
        cfg.http.domain = cfg.domain
        cfg.http.simulate_rtt = cfg.simulate_rtt
        self.table.avoid_suspect_hosts = cfg.http.avoid_suspect_hosts
        self.http = HttpEdge(self.table, self.router, self.loads, self.metrics, cfg.http, self.rtt.rtt)
        self.http.pool.connect_times.fixed = cfg.http.connect_timeout
        self.certs = CertStore(cfg.tls_default)
        self.certs.on_change = self.http.heads.take_certificates
        self.cert_follower = CertFollower(self.certs, cfg.server_url, cfg.token, cfg.trust)
        self.tcp = TcpProxy(self.table, self.router, self.loads, self.metrics, cfg.tcp_prefix)
        self.idle = IdleLoop(self.table, self.loads, self.starter, self.metrics, cfg.region, cfg.idle_interval)

    def _host_lost(self, addresses: set[str]) -> None:
        aborted = self.http.pool.abort_addresses(addresses)
        if aborted:
            log.info("host of %s unreachable: %d waiting requests sent elsewhere", ",".join(sorted(addresses)), aborted)

    def _host_suspect(self, addresses: set[str]) -> None:
        aborted = self.http.pool.abort_addresses(addresses, only_retryable=True)
        if aborted:
            log.info("host of %s suspect: %d waiting idempotent requests sent elsewhere", ",".join(sorted(addresses)),
                     aborted)

    def routes(self) -> dict[str, object]:
        now = self.table.clock.monotonic()
        return {
            "region": self.cfg.region, "revision": self.table.revision, "feed_connected": self.follower.connected,
            "apps": {
                app: {"address": app_address(self.cfg.tcp_prefix, route.ip_index) if route.ip_index else None,
                      "machines": [{"id": m.id, "region": m.region, "state": self.table.state_of(m, now),
                                    "healthy": self.table.healthy(m, now), "load": self.loads.get(m.id),
                                    "address": m.address, "ports": m.ports}
                                   for m in self.table.by_app.get(app, {}).values()]}
                for app, route in self.table.apps.items()
            },
        }

    async def register(self, stop: asyncio.Event) -> None:
        """Tell the control plane where this edge listens (for `roost ips list`); best effort, repeated."""
        host = self.cfg.advertise or self.cfg.listen_host
        body = {"id": self.cfg.proxy_id or f"proxy-{self.cfg.region}", "region": self.cfg.region,
                "url": f"http://{host}:{self.cfg.listen_port}", "tcp_prefix": self.cfg.tcp_prefix,
                "tls_url": f"https://{host}:{self.cfg.tls_port}" if self.cfg.tls_port else "",
                "admin_url": f"http://{self.cfg.admin_host}:{self.cfg.admin_port}" if self.cfg.admin_port else "",
                "domain": self.cfg.domain, "pid": os.getpid()}
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self.cfg.token}"}, timeout=5,
                                     trust_env=False, transport=self.cfg.trust.async_transport()) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(f"{self.cfg.server_url.rstrip('/')}/v1/proxies", json=body)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REGISTER_EVERY)

    async def report_traffic(self, stop: asyncio.Event) -> None:
        """Send the control plane this worker's request counts and latency estimates every few seconds, for the
        dashboard's live charts (best effort: a report that fails is simply the next one's interval)."""
        edge = self.cfg.proxy_id or f"proxy-{self.cfg.region}"
        if self.cfg.workers > 1:
            edge = f"{edge}-w{self.cfg.worker_index}"
        url = f"{self.cfg.server_url.rstrip('/')}/v1/proxies/{edge}/traffic"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {self.cfg.token}"}, timeout=5,
                                     trust_env=False, transport=self.cfg.trust.async_transport()) as client:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TRAFFIC_EVERY)
                now = time.monotonic()
                counted = [(key, n) for key, n in list(self.metrics.requests.items())[:MAX_TRAFFIC_ROWS]
                           if key[2].isdigit()]
                rows = [[app, machine, int(status), n] for (app, machine, status), n in counted]
                latency = {}
                for machine in {key[1] for key, _ in counted}:
                    estimate = self.loads.scores.estimate(machine, now)
                    if estimate is not None:
                        latency[machine] = round(estimate * 1000, 3)
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(url, json={"region": self.cfg.region, "requests": rows, "latency_ms": latency})

    async def sweep_pool(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            self.http.pool.sweep()

    async def run(self) -> None:
        cfg = self.cfg
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        self.follower.load_snapshot()
        server = await loop.create_server(self.http.protocol,
                                          cfg.listen_host, cfg.listen_port, reuse_port=cfg.workers > 1,
                                          reuse_address=True, backlog=2048)
        tls_server = None
        if cfg.tls_port:
            self.http.heads.tls_ports = frozenset({cfg.tls_port})
            tls_server = await loop.create_server(self.http.protocol, cfg.listen_host, cfg.tls_port,
                                                  ssl=self.certs.server_context(), ssl_handshake_timeout=10,
                                                  reuse_port=cfg.workers > 1, reuse_address=True, backlog=2048)
        admin = None
        if cfg.admin_port and cfg.worker_index == 0:
            pages = {"/metrics": lambda: ("text/plain; version=0.0.4", self.metrics.render()),
                     "/healthz": json_page(lambda: {"ok": True, "region": cfg.region, "revision": self.table.revision,
                                                    "feed_connected": self.follower.connected}),
                     "/routes": json_page(self.routes)}
            admin = await asyncio.start_server(lambda r, w: serve_admin(r, w, pages, cfg.token), cfg.admin_host,
                                               cfg.admin_port)
        tasks = [spawn(self.follower.run(stop), "feed"), spawn(self.sweep_pool(stop), "pool-sweeper"),
                 spawn(self.cert_follower.run(stop), "certificates"), spawn(self.report_traffic(stop), "traffic")]
        if cfg.worker_index == 0:
            tasks += [spawn(self.tcp.run(stop), "tcp-edge"), spawn(self.idle.run(stop), "idle-loop"),
                      spawn(self.register(stop), "register")]
        print(f"roost proxy: region {cfg.region} edge on http://{cfg.listen_host}:{cfg.listen_port} "
              f"(worker {cfg.worker_index + 1}/{cfg.workers}, pid {os.getpid()})", file=sys.stderr, flush=True)
        await stop.wait()
        server.close()
        if tls_server:
            tls_server.close()
        if admin:
            admin.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for tcp_server in self.tcp.servers.values():
            tcp_server.close()
        self.http.close()
        await self.starter.close()


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run(cfg: ProxyConfig, argv: list[str]) -> None:
    logsetup.configure()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    children: list[subprocess.Popen[bytes]] = []
    if cfg.workers > 1 and cfg.worker_index == 0:
        # Extra workers share the listening port (SO_REUSEPORT); only the first runs the idle loop,
        # the TCP listeners and the admin port, so that exactly one of them stops idle machines.
        for index in range(1, cfg.workers):
            children.append(subprocess.Popen([sys.executable, "-m", "roost", "proxy", *argv,
                                              "--worker-index", str(index)], preexec_fn=_die_with_parent))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(Edge(cfg).run())
    finally:
        for child in children:
            child.terminate()
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(5)
