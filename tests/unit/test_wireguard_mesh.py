"""The WireGuard mesh's pure core (privnet/mesh.py): which peers a host gets from the control plane's records,
what it accepts from a reply, and the `wg syncconf` text it applies."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from roost.privnet import mesh


def key(n: int) -> str:
    return base64.b64encode(bytes([n]) * 32).decode()


@dataclass
class H:
    id: str
    address: str
    machine_net: str
    wireguard_key: str = ""
    wireguard_port: int = 0


HOSTS = [H("syd-1", "10.0.2.1", "10.201.2.0/24", key(2), 51820),
         H("ewr-1", "10.0.1.1", "10.201.1.0/24", key(1), 51820),
         H("ewr-2", "10.0.1.2", "10.201.3.0/24"),  # not in the mesh (no key): left out
         H("v6-1", "fd00::5", "10.201.4.0/24", key(4), 4000)]


def test_the_mesh_holds_every_host_with_a_key_port_and_subnet_by_id() -> None:
    peers = mesh.peers_of(HOSTS)
    assert [p.host_id for p in peers] == ["ewr-1", "syd-1", "v6-1"]
    assert peers[0].endpoint == "10.0.1.1:51820" and peers[2].endpoint == "[fd00::5]:4000"
    assert peers[1].gateway == "10.201.2.1"
    assert mesh.digest(peers) == mesh.digest(list(peers)), "the same records, the same digest"
    assert mesh.digest(peers) != mesh.digest(peers[:2])


def test_a_reply_is_sent_only_when_the_host_has_another_mesh() -> None:
    peers = mesh.peers_of(HOSTS)
    reply = mesh.reply_for(peers, None)
    assert reply is not None and len(reply["peers"]) == 3
    assert mesh.reply_for(peers, reply["digest"]) is None


def test_a_host_takes_its_peers_but_never_itself_a_bad_key_or_a_subnet_already_taken() -> None:
    good = [p.to_api() for p in mesh.peers_of(HOSTS)]
    hostile = [
        {**good[1], "host_id": "thief", "subnet": "10.201.1.0/25"},  # inside ewr-1's own subnet
        {**good[1], "host_id": "twin", "subnet": "10.201.2.128/25"},  # inside syd-1's, given first
        {**good[1], "host_id": "badkey", "subnet": "10.201.9.0/24", "public_key": "not a key"},
        {**good[1], "host_id": "badport", "subnet": "10.201.8.0/24", "endpoint": "10.0.0.9:0"},
        {"host_id": "partial"}, "junk",
    ]
    peers = mesh.from_api([*good, *hostile], "ewr-1", "10.201.1.0/24")
    assert [p.host_id for p in peers] == ["syd-1", "v6-1"]
    assert mesh.from_api("junk", "ewr-1", "10.201.1.0/24") == []


def test_the_config_names_every_peer_with_its_subnet_and_a_keepalive() -> None:
    peers = mesh.from_api([p.to_api() for p in mesh.peers_of(HOSTS)], "ewr-1", "10.201.1.0/24")
    text = mesh.config("PRIVATE", 51820, peers)
    assert text.startswith("[Interface]\nPrivateKey = PRIVATE\nListenPort = 51820\n")
    assert text.count("[Peer]") == 2 and "AllowedIPs = 10.201.2.0/24" in text and "Endpoint = [fd00::5]:4000" in text
    assert f"PersistentKeepalive = {mesh.KEEPALIVE}" in text


def test_public_keys_are_checked_and_interface_names_fit_and_differ() -> None:
    assert mesh.key_error(key(7)) is None
    assert mesh.key_error("x" * 44) is not None and mesh.key_error(None) is not None
    assert mesh.key_error(base64.b64encode(b"\0" * 31 + b"\0\0").decode()[:44]) is not None
    names = {mesh.interface_name(h) for h in ("ewr-1", "ewr-2", "a" * 200)}
    assert len(names) == 3 and all(len(n) <= 15 for n in names)
