"""The agent's side of the lease (issue 13: time is an input): a host that has heard from neither the
control plane nor most of its peers for longer than the lease fences its watched machines, once, and not a
moment before; contact again clears it. Driven by a virtual clock, without threads or sockets."""

from __future__ import annotations

import httpx

from roost.agent.uplink import Heartbeat
from roost.testing.clock import VirtualClock


def heartbeat(clock: VirtualClock, fenced: list[str]) -> Heartbeat:
    hb = Heartbeat("http://127.0.0.1:1", "t", {"id": "h1"}, 0.25, snapshot=dict, on_reply=lambda _r: None,
                   fence=fenced.extend, clock=clock)
    hb.watched = ["w1", "w2"]
    hb.peers = [{"agent_url": "http://127.0.0.1:2"}]
    return hb


def test_the_lease_runs_out_exactly_once_and_contact_renews_it() -> None:
    clock, fenced = VirtualClock(), []
    hb = heartbeat(clock, fenced)
    hb.contact()
    clock.now += 0.99
    assert hb.check_lease() == [] and fenced == [], "within the lease (1.0 s): keep running"
    clock.now += 0.02
    assert hb.check_lease() == ["w1", "w2"] and fenced == ["w1", "w2"]
    clock.now += 5.0
    assert hb.check_lease() == [], "fenced once, not again on every tick"
    hb.contact()
    hb.watched = ["w1", "w2", "w3"]
    clock.now += 0.5
    assert hb.check_lease() == []
    clock.now += 0.6
    assert hb.check_lease() == ["w1", "w2", "w3"], "after contact the lease counts from it again"


def test_a_host_without_peers_never_fences() -> None:
    # No peer means no other host where a standby could run: nothing to protect against.
    clock, fenced = VirtualClock(), []
    hb = heartbeat(clock, fenced)
    hb.peers = []
    hb.contact()
    clock.now += 60.0
    assert hb.check_lease() == [] and fenced == []


def test_the_server_lease_in_a_reply_sets_the_bound() -> None:
    clock, fenced = VirtualClock(), []
    hb = heartbeat(clock, fenced)
    hb.apply_lease(3.0)
    hb.contact()
    clock.now += 2.9
    assert hb.check_lease() == []
    clock.now += 0.2
    assert hb.check_lease() == ["w1", "w2"]


def test_the_control_planes_timings_in_a_heartbeat_reply_are_applied_and_nonsense_ignored() -> None:
    """`roost server --lease 3 --peer-probe-timeout 0.9` reaches every agent in its heartbeat replies (a WAN
    fleet needs probes longer than three RTTs); values a broken or hostile reply carries are not taken."""
    replies: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=replies.pop(0))

    clock, fenced = VirtualClock(), []
    hb = heartbeat(clock, fenced)
    hb.registered.set()
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        replies.append({"lease": 3.0, "peer_probe_timeout": 0.9})
        assert hb._beat(client, 1)
        assert (hb.lease.lease, hb.lease.probe_timeout) == (3.0, 0.9)
        for bad in ({"lease": -1, "peer_probe_timeout": 0.5}, {"lease": "soon"},
                    {"lease": 2.0, "peer_probe_timeout": 3600}, {"lease": 2.0, "peer_probe_timeout": "x"}):
            replies.append(bad)
            assert hb._beat(client, 1)
        assert (hb.lease.lease, hb.lease.probe_timeout) == (2.0, 0.9), "a good lease kept, bad probes dropped"
