"""The agent's side of "at most one": its lease, and when it must fence itself.

An agent holds a lease while it hears from the control plane, or — when the control plane is away — from
a majority of its peer hosts. A host cut off from both for longer than the lease stops its watched
machines (the ones a standby elsewhere would replace) before the control plane can start a standby: the
server waits for the lease plus a margin after the host's last heartbeat, so the two never run together.
A control-plane outage alone never fences anything: the peers still answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LeaseConfig:
    lease: float = 1.0  # seconds an agent may go without contact before it fences
    margin: float = 0.5  # the server waits lease + margin after the last heartbeat before a takeover
    # How long one host's probe of another waits: the agents' contact check with their peers and the peers'
    # confirmation that a silent host is unreachable. Over a WAN, a new TLS connection takes three RTTs.
    probe_timeout: float = 0.3


def has_contact(server_ok: bool, peers_reachable: int, peers_total: int) -> bool:
    """Contact this tick: the control plane answered, or more than half of the peers did."""
    if server_ok:
        return True
    return peers_total > 0 and peers_reachable * 2 > peers_total


def must_fence(now: float, last_contact: float, config: LeaseConfig, peers_total: int, watched: int) -> bool:
    """True once the lease has run out, on a host with peers (else no standby could be elsewhere) and
    machines to fence."""
    return watched > 0 and peers_total > 0 and now - last_contact > config.lease


def takeover_at(last_heartbeat: float, config: LeaseConfig) -> float:
    """The earliest time (server clock) a standby may start for machines of a host last heard at
    `last_heartbeat`: by then the host has surely fenced itself."""
    return last_heartbeat + config.lease + config.margin
