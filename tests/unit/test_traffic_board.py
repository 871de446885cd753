"""Issue 20, the dashboard's live traffic: two reports of an edge's cumulative counts make a point per machine
(requests/s, errors/s, latency); a restarted edge, a bad report and old points are handled; and the pages render
what they are given, escaped."""

from __future__ import annotations

import pytest

from roost.core.traffic import WINDOW, TrafficBoard, TrafficError, parse_report
from roost.ui import pages


def test_two_reports_make_rates_per_machine() -> None:
    board = TrafficBoard()
    assert board.report("e1", "ams", {("web", "m1", 200): 100}, {}, now=10.0) == 0, "the first sets the start"
    added = board.report("e1", "ams", {("web", "m1", 200): 140, ("web", "m1", 502): 2, ("web", "m2", 200): 10},
                         {"m1": 3.5}, now=12.0)
    assert added == 2
    points = {p.machine: p for p in board.points("web", now=12.0)}
    assert points["m1"].requests == 21.0 and points["m1"].errors == 1.0 and points["m1"].latency_ms == 3.5
    assert points["m2"].requests == 5.0 and points["m2"].edge_region == "ams" and points["m2"].seconds == 2.0
    # a restarted edge (its counters went back) starts counting again, it is not a negative rate
    assert board.report("e1", "ams", {("web", "m1", 200): 5}, {}, now=14.0) == 0
    assert board.report("e1", "ams", {("web", "m1", 200): 9}, {}, now=16.0) == 1
    assert board.points("web", now=16.0)[-1].requests == 2.0
    assert board.points("web", now=16.0 + WINDOW + 1) == [], "old points go"
    assert board.points("other", now=16.0) == []


@pytest.mark.parametrize("body", [
    None, [], {"region": "ams"}, {"region": "", "requests": []}, {"region": "ams", "requests": [["a", "m", 200]]},
    {"region": "ams", "requests": [["a", "m", 200, -1]]}, {"region": "ams", "requests": [["a", "m", "200", 1]]},
    {"region": "ams", "requests": [], "latency_ms": {"m": "fast"}},
    {"region": "ams", "requests": [["a" * 65, "m", 200, 1]]},
])
def test_a_bad_report_is_refused(body: object) -> None:
    with pytest.raises(TrafficError):
        parse_report(body)


def test_a_report_parses() -> None:
    region, counts, latency = parse_report({"region": "ams", "requests": [["web", "m1", 200, 3]],
                                            "latency_ms": {"m1": 1.5}})
    assert (region, counts, latency) == ("ams", {("web", "m1", 200): 3}, {"m1": 1.5})


def test_pages_escape_what_they_show() -> None:
    evil = "<script>alert(1)</script>"
    page = pages.not_found(f"no app {evil!r}")
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    fleet = pages.fleet({"ams": [{"id": evil, "status": "ok", "cordoned": True, "machines": 1, "cpus": 1,
                                  "memory_mb": 1024, "used_memory_mb": 256}]},
                        {evil: [{"id": "m1", "app": evil, "state": "started", "checks": []}]}, [evil], 7)
    assert "<script>alert" not in fleet and 'data-revision="7"' in fleet and "cordoned" in fleet
    assert pages.checks_summary([{"status": "passing"}, {"status": "critical"}]) == "1/2 passing"


def test_a_drills_page_embeds_its_report_safely_and_a_running_one_follows_the_traffic() -> None:
    report = {"passed": False, "totals": {"sent": 10, "failed": 1}, "shift": {"seconds": 0.4},
              "timeline": {"width_s": 0.5, "series_by": "machine", "buckets": [{"start": 0.0, "ok": {"m1": 3},
                                                                              "errors": 0}]},
              "fault_at_s": 2.0, "heal_at_s": 4.0, "checks": [{"name": "</script><script>x()", "target": "0",
                                                               "measured": "1", "passed": False}],
              "standbys": []}
    page = pages.drill("web", {"drill": "d1", "state": "finished", "fault": "kill-host",
                               "target": {"kind": "host", "name": "ams-1"}, "fault_at": 1.0, "heal_at": 2.0,
                               "report": report}, 5)
    assert "</script><script>x()" not in page and 'id="drill-data"' in page and "FAILED" in page
    assert "10 requests, 1 failed" in page
    running = pages.drill("web", {"drill": "d2", "state": "running", "target": {}}, 5)
    assert 'data-drill="d2"' in running and 'id="chart-machines"' in running and "uPlot.iife.min.js" in running
