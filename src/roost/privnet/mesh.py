"""The WireGuard mesh between hosts (the private network across the internet): which peers a host has and
what its `wg` interface and routes must say. Pure: the control plane computes the mesh from its host records,
the agent (agent/wireguard.py) applies it.

Every host with `--wireguard-port` registers its public key; its endpoint is its advertised address and that
port, and the addresses it may send from (WireGuard's AllowedIPs) are its machine subnet. A host routes every
other host's machine subnet into its interface, with its own gateway (its subnet's first address) as the
source of what the host itself sends (an edge's connection), so that the peer's AllowedIPs accept it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

KEEPALIVE = 25  # seconds: keeps NAT mappings open, as wg-quick users set it


class MeshHost(Protocol):
    id: str
    address: str
    machine_net: str
    wireguard_key: str
    wireguard_port: int


@dataclass(frozen=True)
class Peer:
    host_id: str
    public_key: str
    endpoint: str  # address:port (IPv6 in brackets)
    subnet: str  # the peer's machine subnet: its AllowedIPs, and what this host routes to it

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.IPv4Network(self.subnet).hosts()))

    def to_api(self) -> dict[str, str]:
        return {"host_id": self.host_id, "public_key": self.public_key, "endpoint": self.endpoint,
                "subnet": self.subnet}


def key_error(key: object) -> str | None:
    """Why `key` is not a WireGuard public key (32 bytes, base64), or None."""
    if not isinstance(key, str) or len(key) != 44:
        return "a WireGuard public key is 44 characters of base64 (wg pubkey)"
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        return "a WireGuard public key is base64 (wg pubkey)"
    return None if len(raw) == 32 else "a WireGuard public key is 32 bytes"


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def peers_of(hosts: Iterable[MeshHost]) -> list[Peer]:
    """Every host in the mesh (with a key, a port and a machine subnet), by id."""
    return sorted((Peer(h.id, h.wireguard_key, _endpoint(h.address, h.wireguard_port), h.machine_net)
                   for h in hosts if h.wireguard_key and h.wireguard_port and h.machine_net),
                  key=lambda p: p.host_id)


def digest(peers: list[Peer]) -> str:
    """What a host reports it has applied; the control plane sends the mesh again only when it differs."""
    text = json.dumps([p.to_api() for p in peers], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def from_api(items: object, own_id: str, own_subnet: str) -> list[Peer]:
    """The peers a control plane's reply names, other than this host; an entry that is malformed or claims this
    host's subnet (or one of another entry's) is left out, so one bad record cannot take traffic."""
    if not isinstance(items, list):
        return []
    mine = ipaddress.IPv4Network(own_subnet)
    taken: list[ipaddress.IPv4Network] = [mine]
    peers: list[Peer] = []
    for item in items:
        if not isinstance(item, dict) or item.get("host_id") == own_id:
            continue
        try:
            subnet = ipaddress.IPv4Network(str(item["subnet"]))
            host, _, port = str(item["endpoint"]).rpartition(":")
            ipaddress.ip_address(host.strip("[]"))
            if not 0 < int(port) < 65536 or key_error(item["public_key"]) is not None:
                continue
        except (KeyError, ValueError):
            continue
        if any(subnet.overlaps(t) for t in taken):
            continue
        taken.append(subnet)
        peers.append(Peer(str(item["host_id"]), str(item["public_key"]), str(item["endpoint"]), str(subnet)))
    return peers


def config(private_key: str, port: int, peers: list[Peer]) -> str:
    """The interface's whole configuration, for `wg syncconf` (which adds, changes and removes peers to match)."""
    lines = ["[Interface]", f"PrivateKey = {private_key}", f"ListenPort = {port}"]
    for p in peers:
        lines += ["", "[Peer]", f"PublicKey = {p.public_key}", f"Endpoint = {p.endpoint}",
                  f"AllowedIPs = {p.subnet}", f"PersistentKeepalive = {KEEPALIVE}"]
    return "\n".join(lines) + "\n"


def interface_name(host_id: str) -> str:
    """The host's WireGuard interface: unique per host (userspace WireGuard's control socket is named by it,
    and a netns fleet has several hosts on one computer), at most 15 characters."""
    return "rwg" + hashlib.sha256(host_id.encode()).hexdigest()[:10]


def reply_for(peers: list[Peer], reported: Any, current: str | None = None) -> dict[str, Any] | None:
    """The heartbeat reply's `mesh`, or None when the host already has this one (`current`: the peers' digest,
    if the caller keeps it)."""
    current = digest(peers) if current is None else current
    if reported == current:
        return None
    return {"digest": current, "peers": [p.to_api() for p in peers]}
