"""Transcripts of the edge's request lifecycle (proxy/exchange.py), without a socket: events go in, and the
commands the session gives its driver are recorded, as h11's and mitmproxy's tests do theirs. The routing
table, loads and metrics are the real ones; the clock is a number the test moves."""

from __future__ import annotations

from typing import Any

import pytest

from roost.balancer.services import ServiceSpec
from roost.proxy.exchange import HOLD_HEAD_SECONDS, ClientSession, Phase
from roost.proxy.forwarding import Heads, HttpSettings, Replay
from roost.proxy.h1 import H1Parser
from roost.proxy.loads import Loads
from roost.proxy.metrics import Metrics
from roost.proxy.table import MachineRoute, RoutingTable

GET = b"GET /%s HTTP/1.1\r\nHost: web.localhost\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"


class Driver:
    """Records the session's commands; keeps one timer the way the real driver does."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.timer_at: float | None = None
        self.reading = True
        self.upstream_reading = True

    def write(self, data: bytes) -> None:
        self.log.append(("write", data))

    def close(self) -> None:
        self.log.append(("close",))

    def pause_reading(self) -> None:
        self.reading = False
        self.log.append(("pause_reading",))

    def resume_reading(self) -> None:
        self.reading = True
        self.log.append(("resume_reading",))

    def set_timer(self, deadline: float) -> None:
        if self.timer_at is None or deadline < self.timer_at:
            self.timer_at = deadline

    def route(self, app: str, prefer: str, force: str, replay: Replay | None, exclude: set[str],
              budget: float) -> None:
        self.log.append(("route", app, prefer, force, replay.target if replay else None, sorted(exclude)))

    def connect(self, machine: MachineRoute, port: int) -> None:
        self.log.append(("connect", machine.id, port))

    def send_request(self, data: bytes, head_only: bool) -> None:
        self.log.append(("send_request", data, head_only))

    def send(self, data: bytes) -> None:
        self.log.append(("send", data))

    def release(self, reuse: bool) -> None:
        self.log.append(("release", reuse))

    def pause_upstream(self) -> None:
        self.upstream_reading = False
        self.log.append(("pause_upstream",))

    def resume_upstream(self) -> None:
        self.upstream_reading = True
        self.log.append(("resume_upstream",))

    def tunnel(self) -> None:
        self.log.append(("tunnel",))

    def take(self) -> list[tuple[Any, ...]]:
        log, self.log = self.log, []
        return log

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.take()]


class Machine(H1Parser):
    """The machine's side: its answer's bytes parsed and given to the session as the driver would."""

    def __init__(self, session: ClientSession) -> None:
        super().__init__(response=True)
        self.session = session

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.session.upstream_head(self.ready.popleft())

    def on_body(self, body: bytes) -> None:
        self.session.upstream_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.session.upstream_complete()

    def answer(self, data: bytes) -> None:
        self.feed(data)
        self.session.upstream_read()


class Rig:
    def __init__(self, machines: tuple[str, ...] = ("m1", "m2"), **settings: Any) -> None:
        self.now = 0.0
        self.table = RoutingTable()
        http_options = {"max_request_body_size": settings.pop("body_limit")} if "body_limit" in settings else {}
        objects: list[dict[str, Any]] = [
            {"kind": "host", "key": "h", "object": {"id": "h", "region": "ams", "status": "ok"}},
            {"kind": "app", "key": "web", "object": {"name": "web", "primary_region": "ams"}}]
        for i, mid in enumerate(machines):
            objects.append({"kind": "machine", "key": mid, "object": {
                "id": mid, "app": "web", "region": "ams", "state": "started", "private_ip": "127.0.0.1",
                "roost": {"host_id": "h", "ports": {"8080": 9000 + i}},
                "config": {"services": [{"protocol": "tcp", "internal_port": 8080, "ports": [
                    {"port": 80, "handlers": ["http"], "http_options": http_options}]}]}}})
        self.table.reset(objects, 1)
        self.settings = HttpSettings(**settings)
        self.metrics = Metrics()
        self.loads = Loads()
        self.io = Driver()
        self.session = ClientSession(self.io, Heads(self.settings, self.metrics), self.settings, self.table,
                                     self.loads, self.metrics, lambda: self.now, "203.0.113.7", 80)

    def target(self, mid: str) -> tuple[MachineRoute, ServiceSpec]:
        return next(pair for pair in self.table.http_targets("web") if pair[0].id == mid)

    def route_to(self, mid: str, reused: bool = False) -> Machine:
        """The router chose `mid` and a connection to it is ready."""
        self.session.routed(*self.target(mid))
        self.session.upstream_ready(reused)
        return Machine(self.session)

    def advance(self, seconds: float) -> None:
        """Time passes; the timer fires if it is due (and again if the session re-arms it for now)."""
        self.now += seconds
        while self.io.timer_at is not None and self.io.timer_at <= self.now:
            self.io.timer_at = None
            self.session.timer()


@pytest.fixture
def rig() -> Rig:
    return Rig()


def written(log: list[tuple[Any, ...]]) -> bytes:
    return b"".join(entry[1] for entry in log if entry[0] == "write")


# ---- the common case ----

def test_a_get_is_routed_sent_answered_in_one_write_and_its_connection_pooled(rig: Rig) -> None:
    rig.session.client_data(GET % b"a")
    assert rig.io.take() == [("route", "web", "", "", None, [])]
    rig.session.routed(*rig.target("m1"))
    assert rig.io.take() == [("connect", "m1", 9000)]
    assert rig.loads.get("m1") == 1
    rig.session.upstream_ready(reused=False)
    [(kind, head, head_only)] = rig.io.take()
    assert kind == "send_request" and not head_only
    assert head.startswith(b"GET /a HTTP/1.1\r\nHost: web.localhost\r\n")
    for header in (b"X-Forwarded-For: 203.0.113.7", b"Fly-Client-IP: 203.0.113.7", b"Fly-Region: ams",
                   b"Fly-Request-Id: ", b"Via: 1.1 roost", b"X-Forwarded-Port: 80"):
        assert header in head
    Machine(rig.session).answer(OK)
    log = rig.io.take()
    assert [entry[0] for entry in log] == ["write", "release"]  # head and body in one write
    assert log[0][1].startswith(b"HTTP/1.1 200 OK\r\n") and log[0][1].endswith(b"\r\n\r\nhi")
    assert log[1] == ("release", True)
    assert rig.loads.get("m1") == 0 and rig.session.phase is Phase.IDLE
    assert rig.metrics.requests[("web", "m1", "200")] == 1


def test_pipelined_requests_are_answered_in_order_one_at_a_time(rig: Rig) -> None:
    rig.session.client_data((GET % b"1") + (GET % b"2"))
    assert rig.io.kinds() == ["route"]  # the second waits for the first's answer
    rig.route_to("m1").answer(OK)
    log = rig.io.take()
    assert [e[0] for e in log] == ["connect", "send_request", "write", "release", "route"]
    rig.route_to("m2").answer(OK)
    assert rig.io.kinds() == ["connect", "send_request", "write", "release"]


def test_many_pipelined_answers_at_once_do_not_recurse(rig: Rig) -> None:
    rig.session.client_data(b"GET / HTTP/1.1\r\nHost: nowhere.localhost\r\n\r\n" * 2000)
    log = rig.io.take()
    assert written(log).count(b"404 Not Found") == 2000 and ("close",) not in log


# ---- retries ----

def test_a_get_reset_before_any_answer_is_retried_on_another_machine(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.io.take()
    rig.route_to("m1")
    rig.io.take()
    rig.session.upstream_lost(aborted=False, answered=False)
    assert rig.io.take() == [("route", "web", "", "", None, ["m1"])]
    assert rig.table.penalized("m1", rig.table.clock.monotonic())  # a fresh connection refused: sits out
    rig.route_to("m2").answer(OK)
    assert b"200 OK" in written(rig.io.take())
    assert rig.metrics.retries.labels("web", "reset-before-response")._value.get() == 1


def test_a_post_reset_before_any_answer_is_not_retried(rig: Rig) -> None:
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\n\r\nx")
    rig.io.take()
    rig.route_to("m1")
    rig.io.take()
    rig.session.upstream_lost(aborted=False, answered=False)
    out = written(rig.io.take())
    assert out.startswith(b"HTTP/1.1 502") and b"PC02" in out


def test_a_refused_connect_is_retried_whatever_the_method(rig: Rig) -> None:
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 1\r\n\r\nx")
    rig.io.take()
    rig.session.routed(*rig.target("m1"))
    rig.session.connect_failed()
    assert rig.io.take()[-1] == ("route", "web", "", "", None, ["m1"])
    [entry] = [e for e in (rig.route_to("m2") and rig.io.take()) if e[0] == "send_request"]
    assert entry[1].endswith(b"\r\n\r\nx")  # the kept body goes to the second machine


def test_a_lost_host_retries_a_get_and_fails_a_post_with_pc03(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1")
    rig.io.take()
    rig.session.upstream_lost(aborted=True, answered=False)
    assert rig.io.take() == [("route", "web", "", "", None, ["m1"])]
    post = Rig()
    post.session.client_data(b"DELETE / HTTP/1.1\r\nHost: web.localhost\r\n\r\n")  # idempotent: retried
    post.route_to("m1")
    post.session.upstream_lost(aborted=True, answered=False)
    assert post.io.take()[-1][0] == "route"
    patch = Rig()
    patch.session.client_data(b"PATCH / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 0\r\n\r\n")
    patch.route_to("m1")
    patch.session.upstream_lost(aborted=True, answered=False)
    assert b"PC03" in written(patch.io.take())


def test_a_machine_dying_after_its_head_is_retried_for_a_get(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1").answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")  # the head alone: held
    assert "write" not in rig.io.kinds()
    rig.session.upstream_lost(aborted=False, answered=True)
    assert rig.io.take()[-1] == ("route", "web", "", "", None, ["m1"])


def test_attempts_are_bounded(rig: Rig) -> None:
    rig.settings.max_attempts = 3
    rig.session.client_data(GET % b"")
    for _ in range(3):
        rig.session.routed(*rig.target("m1"))
        rig.session.connect_failed()
    out = written(rig.io.take())
    assert out.startswith(b"HTTP/1.1 502") and b"PR04" in out and b"after 3 attempts" in out


# ---- fly-replay ----

def test_fly_replay_sends_the_request_elsewhere_and_hides_the_first_answer(rig: Rig) -> None:
    rig.session.client_data(b"POST /w HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 4\r\n\r\ndata")
    rig.io.take()
    rig.route_to("m1").answer(b"HTTP/1.1 409 Conflict\r\nfly-replay: instance=m2\r\nContent-Length: 4\r\n\r\nnope")
    log = rig.io.take()
    assert ("release", True) in log and log[-1] == ("route", "web", "", "", "m2", [])
    rig.route_to("m2")
    [request] = [e[1] for e in rig.io.take() if e[0] == "send_request"]
    assert b"fly-replay-src: instance=m1;region=ams;" in request and request.endswith(b"data")
    Machine(rig.session).answer(OK)
    out = written(rig.io.take())
    assert out.startswith(b"HTTP/1.1 200") and b"nope" not in out


def test_replays_are_bounded(rig: Rig) -> None:
    rig.settings.max_replays = 2
    rig.session.client_data(GET % b"")
    for _ in range(3):
        rig.route_to("m1").answer(b"HTTP/1.1 204 No Content\r\nfly-replay: instance=m1\r\n\r\n")
    assert b"PA02" in written(rig.io.take())


def test_a_failed_replay_route_is_pa03(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1").answer(b"HTTP/1.1 204 No Content\r\nfly-replay: region=syd\r\n\r\n")
    rig.session.route_failed(503, "PR01", "no machine there")
    out = written(rig.io.take())
    assert out.startswith(b"HTTP/1.1 502") and b"PA03" in out and b"fly-replay to syd" in out


# ---- autostart and waiting: the router holds the request ----

def test_a_request_waits_for_its_machine_however_long_the_router_takes(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.io.take()
    rig.advance(5.0)  # a machine booting: no timer runs against the request meanwhile
    assert rig.io.take() == [] and rig.session.phase is Phase.ROUTING
    rig.route_to("m1").answer(OK)
    assert b"200 OK" in written(rig.io.take())


def test_a_failed_autostart_is_answered_with_its_code(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.session.route_failed(503, "PM03", "timed out waiting for machine m1 to start")
    out = written(rig.io.take())
    assert out.startswith(b"HTTP/1.1 503") and b"X-Roost-Error: PM03" in out
    assert rig.session.phase is Phase.IDLE  # the connection stays


def test_routing_headers_reach_the_router(rig: Rig) -> None:
    rig.session.client_data(b"GET / HTTP/1.1\r\nHost: web.localhost\r\nFly-Prefer-Region: ewr\r\n"
                            b"Fly-Force-Instance-Id: m2\r\n\r\n")
    assert rig.io.take() == [("route", "web", "ewr", "m2", None, [])]
    other = Rig()
    other.session.client_data(b"GET / HTTP/1.1\r\nHost: web.localhost\r\nFly-Force-Region: syd\r\n\r\n")
    assert other.io.take() == [("route", "web", "", "", "syd", [])]


# ---- upgrades ----

def test_a_websocket_becomes_a_tunnel_after_the_101(rig: Rig) -> None:
    rig.session.client_data(b"GET /ws HTTP/1.1\r\nHost: web.localhost\r\nConnection: Upgrade\r\n"
                            b"Upgrade: websocket\r\n\r\nearly")
    rig.io.take()
    rig.route_to("m1")
    [request] = [e[1] for e in rig.io.take() if e[0] == "send_request"]
    assert b"Connection: Upgrade\r\nUpgrade: websocket\r\n" in request
    rig.session.client_data(b"+more")  # before the 101: held
    assert rig.io.take() == []
    Machine(rig.session).answer(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                                b"Upgrade: websocket\r\n\r\n")
    log = rig.io.take()
    assert log[0][0] == "write" and log[0][1].startswith(b"HTTP/1.1 101")
    assert ("tunnel",) in log and ("send", b"early+more") in log
    rig.session.client_data(b"ping")
    rig.session.tunnel_data(b"pong")
    assert rig.io.take() == [("send", b"ping"), ("write", b"pong")]
    rig.advance(rig.settings.tunnel_idle_timeout + 1)
    assert ("close",) in rig.io.take()


def test_an_upgrade_refused_by_the_machine_closes_after_its_answer(rig: Rig) -> None:
    rig.session.client_data(b"GET /ws HTTP/1.1\r\nHost: web.localhost\r\nConnection: Upgrade\r\n"
                            b"Upgrade: websocket\r\n\r\n")
    rig.route_to("m1").answer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno")
    log = rig.io.take()
    assert written(log).startswith(b"HTTP/1.1 400") and log[-1] == ("close",)


# ---- request bodies ----

def test_expect_100_continue_is_answered_before_the_body_and_the_body_kept(rig: Rig) -> None:
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5\r\n"
                            b"Expect: 100-continue\r\n\r\n")
    assert rig.io.take() == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    rig.session.client_data(b"hel")
    assert rig.io.take() == []  # not routed before the body is whole (a slow body holds no machine)
    rig.session.client_data(b"lo")
    assert rig.io.kinds() == ["route"]
    rig.route_to("m1")
    [request] = [e[1] for e in rig.io.take() if e[0] == "send_request"]
    assert b"expect" not in request.lower() and request.endswith(b"Content-Length: 5\r\n\r\nhello")


def test_a_body_past_the_buffer_streams_with_backpressure_and_is_not_retried() -> None:
    rig = Rig(buffer_limit=10)
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"f\r\n0123456789abcde\r\n")
    assert rig.io.kinds() == ["route", "pause_reading"]  # nowhere to put more until connected
    rig.route_to("m1")
    log = rig.io.take()
    [request] = [e[1] for e in log if e[0] == "send_request"]
    assert b"Transfer-Encoding: chunked\r\n\r\nf\r\n0123456789abcde\r\n" in request
    assert ("resume_reading",) in log
    rig.session.upstream_writable(False)  # the machine reads slowly: so does the edge
    assert rig.io.take() == [("pause_reading",)]
    rig.session.upstream_writable(True)
    rig.session.client_data(b"3\r\nxyz\r\n0\r\n\r\n")
    assert rig.io.take() == [("resume_reading",), ("send", b"3\r\nxyz\r\n"), ("send", b"0\r\n\r\n")]
    rig.session.upstream_lost(aborted=False, answered=False)
    assert b"PC02" in written(rig.io.take())  # never retried: the body is gone


def test_a_content_length_over_the_apps_limit_is_413_before_any_byte_is_read() -> None:
    rig = Rig(body_limit=1000)
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 5000\r\n"
                            b"Expect: 100-continue\r\n\r\n")
    log = rig.io.take()
    out = written(log)
    assert out.startswith(b"HTTP/1.1 413") and b"PB01" in out and b"100 Continue" not in out
    assert log[-1] == ("close",)


def test_a_chunked_body_over_the_apps_limit_is_413_once_past_it() -> None:
    rig = Rig(body_limit=1000)
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
    rig.session.client_data(b"200\r\n" + b"x" * 512 + b"\r\n")
    assert rig.io.take() == []
    rig.session.client_data(b"200\r\n" + b"x" * 512 + b"\r\n")
    log = rig.io.take()
    assert written(log).startswith(b"HTTP/1.1 413") and log[-1] == ("close",)


# ---- answers ----

def test_a_head_answer_has_no_body_whatever_its_headers_say(rig: Rig) -> None:
    rig.session.client_data(b"HEAD / HTTP/1.1\r\nHost: web.localhost\r\n\r\n")
    rig.io.take()
    rig.route_to("m1")
    assert [e[2] for e in rig.io.take() if e[0] == "send_request"] == [True]
    Machine(rig.session).answer(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")
    log = rig.io.take()
    assert b"Content-Length: 11" in written(log) and ("release", True) in log


def test_a_chunked_answer_stays_chunked_and_its_head_waits_briefly_for_the_body(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    machine = rig.route_to("m1")
    rig.io.take()
    machine.answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert rig.io.take() == [] and rig.io.timer_at == pytest.approx(HOLD_HEAD_SECONDS)
    rig.advance(HOLD_HEAD_SECONDS)  # no body byte yet: the head goes alone
    head = written(rig.io.take())
    assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head
    machine.answer(b"3\r\nabc\r\n0\r\n\r\n")
    assert written(rig.io.take()) == b"3\r\nabc\r\n0\r\n\r\n"


def test_a_body_delimited_by_the_end_of_the_connection_ends_the_client_connection_too(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1").answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
    rig.session.upstream_lost(aborted=False, answered=True)
    log = rig.io.take()
    assert written(log).endswith(b"until the end") and log[-1] == ("close",)


def test_interim_answers_are_not_passed_on(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    machine = rig.route_to("m1")
    rig.io.take()
    machine.answer(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
    assert rig.io.take() == []
    machine.answer(OK)
    assert written(rig.io.take()).startswith(b"HTTP/1.1 200")


def test_a_slow_client_holds_the_machine_back(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1")
    rig.io.take()
    rig.session.client_writable(False)
    rig.session.client_writable(True)
    assert rig.io.take() == [("pause_upstream",), ("resume_upstream",)]


def test_a_client_ending_its_stream_gets_its_answer_then_the_connection_closes(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.session.client_eof()
    rig.route_to("m1").answer(OK)
    log = rig.io.take()
    assert written(log).endswith(b"hi") and log[-1] == ("close",)


# ---- limits and timeouts ----

def test_garbage_is_400_then_closed(rig: Rig) -> None:
    rig.session.client_data(b"\x16\x03\x01 not http\r\n\r\n")
    log = rig.io.take()
    assert written(log).startswith(b"HTTP/1.1 400") and log[-1] == ("close",)


def test_a_head_has_its_timeout_from_its_first_byte(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1").answer(OK)
    rig.io.take()
    rig.advance(10)
    rig.session.client_data(b"GET / HTTP/1.1\r\n")
    for _ in range(5):  # a line every 5 s does not push the deadline back
        rig.advance(5)
        rig.session.client_data(b"X-Slow: 1\r\n")
    rig.advance(rig.settings.header_timeout - 25)
    assert rig.io.take()[-1] == ("close",) and rig.session.phase is Phase.CLOSED


def test_an_idle_keep_alive_connection_is_closed(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1").answer(OK)
    rig.io.take()
    rig.advance(rig.settings.idle_timeout - 1)
    assert rig.io.take() == []
    rig.advance(1)
    assert rig.io.take() == [("close",)]


def test_a_silent_machine_is_504_and_the_connection_kept(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    rig.route_to("m1")
    rig.io.take()
    rig.advance(rig.settings.upstream_timeout)
    log = rig.io.take()
    assert log[0] == ("release", False) and b"504" in written(log) and b"PU01" in written(log)
    assert rig.session.phase is Phase.IDLE and rig.loads.get("m1") == 0


def test_a_stalled_body_is_cut(rig: Rig) -> None:
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 10\r\n\r\nabc")
    rig.advance(rig.settings.body_timeout)
    assert rig.io.take() == [("close",)]


def test_an_answer_that_stalls_mid_body_is_cut(rig: Rig) -> None:
    rig.session.client_data(GET % b"")
    machine = rig.route_to("m1")
    machine.answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    rig.io.take()
    rig.advance(rig.settings.body_timeout)
    assert rig.io.take() == [("release", False), ("close",)]
    assert rig.loads.get("m1") == 0


def test_an_unknown_app_is_404_and_the_connection_kept(rig: Rig) -> None:
    rig.session.client_data(b"GET / HTTP/1.1\r\nHost: ghost.localhost\r\n\r\n")
    out = written(rig.io.take())
    assert out.startswith(b"HTTP/1.1 404") and b"PR00" in out and rig.session.phase is Phase.IDLE


def test_past_the_edges_body_budget_a_body_streams_instead_of_being_held() -> None:
    rig = Rig(body_budget=100)
    other = Rig(body_budget=100)
    other.session.budget = rig.session.budget  # two connections of one edge
    rig.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 200\r\n\r\n" + b"a" * 80)
    assert rig.io.take() == [] and rig.session.budget.used == 80  # held, for a retry
    other.session.client_data(b"POST / HTTP/1.1\r\nHost: web.localhost\r\nContent-Length: 200\r\n\r\n" + b"b" * 40)
    assert other.io.kinds() == ["route", "pause_reading"]  # over the budget: streams as soon as routed
    other.route_to("m1")
    assert rig.session.budget.used == 80
    rig.session.client_lost()
    assert rig.session.budget.used == 0  # given back with the connection


# ---- the edge's own answers ----

def test_an_acme_check_is_answered_by_the_edge_and_other_tokens_go_to_the_app(rig: Rig) -> None:
    """Issue 15: while the control plane's ACME order runs, the edge answers the CA's http-01 check for it
    (RFC 8555 8.3) on an app's hostname; a token that is not the control plane's is the app's to answer;
    an app's own certificate hostname routes to that app."""
    from roost.proxy.certstore import CertStore

    certs = CertStore()
    certs.apps = {"www.web.test": "web"}
    certs.challenges = {"tok1": "tok1.thumbprint"}
    rig.session.heads.take_certificates(certs)
    rig.session.client_data(b"GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: www.web.test\r\n\r\n")
    log = rig.io.take()
    assert [e[0] for e in log] == ["write"]
    assert log[0][1].startswith(b"HTTP/1.1 200 OK\r\n") and log[0][1].endswith(b"\r\n\r\ntok1.thumbprint")
    rig.session.client_data(b"GET /.well-known/acme-challenge/other HTTP/1.1\r\nHost: www.web.test\r\n\r\n")
    assert rig.io.take() == [("route", "web", "", "", None, [])]
