"""Issue 4's end-to-end checks: the edge proxy on a real fleet (server, agents, machines, proxies)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from roost.dev.fleet import admin_get, pid_alive, restart_server
from tests.integration.conftest import Fleet

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def edge_fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("edge"), ["ams", "ewr"], 2, proxies=True, idle_interval=1.0)
    f.push_example("hello:v1")
    f.push_example("echo:v1", example="echo", cmd="python3 echo.py")
    yield f
    f.close()


def create_app(f: Fleet, name: str, n: int, *, autostop: str = "off", min_running: int = 0, region: str = "ams",
               extra: dict | None = None, port_spec: list | None = None) -> list[dict]:
    assert f.api.post("/v1/apps", json={"app_name": name, "primary_region": "ams"}).status_code == 201
    service = {"protocol": "tcp", "internal_port": 8080, "autostop": autostop, "autostart": True,
               "min_machines_running": min_running,
               "ports": port_spec or [{"port": 80, "handlers": ["http"]}, {"port": 443, "handlers": ["http", "tls"]}]}
    machines = []
    for _ in range(n):
        config = {"image": "hello:v1", "services": [service], "restart": {"policy": "no"}, **(extra or {})}
        machines.append(f.api.post(f"/v1/apps/{name}/machines", json={"config": config, "region": region}).json())
    for m in machines:
        f.api.get(f"/v1/apps/{name}/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
        if autostop == "off":
            port = m["roost"]["ports"]["8080"]
            f.wait_for(lambda m=m, port=port: _try(lambda: httpx.get(f"http://{m['private_ip']}:{port}/", timeout=1)),
                       what="the app to listen")
    return machines


def edge_get(f: Fleet, app: str, path: str = "/", region: str = "ams", **kw) -> httpx.Response:
    return httpx.get(f"{f.edge(region)['url']}{path}", headers={"Host": f"{app}.localhost", **kw.pop("headers", {})},
                     timeout=kw.pop("timeout", 20), trust_env=False, **kw)


def wait_routable(f: Fleet, app: str, count: int, region: str = "ams") -> None:
    def ready():
        routes = admin_get(f.edge(region), "/routes").json()["apps"].get(app)
        return routes and sum(1 for m in routes["machines"] if m["state"] == "started") >= count
    f.wait_for(ready, timeout=20, what=f"{count} machines of {app} routable")


def state(f: Fleet, app: str, mid: str) -> str:
    return f.api.get(f"/v1/apps/{app}/machines/{mid}").json()["state"]


def test_two_machines_share_load_and_headers_are_set(edge_fleet):
    f = edge_fleet
    machines = create_app(f, "share", 2)
    wait_routable(f, "share", 2)
    seen = {}
    with httpx.Client(headers={"Host": "share.localhost"}, trust_env=False) as client:
        for _ in range(60):
            body = client.get(f"{f.edge('ams')['url']}/").json()
            seen[body["machine"]] = seen.get(body["machine"], 0) + 1
    assert set(seen) == {m["id"] for m in machines}, seen
    assert min(seen.values()) >= 10, seen
    r = edge_get(f, "share", "/headers", headers={"X-Forwarded-For": "203.0.113.9"})
    h = r.json()
    assert h["fly-region"] == "ams" and h["fly-client-ip"] == "127.0.0.1"
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http" and h["x-forwarded-port"] == f.edge("ams")["url"].rsplit(":", 1)[1]
    assert h["fly-forwarded-port"] == h["x-forwarded-port"] and "roost" in h["via"]
    assert h["fly-request-id"] == r.headers["fly-request-id"] and r.headers["fly-request-id"].endswith("-ams")


def test_unknown_app_is_404_and_no_machine_is_503(edge_fleet):
    f = edge_fleet
    r = edge_get(f, "ghost")
    assert r.status_code == 404 and "no app named 'ghost'" in r.text
    assert f.api.post("/v1/apps", json={"app_name": "empty"}).status_code == 201
    f.wait_for(lambda: "empty" in admin_get(f.edge('ams'), "/routes").json()["apps"])
    r = edge_get(f, "empty")
    assert r.status_code == 503 and "no machine" in r.text


def test_a_request_starts_a_stopped_machine(edge_fleet):
    f = edge_fleet
    machines = create_app(f, "wake", 2)
    for m in machines:
        f.api.post(f"/v1/apps/wake/machines/{m['id']}/stop")
    for m in machines:
        f.api.get(f"/v1/apps/wake/machines/{m['id']}/wait", params={"state": "stopped", "timeout": 30})
    f.wait_for(lambda: all(x["state"] == "stopped"
                           for x in admin_get(f.edge("ams"), "/routes").json()["apps"]["wake"]["machines"]))
    began = time.monotonic()
    r = edge_get(f, "wake")
    took = time.monotonic() - began
    assert r.status_code == 200, r.text
    started = r.json()["machine"]
    assert took < 5
    f.wait_for(lambda: state(f, "wake", started) == "started", what="the control plane to learn of the start")
    assert sum(1 for m in machines if state(f, "wake", m["id"]) == "started") == 1, "starts one, not all"
    metrics = admin_get(f.edge('ams'), "/metrics").text
    assert 'roost_proxy_autostarts_total{app="wake",result="ok"}' in metrics


def test_idle_loop_stops_extras_down_to_min_machines_running(edge_fleet):
    f = edge_fleet
    machines = create_app(f, "idle", 3, autostop="stop", min_running=1)
    ids = [m["id"] for m in machines]
    f.wait_for(lambda: sum(state(f, "idle", i) == "started" for i in ids) == 1, timeout=30,
               what="two of three machines stopped by the idle loop")
    time.sleep(2.5)  # more passes: never below min_machines_running in the primary region
    assert sum(state(f, "idle", i) == "started" for i in ids) == 1
    assert sum(state(f, "idle", i) == "stopped" for i in ids) == 2
    assert edge_get(f, "idle").status_code == 200


def test_suspend_mode_suspends_and_a_request_resumes_with_memory(edge_fleet):
    f = edge_fleet
    [m] = create_app(f, "nap", 1, autostop="suspend")
    wait_routable(f, "nap", 1)
    first = edge_get(f, "nap").json()["hits"]
    f.wait_for(lambda: state(f, "nap", m["id"]) == "suspended", timeout=20, what="suspended when idle")
    f.wait_for(lambda: admin_get(f.edge('ams'), "/routes").json()["apps"]["nap"]
               ["machines"][0]["state"] == "suspended")
    r = edge_get(f, "nap")
    assert r.status_code == 200 and r.json()["hits"] == first + 1, "resumed with its memory"


def test_a_suspend_right_after_an_autostart_reaches_the_edge_at_once(edge_fleet):
    # The edge used to keep its own "started" for up to 10 s after an autostart even when the feed then said
    # "suspended", and forwarded requests to the frozen machine until the upstream timeout.
    f = edge_fleet
    [m] = create_app(f, "doze", 1, autostop="off")
    f.api.post(f"/v1/apps/doze/machines/{m['id']}/stop")
    f.api.get(f"/v1/apps/doze/machines/{m['id']}/wait", params={"state": "stopped", "timeout": 30})

    def edge_state() -> str:
        return admin_get(f.edge("ams"), "/routes").json()["apps"]["doze"]["machines"][0]["state"]

    f.wait_for(lambda: edge_state() == "stopped", what="the edge to see the stop")
    # Started by the edge; the app's boot outlasts the feed's "started", which then arrives first.
    assert edge_get(f, "doze").status_code == 200
    f.wait_for(lambda: state(f, "doze", m["id"]) == "started", what="the control plane to see the resume")
    assert f.api.post(f"/v1/apps/doze/machines/{m['id']}/suspend").status_code == 200
    f.api.get(f"/v1/apps/doze/machines/{m['id']}/wait", params={"state": "suspended", "timeout": 30})
    f.wait_for(lambda: edge_state() == "suspended", timeout=3, what="the edge to see the second suspend")
    began = time.monotonic()
    assert edge_get(f, "doze", timeout=8).status_code == 200
    assert time.monotonic() - began < 3, "resumed, not sent to the frozen machine"


def test_killing_a_machine_under_load_fails_no_idempotent_request(edge_fleet):
    f = edge_fleet
    machines = create_app(f, "steady", 2)
    wait_routable(f, "steady", 2)
    results: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(headers={"Host": "steady.localhost"}, trust_env=False, timeout=20) as client:
            for _ in range(3000):  # bounded; stops earlier when told
                if stop.is_set():
                    return
                try:
                    results.append(client.get(f"{f.edge('ams')['url']}/").status_code)
                except httpx.HTTPError:
                    results.append(-1)
                time.sleep(0.002)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    victim = machines[0]
    host = f.host(victim["host_id"])
    record = json.loads(Path(host["data_dir"], "records", f"{victim['id']}.json").read_text())
    os.killpg(record["run"]["pid"], signal.SIGKILL)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(results) > 200
    assert all(code == 200 for code in results), {c: results.count(c) for c in set(results)}
    f.wait_for(lambda: state(f, "steady", victim["id"]) == "stopped", what="the exit reported")


def test_traffic_flows_with_the_control_plane_down(edge_fleet):
    f = edge_fleet
    create_app(f, "stable", 2)
    wait_routable(f, "stable", 2)
    server_pid = f.info["server"]["pid"]
    os.kill(server_pid, signal.SIGKILL)
    f.wait_for(lambda: not pid_alive(server_pid))
    try:
        codes = [edge_get(f, "stable").status_code for _ in range(50)]
        assert codes == [200] * 50
    finally:
        f.info["server"].update(restart_server(f.spec.data_dir))
    f.wait_for(lambda: httpx.get(f"{f.edge('ams')['admin_url']}/healthz", trust_env=False).json()["feed_connected"],
               timeout=20, what="the edge to follow the feed again")


def test_the_admin_port_lists_routes_and_metrics_only_with_the_token(edge_fleet):
    f = edge_fleet
    create_app(f, "secretive", 1)
    wait_routable(f, "secretive", 1)
    admin = f.edge("ams")["admin_url"]
    for path in ("/routes", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            refused = httpx.get(f"{admin}{path}", headers=headers, trust_env=False, timeout=5)
            assert refused.status_code == 401 and "token" in refused.json()["error"]
            assert "secretive" not in refused.text
    assert "secretive" in admin_get(f.edge("ams"), "/routes").json()["apps"]
    assert httpx.get(f"{admin}/healthz", trust_env=False, timeout=5).status_code == 200, "liveness stays open"


def test_websocket_through_the_proxy(edge_fleet):
    f = edge_fleet
    [m] = create_app(f, "ws", 1)
    wait_routable(f, "ws", 1)
    host, port = f.edge("ams")["url"][7:].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET /chat HTTP/1.1\r\nHost: ws.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = _read_until(s, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        accept = base64.b64encode(hashlib.sha1(key.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        assert accept in head
        for text in (b"hello", b"again"):
            mask = os.urandom(4)
            s.sendall(bytes([0x81, 0x80 | len(text)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))
            frame = _read_exact(s, 2)
            payload = _read_exact(s, frame[1] & 0x7F)
            assert payload == m["id"].encode() + b": " + text


def test_raw_tcp_echo_through_the_proxy(edge_fleet):
    f = edge_fleet
    assert f.api.post("/v1/apps", json={"app_name": "echo", "primary_region": "ams"}).status_code == 201
    config = {"image": "echo:v1", "services": [{"protocol": "tcp", "internal_port": 7000,
                                                "ports": [{"port": 7000}]}]}
    m = f.api.post("/v1/apps/echo/machines", json={"config": config}).json()
    f.api.get(f"/v1/apps/echo/machines/{m['id']}/wait", params={"state": "started", "timeout": 30})
    ips = json.loads(f.roost("ips", "list", "-a", "echo", "--json").stdout)
    address = next(i["ip"] for i in ips if i["region"] == "ams")
    assert address.startswith(f.edge("ams")["tcp_prefix"] + ".")

    def talk():
        with socket.create_connection((address, 7000), timeout=5) as s:
            s.sendall(b"ping\n")
            return _read_until(s, b"\n")

    assert f.wait_for(lambda: _try(talk), timeout=20, what="the TCP listener") == m["id"].encode() + b" ping\n"
    # a stopped TCP machine is started by a connection, too
    f.api.post(f"/v1/apps/echo/machines/{m['id']}/stop")
    f.api.get(f"/v1/apps/echo/machines/{m['id']}/wait", params={"state": "stopped", "timeout": 30})
    f.wait_for(lambda: admin_get(f.edge('ams'), "/routes").json()["apps"]["echo"]
               ["machines"][0]["state"] == "stopped")
    assert talk() == m["id"].encode() + b" ping\n"


def test_http_correctness(edge_fleet):
    f = edge_fleet
    create_app(f, "proto", 1)
    wait_routable(f, "proto", 1)
    url = f.edge("ams")["url"]
    with httpx.Client(headers={"Host": "proto.localhost"}, trust_env=False, timeout=30) as client:
        # HEAD: headers only
        r = client.head(f"{url}/")
        assert r.status_code == 200 and r.content == b"" and int(r.headers["content-length"]) > 0
        # chunked response from the machine arrives whole
        assert client.get(f"{url}/chunked").text == "one two three"
        # a chunked (streamed) request body
        def gen():
            for _ in range(10):
                yield b"x" * 1000
        r = client.post(f"{url}/upload", content=gen())
        assert r.json()["received"] == 10_000
        # a body larger than the 10 MB retry buffer streams through
        big = os.urandom(11 * 1024 * 1024)
        r = client.post(f"{url}/upload", content=big)
        assert r.json()["sha256"] == hashlib.sha256(big).hexdigest()
    host, port = url[7:].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        # pipelining: two requests in one write, two responses in order
        s.sendall(b"GET /one HTTP/1.1\r\nHost: proto.localhost\r\n\r\n"
                  b"GET /two HTTP/1.1\r\nHost: proto.localhost\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b'"path"') < 2 and time.monotonic() < deadline:
            data += s.recv(65536)
        assert data.index(b'"/one"') < data.index(b'"/two"')
    with socket.create_connection((host, int(port)), timeout=10) as s:
        # Expect: 100-continue is answered before the body is sent
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: proto.localhost\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert _read_until(s, b"\r\n\r\n").startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"hello")
        assert b'"received": 5' in _read_until(s, b"}\n")


def test_one_keep_alive_connection_carries_every_kind_of_request(edge_fleet):
    """On the real edge (uvloop): a routing header, a plain request, a body too big to keep for a retry
    (streamed to the machine) and a plain request again, one after another on one connection."""
    f = edge_fleet
    create_app(f, "mixed", 1)
    wait_routable(f, "mixed", 1)
    host, port = f.edge("ams")["url"][7:].split(":")
    big = 11 * 1024 * 1024  # past the 10 MB the edge keeps for retries
    with socket.create_connection((host, int(port)), timeout=20) as s:
        for header in (b"Fly-Prefer-Region: ams\r\n", b""):
            s.sendall(b"GET /n HTTP/1.1\r\nHost: mixed.localhost\r\n" + header + b"\r\n")
            answer = _read_until(s, b"}\n")
            assert b"200 OK" in answer and b'"/n"' in answer
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: mixed.localhost\r\nContent-Length: %d\r\n\r\n" % big)
        piece = b"x" * 65536
        for _ in range(big // len(piece)):
            s.sendall(piece)
        assert b'"received": %d' % big in _read_until(s, b"}\n")
        s.sendall(b"GET /last HTTP/1.1\r\nHost: mixed.localhost\r\n\r\n")
        assert b'"/last"' in _read_until(s, b"}\n")


def _read_until(s: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _try(fn):
    try:
        return fn()
    except (OSError, httpx.HTTPError):
        return None


def test_the_dev_fleets_edges_route_with_edge_tokens_of_their_own(edge_fleet):
    """Issue 15: an edge never holds the fleet's token; its own token routes (the autostart and autostop tests
    above ran on it) and nothing more."""
    for proxy in edge_fleet.info["proxies"]:
        assert edge_fleet.token.encode() not in Path(f"/proc/{proxy['pid']}/environ").read_bytes()
        r = httpx.post(f"{edge_fleet.url}/v1/apps", json={"app_name": "from-an-edge"}, trust_env=False,
                       verify=edge_fleet.verify, headers={"Authorization": f"Bearer {proxy['admin_token']}"})
        assert r.status_code == 403, r.text


def test_the_edge_terminates_tls_with_an_apps_own_certificate(edge_fleet):
    """Issue 15: Fly's certificate endpoints. An app's certificate, uploaded with its key, is checked, its key
    sealed, and every edge presents it for that name (SNI) and routes the name to the app, with
    X-Forwarded-Proto: https. A mismatched pair or a name the certificate does not cover is a 422; a
    removed certificate stops being served."""
    import ssl

    from roost import pki

    f = edge_fleet
    create_app(f, "secure", 1)
    ca = pki.new_ca("Test public CA")
    leaf = pki.issue(ca, ["www.secure.test"])
    other = pki.issue(ca, ["www.secure.test"])
    base = "/v1/apps/secure/certificates"
    r = f.api.post(f"{base}/custom", json={"hostname": "www.secure.test", "fullchain": leaf.cert.decode(),
                                           "private_key": other.key.decode()})
    assert r.status_code == 422 and "not the key" in r.json()["error"]
    r = f.api.post(f"{base}/custom", json={"hostname": "api.secure.test", "fullchain": leaf.cert.decode(),
                                           "private_key": leaf.key.decode()})
    assert r.status_code == 422 and "not api.secure.test" in r.json()["error"]
    chain, key = f.spec.data_dir / "www.pem", f.spec.data_dir / "www.key"
    chain.write_bytes(leaf.cert)
    key.write_bytes(leaf.key)
    added = f.roost("certs", "add", "www.secure.test", "-a", "secure", "--fullchain", str(chain),
                    "--private-key", str(key), "--json")
    assert json.loads(added.stdout)["status"] == "Ready" and "PRIVATE" not in added.stdout
    listed = f.api.get(base).json()
    assert [c["hostname"] for c in listed["certificates"]] == ["www.secure.test"]
    assert f.api.get(f"{base}/www.secure.test").json()["certificates"][0]["source"] == "custom"
    assert f.api.post("/v1/apps/secure/certificates/acme", json={"hostname": "x.secure.test"}).status_code == 422
    db = f.stored_bytes()
    assert leaf.key.split(b"\n")[1] not in db  # the key is sealed at rest

    client_ctx = ssl.create_default_context()
    client_ctx.load_verify_locations(cadata=ca.cert.decode())
    tls_port = f.edge("ams")["tls_port"]

    def fetch() -> httpx.Response:
        with httpx.Client(verify=client_ctx, trust_env=False, timeout=10) as c:
            # To the edge's address, asking for the app's name: the SNI and Host a real client would send.
            return c.get(f"https://127.0.0.1:{tls_port}/headers", headers={"Host": "www.secure.test"},
                         extensions={"sni_hostname": "www.secure.test"})

    headers = f.wait_for(lambda: _try(lambda: fetch().json()), timeout=10, what="the edge to serve the name")
    assert headers["x-forwarded-proto"] == "https" and headers["host"] == "www.secure.test"
    assert f.api.delete(f"{base}/www.secure.test").status_code == 204
    f.wait_for(lambda: _try(fetch) is None, timeout=10, what="the removed certificate to go")
