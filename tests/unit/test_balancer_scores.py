"""The latency-aware balancer's core (roost.balancer.scores and `two_choices`), on a virtual clock: a peak
EWMA that jumps up and decays down, costs that grow while requests wait, ejection after failures in a row
with a gradual return, and a simulated slow machine that ends up with few requests."""

from __future__ import annotations

import heapq
import random

import pytest

from roost.balancer import scores as sc
from roost.balancer.choose import route_among, two_choices
from roost.balancer.scores import MachineScores
from roost.proxy.loads import Loads


def test_a_slow_answer_counts_at_once_and_fast_ones_pull_the_estimate_down_gradually() -> None:
    s = MachineScores()
    s.answered("m", 0.003, now=0.0)
    assert s.estimate("m", 0.0) == pytest.approx(0.003)
    s.answered("m", 0.300, now=0.01)
    assert s.estimate("m", 0.01) == pytest.approx(0.300)  # the peak
    s.answered("m", 0.003, now=0.02)
    after_one = s.estimate("m", 0.02)
    assert after_one is not None and 0.2 < after_one < 0.300  # one fast answer 10 ms later barely moves it
    for i in range(500):  # five decay times of fast answers
        s.answered("m", 0.003, now=0.03 + i * 0.01)
    settled = s.estimate("m", 5.02)
    assert settled is not None and settled < 0.01


def test_an_estimate_nobody_refreshes_decays_so_a_shunned_machine_is_tried_again() -> None:
    s = MachineScores()
    s.answered("slow", 0.3, now=0.0)
    s.answered("fast", 0.003, now=0.0)
    assert s.cost("slow", 0, 0.0, now=0.0) > s.cost("fast", 0, 0.0, now=0.0)
    # Nothing refreshed either: both decay alike and keep their order.
    assert s.cost("slow", 0, 0.0, now=5.0) > s.cost("fast", 0, 0.0, now=5.0)
    # The fast one keeps answering; the slow one, left alone, becomes worth one more try after a while.
    s.answered("fast", 0.003, now=12.0)
    assert s.cost("slow", 0, 0.0, now=12.0) <= s.cost("fast", 0, 0.0, now=12.0)


def test_a_machine_whose_requests_wait_gets_costlier_before_it_answers_anything() -> None:
    s = MachineScores()
    s.answered("frozen", 0.003, now=0.0)
    s.answered("fast", 0.003, now=0.0)
    # One request has waited 50 ms at the frozen machine: costlier than the fast one with two in flight.
    assert s.cost("frozen", 1, 0.050, now=0.05) > s.cost("fast", 2, 0.001, now=0.05)
    # And in-flight requests alone count: with equal estimates, more in flight costs more.
    assert s.cost("fast", 3, 0.0, now=0.05) > s.cost("fast", 1, 0.0, now=0.05)


def test_a_machine_not_heard_from_gets_one_probe_at_a_time() -> None:
    s = MachineScores()
    s.answered("known", 0.050, now=0.0)
    assert s.cost("new", 0, 0.0, now=0.0) < s.cost("known", 0, 0.0, now=0.0)
    assert s.cost("new", 1, 0.0, now=0.0) > s.cost("known", 5, 0.0, now=0.0)


def test_failures_in_a_row_eject_for_longer_each_time_and_the_return_is_gradual() -> None:
    s = MachineScores()
    now = 0.0
    for _ in range(sc.CONSECUTIVE - 1):
        assert s.failed("m", 0.01, now) == 0.0
    s.answered("m", 0.01, now)  # a success starts the count over
    for _ in range(sc.CONSECUTIVE - 1):
        assert s.failed("m", 0.01, now) == 0.0
    first = s.failed("m", 0.01, now)
    assert first == sc.BASE_EJECTION and s.ejected("m", now)
    assert s.failed("m", 0.01, now) == 0.0  # late failures of requests sent before add nothing
    now += first
    assert not s.ejected("m", now)
    s.answered("m", 0.01, now)
    s.answered("peer", 0.01, now)
    just_back = s.cost("m", 0, 0.0, now + 0.5)
    assert just_back > 5 * s.cost("peer", 0, 0.0, now + 0.5)  # little traffic at first
    later = s.cost("m", 0, 0.0, now + sc.WARMUP * 0.8)
    assert s.cost("peer", 0, 0.0, now + sc.WARMUP * 0.8) < later < just_back
    for _ in range(sc.CONSECUTIVE):
        second = s.failed("m", 0.01, now + sc.WARMUP)
    assert second == 2 * sc.BASE_EJECTION
    # Behaving for long enough is forgiven: the next ejection is the base length again.
    later_now = now + sc.WARMUP + second + sc.FORGIVE_AFTER + 1
    for _ in range(sc.CONSECUTIVE):
        third = s.failed("m", 0.01, later_now)
    assert third == sc.BASE_EJECTION


def test_the_table_of_scores_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sc, "MAX_MACHINES", 10)
    s = MachineScores()
    for i in range(50):
        s.answered(f"m{i}", 0.01, now=float(i))
    assert len(s._seen) == 10 and s.estimate("m49", 49.0) is not None and s.estimate("m0", 49.0) is None


def test_two_choices_picks_the_cheaper_and_random_when_asked() -> None:
    rng = random.Random(1)
    items = [("a", 0, 10, None), ("b", 0, 10, None)]
    cost = {"a": 1.0, "b": 2.0}
    assert all(two_choices(items, rng, cost.__getitem__)[0] == "a" for _ in range(50))
    assert {two_choices(items, rng, None)[0] for _ in range(100)} == {"a", "b"}
    # Soft limits still come first: a cheap machine over its soft limit loses to a dear one under it.
    picked = route_among([[("a", 10, 10, None), ("b", 0, 10, None)]], True, rng, False, cost.__getitem__)
    assert picked == ("b", True)


def simulate(balancing: str, seconds: float = 10.0, rps: float = 100.0, seed: int = 7) -> tuple[int, int, int, int]:
    """Three machines of one region; `slow` answers in 300 ms from t=1 s (a GC pause that doesn't end), the
    others in 3 ms. Requests arrive every 1/rps s, open loop. Returns (slow's share after the first second of
    the fault, in requests; all requests then; requests slower than 100 ms; all requests)."""
    loads = Loads()
    rng = random.Random(seed)
    pending: list[tuple[float, int, str, float]] = []  # (done at, n, machine, sent at)
    fault_at = 1.0
    ids = ["slow", "fast1", "fast2"]
    slow_share = total_after = slow_requests = n = 0
    t = 0.0
    while t < seconds:
        while pending and pending[0][0] <= t:
            done, _, mid, sent = heapq.heappop(pending)
            loads.release(mid)
            loads.answered(mid, sent)
            loads.scores.answered(mid, done - sent, done)
        items = [(mid, loads.get(mid), 20, None) for mid in ids]
        now = t
        picked = route_among([items], True, rng, False,
                             None if balancing == "random" else (lambda mid, now=now: loads.cost(mid, now)))
        assert picked is not None
        mid = picked[0]
        latency = 0.3 if (mid == "slow" and t >= fault_at) else 0.003
        loads.acquire(mid)
        loads.awaiting(mid, t)
        n += 1
        heapq.heappush(pending, (t + latency, n, mid, t))
        if t >= fault_at + 1.0:
            total_after += 1
            slow_share += mid == "slow"
        slow_requests += latency > 0.1
        t += 1.0 / rps
    return slow_share, total_after, slow_requests, n


def test_a_slow_machine_gets_few_requests_with_latency_balancing_and_a_third_with_flys_rule() -> None:
    share, after, slow, total = simulate("latency")
    assert share <= 0.1 * after
    assert slow <= 0.01 * total  # p99 is a fast answer
    share_fly, after_fly, slow_fly, _ = simulate("random")
    assert share_fly > 0.25 * after_fly and slow_fly > 0.2 * total


def test_machines_about_as_fast_share_the_load() -> None:
    """Serial requests (nothing ever in flight) to two fast machines, one answering 4x slower than the other
    (a cold start, a busier host): both well under LATENCY_FLOOR, so they share the load."""
    loads = Loads()
    rng = random.Random(3)
    counts = {"a": 0, "b": 0}
    for i in range(2000):
        now = i * 0.01
        items = [(mid, loads.get(mid), 20, None) for mid in counts]
        picked = route_among([items], True, rng, False, lambda mid, now=now: loads.cost(mid, now))
        assert picked is not None
        counts[picked[0]] += 1
        loads.scores.answered(picked[0], 0.0025 if picked[0] == "a" else 0.010, now + 0.0025)
    assert min(counts.values()) > 0.3 * 2000
