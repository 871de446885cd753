"""The dev fleet's anycast entry: one address that sends each client to the nearest live edge.

On Fly, BGP anycast brings a client to the closest edge, and a region that goes away is withdrawn. Here the
client says where it is (`Fly-Client-Region: syd`, or the entry's default region); the entry ranks the edges
by round-trip time from there and hands the connection to the first that accepts it, so killing a region's
edge moves its clients to the next nearest — a region outage can be rehearsed end to end. It works at the
connection level (like anycast): it reads the first request's head to learn the region, then pipes bytes.

With `simulate_rtt` (the dev fleet's default) the distance between the client's region and the edge's is
felt: a connection costs one round trip to set up (the TCP handshake), and every chunk waits half a round
trip each way. So clients moved from a dead region's edge to a farther one see the latency of that move,
as users would, instead of the 2 ms of loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass

from roost import logsetup
from roost.core.regions import RttTable

log = logging.getLogger("roost.anycast")
HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 0.5


@dataclass(frozen=True)
class EdgeAddress:
    region: str
    host: str
    port: int


def client_region(head: bytes, default: str) -> str:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"fly-client-region", b"x-client-region"):
            return value.strip().decode("latin-1").lower() or default
    return default


class Anycast:
    def __init__(self, edges: list[EdgeAddress], default_region: str, rtt: RttTable,
                 simulate_rtt: bool = False) -> None:
        self.edges = edges
        self.default_region = default_region
        self.rtt = rtt
        self.simulate_rtt = simulate_rtt
        self.routed: dict[tuple[str, str], int] = {}  # (client region, edge region) -> connections

    def ranked(self, region: str) -> list[EdgeAddress]:
        return sorted(self.edges, key=lambda e: (self.rtt.rtt(region, e.region), e.region))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_writer = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except asyncio.LimitOverrunError:
                head = await reader.read(HEAD_LIMIT)
            region = client_region(head, self.default_region)
            for edge in self.ranked(region):
                try:
                    up_reader, edge_writer = await asyncio.wait_for(
                        asyncio.open_connection(edge.host, edge.port), CONNECT_TIMEOUT)
                except (OSError, TimeoutError):
                    continue  # that edge is down: the next nearest takes the client
                upstream_writer = edge_writer
                self.routed[(region, edge.region)] = self.routed.get((region, edge.region), 0) + 1
                one_way = self.rtt.rtt(region, edge.region) / 2000 if self.simulate_rtt else 0.0
                if one_way:
                    await asyncio.sleep(3 * one_way)  # the handshake's round trip, then the head's way there
                edge_writer.write(head)
                await asyncio.gather(_pump(reader, edge_writer, one_way), _pump(up_reader, writer, one_way))
                return
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 31\r\n"
                         b"Connection: close\r\n\r\nroost anycast: no edge is up\n\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, OSError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float = 0.0) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


def run(listen_host: str, listen_port: int, edges: list[EdgeAddress], default_region: str, rtt: RttTable,
        simulate_rtt: bool = False) -> None:
    logsetup.configure()

    async def main() -> None:
        anycast = Anycast(edges, default_region, rtt, simulate_rtt)
        server = await asyncio.start_server(anycast.serve, listen_host, listen_port, reuse_address=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"roost anycast: http://{listen_host}:{listen_port} -> nearest of "
              f"{', '.join(e.region for e in edges)} (default client region {default_region})",
              file=sys.stderr, flush=True)
        await stop.wait()
        server.close()

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main())
