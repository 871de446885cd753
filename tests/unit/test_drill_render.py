"""A drill's report as people read it: the terminal tables and timeline, and the HTML page, built from samples
through the same pure figures the runner uses (analysis.traffic and analysis.checks)."""

from __future__ import annotations

import re
from dataclasses import asdict
from html.parser import HTMLParser
from typing import Any

from rich.console import Console

from roost.drill import analysis, render
from roost.drill.analysis import Sample, Window


def _samples() -> list[Sample]:
    """10 req/s for 6 s: m1 in ams serves until the fault at 2 s, two requests fail, then m2 in fra serves; the
    heal at 4 s brings new connections back to ams."""
    out = []
    for i in range(60):
        t = i / 10
        if t < 2.0:
            out.append(Sample(i, t, t + 0.004, 200, "ok", "m1", "ams", "ams", new_conn=i == 0))
        elif t < 2.2:
            out.append(Sample(i, t, t + 0.05, 502, "edge 502 PR04"))
        elif t < 4.0:
            out.append(Sample(i, t, t + 0.02, 200, "ok", "m2", "fra", "ams"))
        else:
            out.append(Sample(i, t, t + 0.005, 200, "ok", "m1", "ams", "ams", new_conn=True))
    return out


def _report(*, kind: str = "region", expect_no_errors: bool = True) -> dict[str, Any]:
    window = Window(2.0, 4.0, 6.0)
    regions = {"ams"} if kind == "region" else set()
    seen = analysis.traffic(_samples(), window, {"m1"}, regions, 0.5)
    results = analysis.checks(failed=seen.total.failed, shift=seen.shift, expect_no_errors=expect_no_errors,
                              expect_shift_under=1.0, double_runs=0, writes_lost=None)
    return {
        "drill": "d-1", "fault": "kill-region" if kind == "region" else "kill-machine", "app": "web<1>",
        "target": {"kind": kind, "name": "ams" if kind == "region" else "m1", "machines": ["m1"], "hosts": []},
        "heal": "restart the region", "entry": "127.0.0.1:8080", "rps": 10.0, "duration_s": 6.0, "path": "/",
        "method": "GET", "fault_at_s": window.fault_at, "heal_at_s": window.heal_at, "fault_time": 0.0,
        "heal_time": 0.0, **seen.figures,
        "standbys": [{"standby": "s1", "watched": "w1", "hit": True, "standby_started_after_s": 1.25,
                      "fencing_token": 2, "watched_ended_after_s": 0.5, "watched_end_reason": "power cut",
                      "double_runs": 0}],
        "double_runs": 0, "writes": {"acknowledged": 40, "lost": 0},
        "checks": [asdict(c) for c in results], "passed": all(c.passed for c in results), "notes": ["a note"],
    }


def _text(print_fn: Any, data: dict[str, Any]) -> str:
    console = Console(record=True, width=220, color_system=None)
    print_fn(data, console)
    return console.export_text()


def test_the_figures_say_what_happened():
    report = _report()
    assert report["totals"]["failed"] == 2 and report["totals"]["causes"] == {"edge 502 PR04": 2}
    assert report["phases"]["during"]["by_region"] == {"fra": 18}
    assert report["shift"]["affected"] == 2 and report["shift"]["seconds"] == 0.15  # the last failure's end
    assert report["after_heal"] == {"by_region": {"ams": 20}, "back_after_s": 0.005}
    assert [b["errors"] for b in report["timeline"]["buckets"]][3:6] == [0, 2, 0]
    assert report["timeline"]["series_by"] == "region"
    assert not report["passed"]  # two failed requests break --expect-no-errors


def test_the_terminal_report_shows_phases_failures_timeline_standbys_and_checks():
    text = _text(render.print_report, _report())
    assert "kill-region on region ams of app web<1>" in text
    assert re.search(r"during\s+│\s+20\s+│\s+18\s+│\s+2\b", text), text
    assert "failures: 2 edge 502 PR04" in text
    assert "time to shift: 0.150s (2 requests affected" in text
    assert "new connections after the heal: ams 100%; back in ams 0.01s after the heal" in text
    lines = text.splitlines()
    marks = next(line for line in lines if "F" in line and "H" in line and "timeline" not in line)
    assert marks.index("H") - marks.index("F") == 4  # 2 s apart, 0.5 s per column
    errors = next(line for line in lines if line.strip().startswith("errors"))
    assert errors.index("▃") == marks.index("F")  # 2 failures of the column's 5 requests, under the fault
    assert "standby s1 for w1 (hit): started 1.250s after the fault, fencing token 2" in text
    assert "ran together: 0" in text
    assert "writes: 40 acknowledged, 0 lost" in text
    assert "FAIL no failed requests: 2 (target 0)" in text
    assert "pass time to shift: 0.150 s" in text
    assert "note: a note" in text
    assert render.headline(_report()).endswith("2 failed; traffic shifted in 0.150s; CHECKS FAILED")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def test_the_html_report_is_one_escaped_page_with_a_chart_and_tables():
    page = render.html_report(_report())
    parsed = _parse(page)
    text = " ".join(parsed.text)
    assert "<b>web&lt;1&gt;</b>" in page and "web<1>" not in page.split("<details>")[0]  # the app name is escaped
    assert parsed.tags.count("svg") == 1 and parsed.tags.count("rect") >= 10
    assert "fault 2.00s" in text and "heal 4.00s" in text
    assert "CHECKS FAILED" in text and "Standbys" in text and "40 writes acknowledged" in text
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")  # self-contained: nothing fetched


def test_a_machine_drill_splits_traffic_by_machine():
    report = _report(kind="machine", expect_no_errors=False)
    assert report["passed"] and report["timeline"]["series_by"] == "machine"
    text = _text(render.print_report, report)
    assert "m2 100%" in text and "all checks passed" in render.headline(report)
    assert "new connections after the heal" not in text  # only for a region


def _all_result() -> dict[str, Any]:
    passed, failed = _report(kind="machine", expect_no_errors=False), _report()
    passed["recovered_after_s"] = 1.5
    return {"kind": "all", "app": "web", "drills": [passed, failed],
            "skipped": [{"fault": "partition-host", "why": "iptables is missing"}], "passed": False}


def test_drill_all_lists_every_fault_and_what_was_skipped():
    text = _text(render.print_all, _all_result())
    assert re.search(r"kill-machine\s+│\s+m1\s+│\s+60\s+│\s+2\b.*│\s+0\s+│\s+0/40\s+│\s+1.5s\s+│\s+pass", text), text
    assert re.search(r"kill-region\s+│\s+ams\b.*│\s+FAIL", text), text
    assert "skipped partition-host: iptables is missing" in text
    assert "failed: kill-region" in text
    page = render.html_all(_all_result())
    assert page.count("<iframe") == 2 and "skipped partition-host" in page


def _chaos_result(*, doubles: int) -> dict[str, Any]:
    return {"kind": "chaos", "app": "web", "seed": 3, "duration_s": 45.0, "rps": 20.0,
            "faults": ["kill-machine", "freeze-agent"],
            "steps": [{"at_s": 5.0, "fault": "kill-machine", "target": "m1", "healed_at_s": 9.0,
                       "recovered_after_s": 0.8, "double_runs_so_far": 0},
                      {"at_s": 15.0, "fault": "freeze-agent", "target": "h2", "healed_at_s": 20.0,
                       "recovered_after_s": None, "double_runs_so_far": doubles}],
            "sent": 900, "ok": 899, "excused_failures": 0, "failed_non_idempotent": 0,
            "failures": [{"sent_s": 16.2, "done_s": 16.3, "cause": "timeout", "machine": "", "during": "freeze-agent"}],
            "final_recovery_s": 2.0, "not_recovered_at_end": [],
            "invariants": {"double_runs": doubles, "writes_lost": None, "not_recovered": 1, "failed_requests": 1},
            "writes": None, "passed": False}


def test_chaos_shows_each_fault_the_invariants_and_the_failures():
    text = _text(render.print_chaos, _chaos_result(doubles=1))
    assert "2 faults from kill-machine, freeze-agent; 900 requests, 899 ok" in text
    assert re.search(r"15.0s\s+│\s+freeze-agent\s+│\s+h2\s+│\s+20.0s\s+│\s+NOT\s+│\s+1", text), text
    assert re.search(r"double runs\s+│\s+1", text) and re.search(r"writes lost\s+│\s+-", text)
    assert "failed at 16.20s: timeout (during freeze-agent)" in text
    assert "an invariant was broken" in text
    page = render.html_chaos(_chaos_result(doubles=0))
    assert "Chaos on app web (seed 3)" in page and "NOT" in page and _parse(page).tags.count("table") == 2


def test_a_kill_server_drill_on_replicas_reports_writes_the_new_leader_and_losses():
    from roost.drill.control_plane import ControlPlaneProbe, Write, figures

    probe = ControlPlaneProbe(("https://a", "https://b", "https://c"), "t", "", "d1")
    # 20 writes a second: fine until the kill at 2 s, refused (503) for 1.5 s, then fine again
    for n in range(100):
        sent = n / 20
        status = 503 if 2.0 <= sent < 3.5 else 201
        probe.writes.append(Write(n, sent, sent + 0.01, status))
    probe.leaders += [(0.1, "https://a", 1), (3.3, "https://b", 2)]
    c = figures(probe, 2.0, "server-1", lost=0, twice=0)
    assert (c["writes"], c["failed"], c["failed_statuses"]) == (100, 30, [503])
    assert c["writes_back_after_s"] == 1.51 and c["new_leader_after_s"] == 1.3
    assert (c["leader_before"], c["term_before"], c["new_leader"], c["term_after"]) == ("https://a", 1, "https://b", 2)
    report = {**_report(kind="machine", expect_no_errors=False), "control_plane": c}
    text = " ".join(_text(render.print_report, report).split())  # one line, however the terminal wraps it
    assert ("control plane: server-1 of 3 replicas killed; 100 API writes, 30 failed (503); writes succeeded again "
            "1.51s after the kill; https://b leads (term 2) 1.30s after the kill; 0 acknowledged writes lost; "
            "0 takeovers decided twice") in text
    assert "Control plane" in render.html_report(report)
