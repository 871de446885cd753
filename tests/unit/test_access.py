"""Who may do what (core/access.py), and tokens made, found, expired and revoked (server/tokens.py)."""

from __future__ import annotations

import pytest

from roost.core.access import ADMIN, Identity, may_push_image, refusal
from roost.core.errors import RoostError
from roost.core.model import App
from roost.server.state import ClusterState
from roost.server.tokens import TokenService
from roost.server.watch import WatchHub
from roost.testing.clock import VirtualClock
from roost.testing.memstore import MemoryStore

DEPLOY = Identity("deploy", "web", "t1")
READONLY = Identity("readonly", token_id="t2")
HOST = Identity("host", token_id="t3", host="ams-1")
JOIN = Identity("join", token_id="t4")


@pytest.mark.parametrize(("who", "method", "path", "status"), [
    (ADMIN, "POST", "/v1/hosts/h1/heartbeat", None),
    (Identity("org", token_id="t0"), "DELETE", "/v1/apps/web", None),
    (DEPLOY, "GET", "/v1/apps/web/machines", None),
    (DEPLOY, "POST", "/v1/apps/web/machines/abc/start", None),
    (DEPLOY, "POST", "/v1/apps/web/secrets", None),
    (DEPLOY, "GET", "/v1/apps", None),  # filtered to its app by the handler
    (DEPLOY, "GET", "/v1/apps/other", 404),  # as if it did not exist
    (DEPLOY, "POST", "/v1/apps/other/machines", 404),
    (DEPLOY, "POST", "/v1/apps", 403),
    (DEPLOY, "DELETE", "/v1/apps/web", 403),
    (DEPLOY, "POST", "/v1/apps/web/deploy_token", 403),
    (DEPLOY, "GET", "/v1/hosts", 403),
    (DEPLOY, "GET", "/v1/watch", 403),
    (DEPLOY, "POST", "/v1/proxies", 403),
    (DEPLOY, "GET", "/v1/tokens", 403),
    (DEPLOY, "POST", "/v1/images", None),
    (DEPLOY, "GET", "/v1/platform/regions", None),
    (DEPLOY, "POST", "/v1/platform/placements", None),  # a question asked with a body
    (READONLY, "POST", "/v1/platform/placements", None),
    (READONLY, "POST", "/v1/apps/web/secretkeys/K/sign", 403),
    (DEPLOY, "GET", "/v1/orgs/personal/machines", 403),
    (DEPLOY, "GET", "/v1/tokens/current", None),
    (READONLY, "GET", "/v1/apps/other/machines", None),
    (READONLY, "GET", "/v1/watch", None),
    (READONLY, "POST", "/v1/apps/web/machines", 403),
    (READONLY, "DELETE", "/v1/apps/web/machines/abc", 403),
    (READONLY, "GET", "/v1/tokens", 403),
    (HOST, "POST", "/v1/hosts", None),  # its own registration (the handler checks the body's id)
    (HOST, "POST", "/v1/hosts/ams-1/heartbeat", None),
    (HOST, "POST", "/v1/hosts/ams-1/reports", None),
    (HOST, "POST", "/v1/hosts/ams-2/heartbeat", 403),  # another host's
    (HOST, "POST", "/v1/hosts/ams-1/cordon", 403),
    (HOST, "GET", "/v1/images/blobs/sha256:abc", None),
    (HOST, "GET", "/v1/apps", 403),  # a stolen host credential is not an operator
    (HOST, "GET", "/v1/watch", 403),  # the full feed carries configs
    (HOST, "GET", "/v1/watch/names", None),  # who is where, for its `.internal` resolver
    (HOST, "GET", "/v1/watch/names/x", 403),
    (HOST, "POST", "/v1/hosts/join", 403),
    (JOIN, "POST", "/v1/hosts/join", None),
    (JOIN, "GET", "/v1/apps", 403),
])
def test_the_rule(who: Identity, method: str, path: str, status: int | None) -> None:
    refused = refusal(who, method, path)
    assert (refused[0] if refused else None) == status, refused


def test_a_deploy_token_pushes_its_own_apps_images_only() -> None:
    assert may_push_image(DEPLOY, "web") and may_push_image(DEPLOY, "web/worker")
    assert not may_push_image(DEPLOY, "webby") and not may_push_image(DEPLOY, "other")
    assert may_push_image(ADMIN, "anything") and not may_push_image(READONLY, "web")


async def test_tokens_are_found_by_their_secret_until_revoked_or_expired() -> None:
    clock = VirtualClock()
    state = ClusterState(MemoryStore(), WatchHub(), inline=True)
    state.load()
    await state.save(App(name="web", id="app_web", org_slug="personal", created_at=0.0))
    tokens = TokenService(state, "admin-secret", clock)
    assert tokens.identify(b"admin-secret") is ADMIN
    token, secret = await tokens.create("deploy", "web", "ci", "1h")
    assert secret.startswith("rt1_") and secret not in repr(state.store.objects)  # type: ignore[attr-defined]
    assert tokens.identify(secret.encode()) == Identity("deploy", "web", token.id)
    assert tokens.identify(secret.encode()[:-1]) is None and tokens.identify(b"rt1_nope") is None
    other, other_secret = await tokens.create("readonly")
    await tokens.revoke(other.id)
    assert tokens.identify(other_secret.encode()) is None  # refused from the next request on
    clock.now += 3601
    assert tokens.identify(secret.encode()) is None  # expired
    for bad in (("deploy", "nope"), ("admin",), ("readonly", "web"), ("deploy", "web", "", "-5s")):
        with pytest.raises(RoostError):
            await tokens.create(*bad)


EDGE = Identity("edge", token_id="t5")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/watch", None), ("GET", "/v1/hosts", None), ("POST", "/v1/proxies", None),
    ("GET", "/v1/apps/web", None), ("GET", "/v1/apps/web/machines/abc", None),
    ("POST", "/v1/apps/web/machines/abc/start", None), ("POST", "/v1/apps/web/machines/abc/suspend", None),
    ("POST", "/v1/apps/web/machines/abc/update", 403), ("DELETE", "/v1/apps/web/machines/abc", 403),
    ("GET", "/v1/apps/web/secrets", 403), ("GET", "/v1/apps/web/machines/abc/logs", 403),
    ("GET", "/v1/tokens", 403), ("POST", "/v1/apps", 403), ("POST", "/v1/images", 403),
])
def test_an_edge_token_routes_only(method: str, path: str, status: int | None) -> None:
    refused = refusal(EDGE, method, path)
    assert (refused[0] if refused else None) == status, refused


def test_an_agent_knows_its_callers_by_digest_and_lets_each_do_its_part() -> None:
    from roost.agent.credential import EDGE as AS_EDGE
    from roost.agent.credential import OPERATOR, PEER, READER, SERVER, HostCredential, authorize
    from roost.core.access import token_digest

    c = HostCredential("ams-1", "rt1_mine", token_digest(b"admin"))
    assert c.identify(b"control") is None  # not known before the server says so
    assert c.learn({"server_digest": token_digest(b"control"), "edge_digests": [token_digest(b"edge")],
                    "host_digests": [token_digest(b"peer")]})
    assert not c.learn({"server_digest": token_digest(b"control")})  # nothing new to save
    assert c.identify(b"control") == SERVER and c.identify(b"edge") == AS_EDGE and c.identify(b"peer") == PEER
    assert c.identify(b"admin") == OPERATOR and c.identify(b"rt1_mine") is None
    assert authorize(SERVER, "PUT", "/v1/machines/abc") is None
    assert authorize(AS_EDGE, "POST", "/v1/machines/abc/start") is None
    assert authorize(AS_EDGE, "PUT", "/v1/machines/abc") is not None
    assert authorize(AS_EDGE, "POST", "/v1/machines/../start") is not None
    assert authorize(PEER, "POST", "/v1/machines/abc/start") is not None
    assert authorize(OPERATOR, "POST", "/v1/machines/abc/stop") is None  # what an edge may, and /metrics
    assert authorize(OPERATOR, "GET", "/metrics") is None and authorize(OPERATOR, "DELETE", "/v1/machines/abc")
    assert c.identify(b"reader") is None
    c.learn({"reader_digests": [token_digest(b"reader")]})
    assert c.identify(b"reader") == READER and authorize(READER, "GET", "/metrics") is None
    assert authorize(READER, "GET", "/v1/machines") and authorize(AS_EDGE, "GET", "/metrics")
    assert authorize(PEER, "GET", "/metrics")
    c.learn({"edge_digests": []})  # revoked: gone with the next heartbeat answer
    assert c.identify(b"edge") is None


async def test_the_digests_hosts_learn_follow_revocation_and_expiry() -> None:
    clock = VirtualClock()
    state = ClusterState(MemoryStore(), WatchHub(), inline=True)
    state.load()
    tokens = TokenService(state, "admin-secret", clock, control_token="rc1_x")
    short, _ = await tokens.create("edge", expiry="10s")
    long, _ = await tokens.create("edge")
    assert tokens.digests("edge") == sorted([short.digest, long.digest])
    clock.now += 11
    assert tokens.digests("edge") == [long.digest]  # expired, though no token changed
    await tokens.revoke(long.id)
    assert tokens.digests("edge") == [] and tokens.host_view()["server_digest"]
    assert tokens.identify(b"rc1_x") is None  # the control credential opens no API


EXEC = Identity("machine-exec", "web", "t6")


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v1/apps/web/machines", None), ("GET", "/v1/apps/web/machines/abc", None),
    ("POST", "/v1/apps/web/machines/abc/exec", None),
    ("POST", "/v1/apps/other/machines/abc/exec", 404),  # another app is not there, as for a deploy token
    ("POST", "/v1/apps/web/machines/abc/stop", 403), ("POST", "/v1/apps/web/machines", 403),
    ("GET", "/v1/apps/web/secrets", 403), ("GET", "/v1/apps/web/machines/abc/logs", 403),
    ("GET", "/v1/watch", 403), ("GET", "/v1/tokens", 403), ("GET", "/v1/tokens/current", None),
])
def test_a_machine_exec_token_reads_its_apps_machines_and_runs_commands_only(method: str, path: str,
                                                                             status: int | None) -> None:
    refused = refusal(EXEC, method, path)
    assert (refused[0] if refused else None) == status, refused


async def test_app_tokens_need_their_app() -> None:
    state = ClusterState(MemoryStore(), WatchHub(), inline=True)
    state.load()
    await state.save(App(name="web", id="app_web", org_slug="personal", created_at=0.0))
    tokens = TokenService(state, "admin-secret", VirtualClock())
    token, secret = await tokens.create("machine-exec", "web")
    assert tokens.identify(secret.encode()) == Identity("machine-exec", "web", token.id)
    assert tokens.current(Identity("machine-exec", "web", token.id))["tokens"][0]["apps"] == ["web"]
    with pytest.raises(RoostError):
        await tokens.create("machine-exec")
