"""Connect timeouts per address, from measured connect times (RFC 6298's timer), between a floor and a cap."""

from __future__ import annotations

from roost.proxy.upstream import CONNECT_FLOOR, CONNECT_TIMEOUT, ConnectTimes


def test_a_fast_link_gets_the_floor_a_slow_one_what_it_needs_and_an_unknown_one_the_cap() -> None:
    times = ConnectTimes()
    assert times.timeout("10.0.0.1") == CONNECT_TIMEOUT
    for _ in range(20):
        times.connected("127.0.0.2", 0.0002)
    assert times.timeout("127.0.0.2") == CONNECT_FLOOR
    for seconds in (0.200, 0.250, 0.180, 0.300, 0.220):
        times.connected("far", seconds)
    assert 0.3 < times.timeout("far") < CONNECT_TIMEOUT
    for _ in range(20):
        times.connected("awful", 5.0)
    assert times.timeout("awful") == CONNECT_TIMEOUT


def test_a_jittery_link_gets_more_room_than_a_steady_one_of_the_same_mean() -> None:
    steady, jittery = ConnectTimes(), ConnectTimes()
    for i in range(40):
        steady.connected("a", 0.2)
        jittery.connected("a", 0.1 if i % 2 else 0.3)
    assert jittery.timeout("a") > steady.timeout("a") + 0.1
