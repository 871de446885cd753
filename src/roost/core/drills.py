"""Drills as the dashboard shows them: each drill run against an app announces itself, its fault, its heal and,
at the end, its JSON report; the board keeps the last few per app in memory (the leader's; a restarted control
plane starts empty; the report is also in the drill's own output). Pure: validation and bookkeeping only."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

EVENTS = ("started", "fault", "heal", "finished")
KEEP_PER_APP = 20
MAX_APPS = 1_000
MAX_REPORT_BYTES = 2 * 1024 * 1024


class DrillEventError(ValueError):
    pass


def parse_event(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise DrillEventError("body must be {\"drill\", \"event\", \"at\", ...}")
    drill, event, at = body.get("drill"), body.get("event"), body.get("at")
    if not isinstance(drill, str) or not 0 < len(drill) <= 64 or not drill.replace("-", "").isalnum():
        raise DrillEventError("drill: the drill's id (letters, digits, dashes)")
    if event not in EVENTS:
        raise DrillEventError(f"event: one of {', '.join(EVENTS)}")
    if isinstance(at, bool) or not isinstance(at, int | float) or not 0 < at < 1e11:
        raise DrillEventError("at: a wall-clock time in seconds")
    report = body.get("report")
    if report is not None and (not isinstance(report, dict) or len(json.dumps(report)) > MAX_REPORT_BYTES):
        raise DrillEventError(f"report: the drill's JSON report, at most {MAX_REPORT_BYTES} bytes")
    out = {"drill": drill, "event": event, "at": float(at), "report": report}
    for key in ("fault", "entry"):
        if isinstance(body.get(key), str):
            out[key] = body[key][:64]
    for key in ("duration_s", "rps"):
        if isinstance(body.get(key), int | float) and not isinstance(body.get(key), bool):
            out[key] = float(body[key])
    if isinstance(body.get("target"), dict):
        out["target"] = {k: v for k, v in body["target"].items() if k in ("kind", "name", "region")
                         and isinstance(v, str)}
    return out


class DrillBoard:
    def __init__(self) -> None:
        self._apps: OrderedDict[str, OrderedDict[str, dict[str, Any]]] = OrderedDict()

    def record(self, app: str, event: dict[str, Any]) -> dict[str, Any]:
        drills = self._apps.setdefault(app, OrderedDict())
        self._apps.move_to_end(app)
        while len(self._apps) > MAX_APPS:
            self._apps.popitem(last=False)
        entry = drills.setdefault(event["drill"], {"drill": event["drill"], "app": app, "state": "running",
                                                   "started_at": None, "fault_at": None, "heal_at": None,
                                                   "finished_at": None, "report": None})
        while len(drills) > KEEP_PER_APP:
            drills.popitem(last=False)
        for key in ("fault", "entry", "duration_s", "rps", "target"):
            if key in event:
                entry[key] = event[key]
        name = {"started": "started_at", "fault": "fault_at", "heal": "heal_at", "finished": "finished_at"}
        entry[name[event["event"]]] = event["at"]
        if event["event"] == "finished":
            entry["state"] = "finished"
            entry["report"] = event.get("report")
        return entry

    def list(self, app: str) -> list[dict[str, Any]]:
        """Newest first, without their reports."""
        drills = self._apps.get(app)
        return [{k: v for k, v in d.items() if k != "report"} | {"passed": (d.get("report") or {}).get("passed")}
                for d in reversed(drills.values())] if drills is not None else []

    def get(self, app: str, drill: str) -> dict[str, Any] | None:
        drills = self._apps.get(app)
        return drills.get(drill) if drills is not None else None
