"""A standalone edge under hostile clients (issue 14): endless headers, trickled heads, oversized targets
and garbage are refused on time with the status they are owed, while legitimate requests keep being
served. Everything stays on loopback; every loop is bounded in count and time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from roost.dev.fleet import admin_get
from tests.integration.conftest import Fleet, free_port, stop_process
from tests.integration.test_proxy import create_app

pytestmark = pytest.mark.integration
HEADER_TIMEOUT = 1.0
CONN_CAP = 300


@pytest.fixture(scope="module")
def hard_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, dict]]:
    f = Fleet(tmp_path_factory.mktemp("limits"), ["ams"], 1)
    f.push_example("hello:v1")
    port, admin = free_port(), free_port()
    log = open(f.spec.data_dir / "hard-edge.log", "w")  # noqa: SIM115 (closed with the edge)
    proc = subprocess.Popen(
        [sys.executable, "-m", "roost", "proxy", "--server", f.url, "--region", "ams",
         "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--tcp-prefix", "127.251",
         "--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", "5", "--id", "hard-edge",
         "--max-conns-per-client", str(CONN_CAP)],
        env={**f.env, "ROOST_API_TOKEN": f.token}, stdout=log, stderr=subprocess.STDOUT)
    edge = {"url": f"http://127.0.0.1:{port}", "port": port, "admin_url": f"http://127.0.0.1:{admin}",
            "admin_token": f.token}
    try:
        f.wait_for(lambda: _up(edge), timeout=20, what="the edge to listen")
        create_app(f, "tough", 1)
        create_app(f, "capped", 1, port_spec=[{"port": 80, "handlers": ["http"],
                                               "http_options": {"max_request_body_size": "1MB"}}])
        for app in ("tough", "capped"):
            f.wait_for(lambda app=app: any(m["state"] == "started" for m in admin_get(edge, "/routes").json()["apps"]
                                           .get(app, {}).get("machines", [])), timeout=20, what=f"{app} routed")
        yield f, edge
    finally:
        stop_process(proc, log)
        f.close()


def _up(edge: dict) -> bool:
    try:
        return httpx.get(f"{edge['admin_url']}/healthz", trust_env=False, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def served(edge: dict) -> float:
    began = time.monotonic()
    r = httpx.get(edge["url"], headers={"Host": "tough.localhost"}, trust_env=False, timeout=10)
    assert r.status_code == 200
    return time.monotonic() - began


def answer_of(sock: socket.socket, limit: float = 5.0) -> bytes:
    """What the edge says before it closes (bounded in time)."""
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_an_endless_header_is_refused_with_431_after_a_bounded_number_of_bytes(hard_edge) -> None:
    _, edge = hard_edge
    sock = socket.create_connection(("127.0.0.1", edge["port"]), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: tough.localhost\r\nX-Endless: ")
    sent = 0
    try:
        while sent < 8 << 20:  # at most 8 MB, far past any limit
            sock.sendall(b"a" * 16384)
            sent += 16384
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    reply = answer_of(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert sent < 4 << 20, f"the edge read {sent} bytes of one header before refusing it"
    assert served(edge) < 1.0


def test_garbage_and_an_oversized_target_get_their_status_and_a_close(hard_edge) -> None:
    _, edge = hard_edge
    for request, status in ((b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n", b"400"),
                            (b"GET /" + b"x" * 40000 + b" HTTP/1.1\r\nHost: tough.localhost\r\n\r\n", b"414")):
        sock = socket.create_connection(("127.0.0.1", edge["port"]), timeout=5)
        sock.sendall(request)
        reply = answer_of(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 " + status + b" ") and b"Connection: close" in reply, reply[:200]


def test_trickled_heads_are_closed_at_the_header_timeout_while_others_are_served(hard_edge) -> None:
    _, edge = hard_edge
    baseline = sorted(served(edge) for _ in range(7))[3]
    socks = []
    for _ in range(100):
        s = socket.create_connection(("127.0.0.1", edge["port"]), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: tough.localhost\r\n")
        s.setblocking(False)
        socks.append(s)
    began = time.monotonic()
    closed_at: dict[int, float] = {}
    latencies = []
    while len(closed_at) < len(socks) and time.monotonic() - began < HEADER_TIMEOUT * 6:
        for i, s in enumerate(socks):
            if i in closed_at:
                continue
            try:
                s.send(b"X")  # one more byte of a header that never ends
                if s.recv(1024) == b"":
                    closed_at[i] = time.monotonic() - began
            except BlockingIOError:
                pass
            except OSError:
                closed_at[i] = time.monotonic() - began
        latencies.append(served(edge))
        time.sleep(0.1)
    for s in socks:
        s.close()
    assert len(closed_at) == len(socks), f"{len(socks) - len(closed_at)} trickling connections still open"
    assert max(closed_at.values()) < HEADER_TIMEOUT + 1.5, "closed at the head's deadline, not pushed back"
    under_attack = sorted(latencies)[len(latencies) // 2]
    assert under_attack < 3 * baseline + 0.05, f"legitimate requests slowed from {baseline:.3f}s to {under_attack:.3f}s"


def test_a_body_over_the_apps_limit_is_413_without_being_read(hard_edge) -> None:
    _, edge = hard_edge
    head = b"POST /upload HTTP/1.1\r\nHost: capped.localhost\r\n"
    # Announced: refused from the head alone (the 100 MB are never sent).
    sock = socket.create_connection(("127.0.0.1", edge["port"]), timeout=5)
    sock.sendall(head + b"Content-Length: 104857600\r\nExpect: 100-continue\r\n\r\n")
    reply = answer_of(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in reply, reply[:200]
    # Streamed (chunked): cut once past the limit, long before the client is done.
    sock = socket.create_connection(("127.0.0.1", edge["port"]), timeout=5)
    sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
    sent = 0
    try:
        while sent < 64 << 20:  # at most 64 MB
            sock.sendall(b"4000\r\n" + b"z" * 0x4000 + b"\r\n")
            sent += 0x4000
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    reply = answer_of(sock)
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413 ") and sent < 16 << 20, (sent, reply[:200])
    # Under the limit, and on an app without one: served.
    small = httpx.post(edge["url"] + "/upload", content=b"x" * 1000, headers={"Host": "capped.localhost"},
                       trust_env=False, timeout=10)
    assert small.status_code == 200
    big = httpx.post(edge["url"] + "/upload", content=b"x" * (2 << 20), headers={"Host": "tough.localhost"},
                     trust_env=False, timeout=10)
    assert big.status_code == 200


def test_one_address_cannot_hold_more_than_its_share_of_connections(hard_edge) -> None:
    _, edge = hard_edge
    held = [socket.create_connection(("127.0.0.1", edge["port"]), timeout=5) for _ in range(CONN_CAP)]
    try:
        extra = socket.create_connection(("127.0.0.1", edge["port"]), timeout=5)
        reply = answer_of(extra, limit=HEADER_TIMEOUT / 2)
        extra.close()
        assert reply.startswith(b"HTTP/1.1 429 ") and b"Connection: close" in reply, reply[:200]
    finally:
        for s in held:
            s.close()
    # Closed ones no longer count (the edge notices within a moment).
    deadline = time.monotonic() + 5
    while True:
        try:
            served(edge)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
