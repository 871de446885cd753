"""Issue 20: what the dashboard knows of drills: a drill's events (started, fault, heal, finished with its report)
kept per app, newest first, the last 20; a malformed event refused."""

from __future__ import annotations

import pytest

from roost.core.drills import KEEP_PER_APP, DrillBoard, DrillEventError, parse_event


def test_a_drills_events_make_one_entry_and_the_board_keeps_the_last_ones() -> None:
    board = DrillBoard()
    board.record("web", parse_event({"drill": "d1", "event": "started", "at": 100.0, "fault": "kill-host",
                                     "target": {"kind": "host", "name": "ams-1", "extra": "dropped"}, "rps": 20}))
    board.record("web", parse_event({"drill": "d1", "event": "fault", "at": 102.0}))
    running = board.get("web", "d1")
    assert running is not None and running["state"] == "running" and running["fault_at"] == 102.0
    assert running["target"] == {"kind": "host", "name": "ams-1"}
    board.record("web", parse_event({"drill": "d1", "event": "heal", "at": 104.0}))
    board.record("web", parse_event({"drill": "d1", "event": "finished", "at": 107.0,
                                     "report": {"passed": True, "timeline": {"buckets": []}}}))
    done = board.get("web", "d1")
    assert done is not None and done["state"] == "finished" and done["report"]["passed"] is True
    listed = board.list("web")
    assert listed[0]["drill"] == "d1" and listed[0]["passed"] is True and "report" not in listed[0]
    for i in range(KEEP_PER_APP + 5):
        board.record("web", parse_event({"drill": f"n{i}", "event": "started", "at": 200.0 + i}))
    assert len(board.list("web")) == KEEP_PER_APP and board.list("web")[0]["drill"] == f"n{KEEP_PER_APP + 4}"
    assert board.get("web", "d1") is None and board.list("other") == []


@pytest.mark.parametrize("body", [
    None, {"drill": "d1", "event": "exploded", "at": 1.0}, {"drill": "", "event": "fault", "at": 1.0},
    {"drill": "../x", "event": "fault", "at": 1.0}, {"drill": "d1", "event": "fault", "at": "now"},
    {"drill": "d1", "event": "finished", "at": 1.0, "report": "text"},
    {"drill": "d1", "event": "finished", "at": 1.0, "report": {"big": "x" * (3 * 1024 * 1024)}},
])
def test_a_bad_event_is_refused(body: object) -> None:
    with pytest.raises(DrillEventError):
        parse_event(body)
