"""The invariants `drill all` and `drill chaos` check (roost.drill.invariants), on made-up fleets."""

from __future__ import annotations

from roost.drill import invariants as inv
from roost.drill.analysis import Sample, Shift, checks


def m(mid: str, state: str = "started", standbys: list[str] | None = None, autostop: object = False) -> dict:
    config: dict = {"services": [{"internal_port": 8080, "autostop": autostop}]}
    if standbys:
        config = {"standbys": standbys}
    return {"id": mid, "state": state, "config": config}


def test_what_should_run_is_what_ran_and_one_of_each_machine_and_standby() -> None:
    start = [m("web1"), m("web2"), m("idle", "stopped"), m("auto", autostop="stop"), m("w"), m("s", "stopped", ["w"])]
    assert inv.should_run(start, start) == []
    # A takeover: the standby runs instead of the worker; an autostopped machine may stay stopped.
    now = [m("web1"), m("web2"), m("idle", "stopped"), m("auto", "stopped"), m("w", "stopped"),
           m("s", "started", ["w"])]
    assert inv.should_run(start, now) == []
    # Neither runs, or both: broken; a web machine down: broken.
    both = [*now[:4], m("w"), m("s", "started", ["w"])]
    assert inv.should_run(start, both) == ["w+s"]
    down = [m("web1", "stopped"), *now[1:4], m("w", "stopped"), m("s", "stopped", ["w"])]
    assert inv.should_run(start, down) == ["web1", "w+s"]


def test_double_runs_count_only_overlaps_of_a_machine_and_its_standby_since_the_start() -> None:
    pairs = inv.standby_pairs([m("w"), m("s", "stopped", ["w"]), m("web")])
    assert pairs == [("w", "s")]
    runs = {"w": [(0.0, 10.0), (20.0, None)], "s": [(10.5, 19.0)], "web": [(0.0, None)]}
    assert inv.double_runs(pairs, runs, now=30.0, since=0.0) == 0
    runs["s"].append((25.0, 26.0))  # while the worker ran again
    assert inv.double_runs(pairs, runs, now=30.0, since=0.0) == 1
    assert inv.double_runs(pairs, runs, now=30.0, since=27.0) == 0  # before the window


def sample(seq: int, sent: float, done: float, ok: bool) -> Sample:
    return Sample(seq, sent, done, 200 if ok else 0, "ok" if ok else "reset")


def test_requests_that_died_with_a_killed_edge_are_excused_and_only_those() -> None:
    samples = [sample(0, 1.0, 1.01, True), sample(1, 4.9, 5.2, False), sample(2, 5.3, 5.31, False),
               sample(3, 6.0, 6.1, False), Sample(4, 5.2, 5.25, 503, "edge 503 PR03")]
    # The kill ran from 5.0 to 5.4 (the edge, then the region's hosts): connection failures in it are excused,
    # an answer the edge gave (a 503) never is, nor a failure after it.
    got = inv.failures(samples, "GET", edge_deaths=[(5.0, 5.4)])
    assert (got.failed, got.excused, got.other) == (2, 2, 0)
    assert inv.failures(samples, "POST", edge_deaths=[(5.0, 5.4)]) == inv.Failures(0, 2, 2)
    shift = Shift(affected=0, seconds=0.0, first_elsewhere=None, last_affected=None, slow=1.0)
    verdict = checks(failed=2, shift=shift, expect_no_errors=True, expect_shift_under=None, double_runs=None,
                     writes_lost=None, excused=1)
    assert not verdict[0].passed and verdict[0].measured == "1 (1 more died with the killed edge)"
