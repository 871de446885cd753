"""Apps' certificates (server/certificates.py) and the edge's choice of one per name (proxy/certstore.py)."""

from __future__ import annotations

import time

import pytest

from roost import pki
from roost.core.errors import RoostError
from roost.core.model import App
from roost.proxy.certstore import CertStore
from roost.server.certificates import CertificateService, check_hostname, covers
from roost.server.sealing import Keyring
from roost.server.state import ClusterState
from roost.server.watch import WatchHub
from roost.testing.clock import VirtualClock
from roost.testing.memstore import MemoryStore


def test_a_name_is_covered_by_itself_or_one_wildcard_label() -> None:
    assert covers(["www.example.test"], "www.example.test")
    assert covers(["*.example.test"], "api.example.test")
    assert not covers(["*.example.test"], "a.b.example.test") and not covers(["*.example.test"], "example.test")
    assert not covers(["www.example.test"], "api.example.test")
    for bad in ("", "a..b", "-x.test", "x" * 300, "ex ample.test", None, "a/b.test"):
        with pytest.raises(RoostError):
            check_hostname(bad)


async def test_custom_certificates_are_checked_sealed_and_bundled_for_edges() -> None:
    clock = VirtualClock()
    clock.now = time.time()  # certificates are dated: the clock must be near today
    state = ClusterState(MemoryStore(), WatchHub(), inline=True)
    state.load()
    for name in ("web", "other"):
        await state.save(App(name=name, id=f"app_{name}", org_slug="personal", created_at=0.0))
    certs = CertificateService(state, Keyring.fresh(), clock)
    ca = pki.new_ca()
    leaf = pki.issue(ca, ["*.web.test"])
    body = {"hostname": "www.web.test", "fullchain": leaf.cert.decode(), "private_key": leaf.key.decode()}
    detail = await certs.add_custom("web", body)
    assert detail["status"] == "Ready" and detail["hostname"] == "www.web.test"
    stored = state.certificates["web/www.web.test"]
    assert "PRIVATE KEY" not in stored.key_sealed
    with pytest.raises(RoostError) as taken:
        await certs.add_custom("other", body)
    assert taken.value.status == 409  # one name, one app
    with pytest.raises(RoostError) as missing:
        await certs.add_custom("nope", body)
    assert missing.value.status == 404
    bundle = certs.bundle("")
    assert bundle["certificates"][0]["private_key"].startswith("-----BEGIN PRIVATE KEY")
    assert certs.bundle(bundle["version"]) == {"version": bundle["version"], "unchanged": True}
    clock.now += 400 * 86400
    assert certs.show("web", "www.web.test")["status"] == "Expired"
    await certs.forget_app("web")
    assert certs.list("web")["certificates"] == []
    assert certs.bundle(bundle["version"])["certificates"] == []


def test_the_edge_picks_a_certificate_by_name() -> None:
    ca = pki.new_ca()
    store = CertStore()
    seen: list[dict[str, str]] = []
    store.on_change = lambda s: seen.append(dict(s.apps))
    items = []
    for name in ("www.a.test", "*.b.test"):
        pem = pki.issue(ca, [name])
        items.append({"app": name.split(".")[1], "hostname": name, "fullchain": pem.cert.decode(),
                      "private_key": pem.key.decode()})
    items.append({"app": "c", "hostname": "bad.c.test", "fullchain": "junk", "private_key": "junk"})
    store.load({"version": "v1", "certificates": items})
    assert seen == [{"www.a.test": "a", "*.b.test": "b"}]  # the broken one is left out
    assert store.pick("www.a.test") is store.by_name["www.a.test"]
    assert store.pick("API.b.test.") is store.by_name["*.b.test"]
    assert store.pick("x.y.b.test") is None and store.pick(None) is None and store.pick("a.test") is None
