"""When the control plane declares a host unreachable, the edge stops waiting on it: the routing table names
the host's machine addresses, and the pool ends requests still waiting there (real sockets on loopback)."""

from __future__ import annotations

import asyncio

from roost.proxy.http_edge import UpstreamPool
from roost.proxy.table import RoutingTable


def host(status: str) -> dict:
    return {"id": "ams-1", "region": "ams", "agent_url": "http://127.0.0.1:1", "status": status}


def test_the_table_reports_a_host_going_unreachable_once():
    table = RoutingTable()
    lost: list[set[str]] = []
    table.on_host_lost = lost.append
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("ok"), "rev": 1})
    table.apply({"op": "put", "kind": "machine", "key": "m1", "rev": 2, "object": {
        "id": "m1", "app": "a", "region": "ams", "state": "started", "private_ip": "127.0.9.1",
        "roost": {"host_id": "ams-1", "ports": {"8080": 5000}}, "config": {}}})
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("unknown"), "rev": 3})
    assert lost == []  # suspect is not lost: its traffic stays
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("unreachable"), "rev": 4})
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("unreachable"), "rev": 5})
    assert lost == [{"127.0.9.1"}]


async def test_the_pool_ends_requests_waiting_on_a_lost_address():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)  # takes the request, never answers
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool()
    try:
        waiting = await pool.connect("127.0.0.1", port)
        idle = await pool.connect("127.0.0.1", port)
        pool.put(idle)
        assert waiting.transport is not None
        waiting.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        pool.awaiting.setdefault("127.0.0.1", set()).add(waiting)
        await asyncio.sleep(0.05)
        assert pool.abort_addresses({"127.0.0.1"}) == 1  # the waiting request ends at once
        assert waiting.aborted and waiting.closed and idle.closed
        assert pool.take("127.0.0.1", port) is None  # nothing idle left to the lost address
        fresh = await pool.connect("127.0.0.1", port)
        assert fresh is not idle and not fresh.aborted
        fresh.close()
    finally:
        server.close()


def test_the_table_reports_a_host_becoming_suspect_when_edges_avoid_suspects():
    table = RoutingTable()
    suspect: list[set[str]] = []
    table.on_host_suspect = suspect.append
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("ok"), "rev": 1})
    table.apply({"op": "put", "kind": "machine", "key": "m1", "rev": 2, "object": {
        "id": "m1", "app": "a", "region": "ams", "state": "started", "private_ip": "127.0.9.1",
        "roost": {"host_id": "ams-1", "ports": {"8080": 5000}}, "config": {}}})
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("unknown"), "rev": 3})
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("unknown"), "rev": 4})
    assert suspect == [{"127.0.9.1"}]
    table.avoid_suspect_hosts = False  # --route-to-suspect-hosts: Fly's way, nothing happens on suspicion
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("ok"), "rev": 5})
    table.apply({"op": "put", "kind": "host", "key": "ams-1", "object": host("unknown"), "rev": 6})
    assert suspect == [{"127.0.9.1"}]


async def test_on_suspicion_only_requests_that_can_go_elsewhere_are_ended():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1000)
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool()
    try:
        get = await pool.connect("127.0.0.1", port)
        post = await pool.connect("127.0.0.1", port)
        get.retryable = True
        for conn in (get, post):
            pool.awaiting.setdefault("127.0.0.1", set()).add(conn)
        assert pool.abort_addresses({"127.0.0.1"}, only_retryable=True) == 1
        assert get.aborted and get.closed and not post.closed
        assert pool.awaiting["127.0.0.1"] == {post}  # still waited on: a verdict of death ends it
        assert pool.abort_addresses({"127.0.0.1"}) == 1 and post.aborted
    finally:
        server.close()
