"""The drill's figures, from hand-made samples: phases, percentiles, time to shift, timeline, checks."""

from __future__ import annotations

from roost.drill.analysis import (
    Sample,
    Window,
    after_heal,
    by_phase,
    checks,
    percentile,
    phase_of,
    ran_together,
    slow_threshold,
    summarize,
    takeover_time,
    takeovers_twice,
    time_to_shift,
    timeline,
)


def ok(seq: int, sent: float, latency: float = 0.01, machine: str = "m1", region: str = "ams",
       new_conn: bool = False) -> Sample:
    return Sample(seq, sent, sent + latency, 200, "ok", machine, region, "ams", new_conn=new_conn)


def rerouted(seq: int, sent: float, latency: float = 0.01, machine: str = "m1") -> Sample:
    return Sample(seq, sent, sent + latency, 200, "ok", machine, "ams", "ams", rerouted=True)


def failed(seq: int, sent: float, cause: str = "edge 502 PR04", latency: float = 0.02) -> Sample:
    return Sample(seq, sent, sent + latency, 502 if cause.startswith("edge") else 0, cause)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_summary_counts_causes_and_takes_latency_from_successes_only():
    samples = [ok(0, 0.0, 0.010), ok(1, 0.1, 0.030, machine="m2"), failed(2, 0.2, "timeout", latency=5.0),
               failed(3, 0.3), failed(4, 0.4)]
    s = summarize(samples)
    assert (s.sent, s.ok, s.failed) == (5, 2, 3)
    assert s.causes == {"edge 502 PR04": 2, "timeout": 1}
    assert s.max_ms == 30.0  # the 5 s timeout is a failure, not a latency
    assert s.by_machine == {"m1": 1, "m2": 1}


def test_phases_split_on_the_scheduled_send_time():
    window = Window(fault_at=1.0, heal_at=2.0, end=3.0)
    samples = [ok(i, i * 0.5) for i in range(6)]  # sent at 0, .5, 1, 1.5, 2, 2.5
    phases = by_phase(samples, window)
    assert [phases[p].sent for p in ("before", "during", "after")] == [2, 2, 2]
    assert by_phase(samples, Window(1.0, None, 3.0))["during"].sent == 4


def test_a_request_in_flight_when_the_fault_struck_belongs_to_the_fault():
    window = Window(fault_at=1.0, heal_at=2.0, end=3.0)
    cut = failed(1, 0.99, "connection reset", latency=0.05)  # due before, broken by the fault
    assert phase_of(cut, window) == "during"
    phases = by_phase([ok(0, 0.5), cut], window)
    assert phases["before"].failed == 0 and phases["during"].failed == 1


def test_time_to_shift_ends_with_the_last_affected_request():
    window = Window(fault_at=1.0, heal_at=None, end=3.0)
    samples = [ok(0, 0.5, machine="dead"), ok(1, 0.6, machine="alive"),
               failed(2, 1.05, latency=0.1),              # failed: affected, done at 1.15
               ok(3, 1.1, machine="dead"),                 # answered quickly (by the target): nobody could tell
               rerouted(4, 1.2, machine="alive"),          # the edge retried it elsewhere: affected, done 1.21
               ok(5, 1.3, latency=1.6, machine="alive"),   # stalled past the threshold: affected, done 2.9
               ok(6, 1.5, machine="alive"),
               ok(7, 2.95, machine="alive")]               # undisturbed after the last affected one
    shift = time_to_shift(samples, window, {"dead"}, slow=1.0)
    assert shift.affected == 3 and shift.requests == 6
    assert abs(shift.seconds - 1.9) < 1e-9
    assert abs(shift.first_elsewhere - 0.21) < 1e-9


def test_a_machine_back_within_a_second_affects_only_what_failed_or_was_rerouted():
    # Issue 12 case 10: kill-machine reported "19.991s (894 requests affected)" when nothing failed and the
    # machine was back within a second: its own answers counted as affected.
    window = Window(fault_at=1.0, heal_at=None, end=21.0)
    samples = [ok(0, 0.9, machine="k")]
    samples += [rerouted(1, 1.01, machine="other"), rerouted(2, 1.2, machine="other")]
    samples += [ok(i, 1.0 + i * 0.01, machine="k") for i in range(30, 2000)]  # the restarted machine, for 19 s
    shift = time_to_shift(samples, window, {"k"}, slow=1.0)
    assert shift.affected == 2
    assert shift.seconds is not None and shift.seconds < 0.3


def test_nothing_affected_means_no_time_to_shift():
    window = Window(fault_at=1.0, heal_at=2.0, end=3.0)
    quiet = time_to_shift([ok(0, 0.5, region="ewr"), ok(1, 1.2, region="yyz"), ok(2, 1.4, region="ewr")], window,
                          set(), {"ewr"})
    assert quiet.affected == 0 and quiet.seconds == 0.0 and abs(quiet.first_elsewhere - 0.21) < 1e-9


def test_a_fault_that_disturbs_traffic_to_its_end_never_shifted():
    window = Window(fault_at=1.0, heal_at=2.0, end=3.0)
    stuck = time_to_shift([ok(0, 1.05), failed(1, 1.1), failed(2, 1.5)], window, {"dead"})
    assert stuck.seconds is None and stuck.affected == 2 and stuck.requests == 3
    assert not checks(failed=2, shift=stuck, expect_no_errors=False, expect_shift_under=5.0, double_runs=None,
                      writes_lost=None)[0].passed
    idle = time_to_shift([], window, set())
    assert idle.seconds is None and idle.requests == 0
    assert checks(failed=0, shift=idle, expect_no_errors=False, expect_shift_under=1.0, double_runs=None,
                  writes_lost=None)[0].passed


def test_where_new_connections_land_after_the_heal():
    # Issue 12 case 12: keep-alive clients stay on ewr after the heal; the report says where new ones go.
    window = Window(fault_at=1.0, heal_at=2.0, end=5.0)
    samples = [ok(0, 2.1, region="ewr"),  # an old connection
               ok(1, 2.2, region="ewr", new_conn=True), ok(2, 3.0, region="ams", new_conn=True),
               ok(3, 3.5, region="ams", new_conn=True), ok(4, 1.5, region="ewr", new_conn=True)]  # during
    back = after_heal(samples, window, {"ams"})
    assert back.by_region == {"ams": 2, "ewr": 1}
    assert abs(back.back_after - 1.01) < 1e-9
    assert after_heal(samples, Window(1.0, None, 5.0), {"ams"}).back_after is None


def test_slow_threshold_has_a_floor_and_follows_the_baseline():
    assert slow_threshold([]) == 1.0
    assert slow_threshold([ok(i, 0, 0.002) for i in range(10)]) == 1.0
    assert slow_threshold([ok(i, 0, 0.5) for i in range(10)]) == 2.5


def test_timeline_buckets_by_send_time_and_series():
    samples = [ok(0, 0.1, machine="a"), ok(1, 0.2, machine="b"), failed(2, 1.1), ok(3, 1.9, region="syd"),
               ok(4, 9.0)]  # past the end: folded into the last bucket
    buckets = timeline(samples, end=2.0, width=1.0)
    assert [b.start for b in buckets] == [0.0, 1.0]
    assert buckets[0].ok == {"a": 1, "b": 1} and buckets[0].errors == 0
    assert buckets[1].errors == 1 and buckets[1].ok == {"m1": 2}
    by_region = timeline(samples, end=2.0, width=1.0, series="region")
    assert by_region[1].ok == {"syd": 1, "ams": 1}


def test_checks_fail_only_on_what_was_asked_or_unsafe():
    window = Window(1.0, None, 4.0)
    shift = time_to_shift([failed(0, 1.0, latency=2.5), ok(1, 1.1, latency=0.01, machine="b"),
                           ok(2, 3.6, machine="b")], window, set())
    assert abs(shift.seconds - 2.5) < 1e-9
    results = checks(failed=1, shift=shift, expect_no_errors=True, expect_shift_under=2.0, double_runs=0,
                     writes_lost=None)
    assert [(c.name, c.passed) for c in results] == [("no failed requests", False), ("time to shift", False),
                                                     ("machine and standby never ran together", True)]
    assert checks(failed=5, shift=shift, expect_no_errors=False, expect_shift_under=None, double_runs=None,
                  writes_lost=None) == []
    assert not checks(failed=0, shift=shift, expect_no_errors=False, expect_shift_under=None, double_runs=1,
                      writes_lost=0)[0].passed
    assert not checks(failed=0, shift=shift, expect_no_errors=False, expect_shift_under=None, double_runs=None,
                      writes_lost=2)[0].passed


def test_a_drill_judges_only_the_overlaps_in_its_own_window():
    # Issue 12 case 11: the first drill's worker run (ended at 10.0) overlapped its standby (from 5.0);
    # a second drill starting at 20.0 must not count that.
    worker = [(0.0, 10.0)]
    standby = [(5.0, None)]
    assert ran_together(worker, standby, now=30.0) == 1
    assert ran_together(worker, standby, now=30.0, since=20.0) == 0
    assert ran_together([(21.0, 23.0)], standby, now=30.0, since=20.0) == 1
    assert ran_together([(0.0, 5.0)], [(5.0, 6.0)], now=30.0) == 0, "one ends as the other starts"


def test_only_a_takeover_event_counts_as_a_takeover():
    events = [{"type": "start", "status": "started", "timestamp": 21_000},
              {"type": "takeover", "status": "starting", "timestamp": 8_000}]
    assert takeover_time(events, since=20.0) is None, "a restart after the heal is not a takeover"
    assert takeover_time(events, since=7.5) == 8.0


def test_a_machine_taken_over_twice_is_counted_once_per_extra_decision():
    def takeover(replaces: str, at_ms: int) -> dict[str, object]:
        return {"type": "takeover", "status": "starting", "timestamp": at_ms, "request": {"replaces": replaces}}

    standby_a = {"id": "s1", "events": [takeover("w1", 12_000), takeover("w1", 3_000)]}  # 3 s: an earlier drill's
    standby_b = {"id": "s2", "events": [takeover("w1", 12_500), {"type": "start", "timestamp": 13_000}]}
    standby_c = {"id": "s3", "events": [takeover("w2", 12_000)]}
    assert takeovers_twice([standby_a, standby_c], since=10.0) == 0
    assert takeovers_twice([standby_a, standby_b, standby_c], since=10.0) == 1
    assert takeovers_twice([standby_a, standby_b], since=2.0) == 2
