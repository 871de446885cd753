import asyncio

from roost.server.watch import WatchHub
from roost.store import ChangeRecord


def rec(rev):
    return ChangeRecord(rev, "machine", f"m{rev}", "put", {}, 0.0)


async def test_waiters_wake_on_publish_and_get_what_they_missed():
    hub = WatchHub(ring_size=100)
    hub.publish([rec(1), rec(2)], 2)
    waiter = asyncio.create_task(hub.wait(2, 5))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    hub.publish([rec(3)], 3)
    assert await waiter is True
    assert [r.rev for r in hub.since(1, 10)] == [2, 3]
    assert hub.covers(1)


async def test_wait_times_out():
    hub = WatchHub()
    assert await hub.wait(0, 0.01) is False


def test_ring_is_bounded_and_knows_what_it_no_longer_covers():
    hub = WatchHub(ring_size=3)
    hub.publish([rec(i) for i in range(1, 6)], 5)
    assert [r.rev for r in hub.since(0, 10)] == [3, 4, 5]
    assert not hub.covers(1)
    assert hub.covers(2)
