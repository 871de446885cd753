"""Latency between the regions of a netns fleet, where the kernel has no `netem` (issue 19).

Each region's nodes hang off a bridge of their own in the fleet's namespace; one relay joins the bridges
through a TAP device each and carries Ethernet frames between them, each one held for half the round-trip time
between the two regions (the RTT catalogue), so that every packet between regions, and so every connection, TLS
handshake, heartbeat and probe, takes as long as it would between those places. Frames within a region never
reach the relay.

`Switch` (pure) decides where a frame goes and when: it learns which region each source MAC address is in, sends
a frame for a known address to that region only, and floods the others (broadcasts, unknown addresses) to every
other region; a frame is never sent back to the region it came from, so the star of bridges has no loop.
`run` is the I/O: TAP file descriptors in an asyncio loop, a timer per frame. Bounded: at most MAX_IN_FLIGHT
frames wait at once (more are dropped, as a full link drops them).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("roost.dev.linkdelay")
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65536
MAX_IN_FLIGHT = 20000
MAC_TTL = 300.0  # seconds a learnt address is trusted without being seen again


@dataclass
class Switch:
    """Where each frame goes (region) and after how long (seconds): pure, times passed in."""

    one_way: Callable[[str, str], float]  # seconds from one region to another
    regions: tuple[str, ...]
    learnt: dict[bytes, tuple[str, float]] = field(default_factory=dict)  # MAC -> (region, last seen)

    def route(self, frame: bytes, came_from: str, now: float) -> list[tuple[str, float]]:
        if len(frame) < 14:
            return []
        destination, source = frame[0:6], frame[6:12]
        if not source[0] & 1:  # a unicast source: where it lives
            self.learnt[source] = (came_from, now)
        known = self.learnt.get(destination)
        if known is not None and now - known[1] < MAC_TTL and not destination[0] & 1:
            return [] if known[0] == came_from else [(known[0], self.one_way(came_from, known[0]))]
        return [(region, self.one_way(came_from, region)) for region in self.regions if region != came_from]


def open_tap(name: str) -> int:
    """Attach to an existing TAP device (made with `ip tuntap add NAME mode tap`), non-blocking."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


async def run(taps: Mapping[str, str], one_way: Callable[[str, str], float], stop: asyncio.Event) -> None:
    """Carry frames between the regions' TAP devices (region -> device name) until `stop`."""
    loop = asyncio.get_running_loop()
    fds = {region: open_tap(name) for region, name in taps.items()}
    switch = Switch(one_way, tuple(fds))
    in_flight = 0

    def deliver(fd: int, frame: bytes) -> None:
        nonlocal in_flight
        in_flight -= 1
        with contextlib.suppress(BlockingIOError, OSError):  # a full queue drops the frame, as a link would
            os.write(fd, frame)

    def readable(region: str, fd: int) -> None:
        nonlocal in_flight
        for _ in range(256):  # a burst at a time, then let the timers run
            try:
                frame = os.read(fd, MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            now = loop.time()
            for target, delay in switch.route(frame, region, now):
                if in_flight >= MAX_IN_FLIGHT:
                    continue
                in_flight += 1
                loop.call_at(now + delay, deliver, fds[target], frame)

    for region, fd in fds.items():
        loop.add_reader(fd, readable, region, fd)
    try:
        await stop.wait()
    finally:
        for fd in fds.values():
            loop.remove_reader(fd)
            os.close(fd)
