"""Raw TCP services: each app gets an address in this edge's block (like Fly's dedicated IPs), and every
TCP service port its machines declare is listened on there. A connection goes to a machine chosen by the
same rules as HTTP (load = connections), started first if need be, and bytes are piped both ways.
A connect failure is retried on another machine; once connected, nothing is retried."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.router import RouteError, Router
from roost.proxy.table import RoutingTable

log = logging.getLogger("roost.proxy.tcp")
CONNECT_TIMEOUT = 2.0
IDLE_TIMEOUT = 3600.0
MAX_ATTEMPTS = 5


def app_address(prefix: str, ip_index: int) -> str:
    """The app's address in an edge's block: PREFIX.(index // 250).(index % 250 + 1)."""
    return f"{prefix}.{ip_index // 250}.{ip_index % 250 + 1}"


class TcpProxy:
    def __init__(self, table: RoutingTable, router: Router, loads: Loads, metrics: Metrics, prefix: str,
                 route_timeout: float = 15.0) -> None:
        self.table = table
        self.router = router
        self.loads = loads
        self.metrics = metrics
        self.prefix = prefix
        self.route_timeout = route_timeout
        self.servers: dict[tuple[str, int], asyncio.Server] = {}
        self.failed: dict[tuple[str, int], str] = {}

    async def reconcile(self) -> None:
        """Listen on exactly the (app address, port) pairs the routing table asks for."""
        wanted: dict[tuple[str, int], str] = {}
        for (app, port) in self.table.tcp_listeners():
            route = self.table.apps.get(app)
            if route is None or not route.ip_index:
                continue
            wanted[(app_address(self.prefix, route.ip_index), port)] = app
        for key in list(self.servers):
            if key not in wanted:
                self.servers.pop(key).close()
        for key, app in wanted.items():
            if key in self.servers:
                continue
            address, port = key
            try:
                self.servers[key] = await asyncio.start_server(
                    functools.partial(self._serve_app, app, port), address, port, reuse_address=True)
                self.failed.pop(key, None)
                log.info("TCP service of %s listening on %s:%d", app, address, port)
            except OSError as exc:
                if self.failed.get(key) != str(exc):
                    log.warning("cannot listen on %s:%d for %s: %s", address, port, app, exc)
                self.failed[key] = str(exc)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.reconcile()
            await self.table.wait_change(1.0)
        for server in self.servers.values():
            server.close()

    async def _serve_app(self, app: str, port: int, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        await self.serve(reader, writer, app, port)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, app: str, port: int) -> None:
        exclude: set[str] = set()
        deadline = time.monotonic() + self.route_timeout
        upstream = None
        machine_id = ""
        try:
            for _ in range(MAX_ATTEMPTS):
                try:
                    m, service = await self.router.pick(app, lambda: self.table.tcp_targets(app, port), exclude,
                                                        deadline)
                except RouteError as exc:
                    log.info("TCP %s:%d: %s", app, port, exc)
                    self.metrics.tcp_connections.labels(app, exc.code).inc()
                    return
                host_port = m.host_port(service.internal_port)
                try:
                    upstream = await asyncio.wait_for(asyncio.open_connection(m.address, host_port), CONNECT_TIMEOUT)
                    machine_id = m.id
                    break
                except (OSError, TimeoutError):
                    self.table.penalize(m.id)
                    exclude.add(m.id)
                    self.metrics.retries.labels(app, "connect").inc()
            if upstream is None:
                self.metrics.tcp_connections.labels(app, "no-machine").inc()
                return
            self.metrics.tcp_connections.labels(app, "ok").inc()
            self.loads.acquire(machine_id)
            try:
                up_reader, up_writer = upstream
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
                up_writer.close()
            finally:
                self.loads.release(machine_id)
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
