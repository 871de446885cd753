"""Loopback ports for the fleets and servers tests start."""

from __future__ import annotations

import random
import socket

# Below the kernel's ephemeral range (32768-60999): a port picked there could be taken by any outgoing
# connection between the check and the bind.
PORTS = (10000, 32000)


def free_port() -> int:
    return free_port_block(1)


# Every port handed out in this test run: a fleet asks for several (server, agents, registry, edges) before
# any of them binds, and two draws must never return the same port (CI once saw a fleet's server fail with
# "address already in use"). A run asks for a few thousand of the 22,000 ports, so none is handed out twice.
_HANDED_OUT: set[int] = set()


def free_port_block(n: int) -> int:
    """A base port with n free ports from it, none handed out before in this run."""
    for _ in range(200):
        base = random.randint(PORTS[0], PORTS[1] - n)
        ok = True
        for port in range(base, base + n):
            if port in _HANDED_OUT:
                ok = False
                break
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            _HANDED_OUT.update(range(base, base + n))
            return base
    raise RuntimeError("no free port block")
