"""Machine events in Fly's shape: newest first, `timestamp` in ms, `source` user|flyd."""

from __future__ import annotations

import time
from typing import Any

from roost.core.ids import new_ulid


def machine_event(kind: str, status: str, source: str = "user", request: dict[str, Any] | None = None,
                  now: float | None = None) -> dict[str, Any]:
    ts = time.time() if now is None else now
    event: dict[str, Any] = {"id": new_ulid(int(ts * 1000)), "type": kind, "status": status, "source": source,
                             "timestamp": int(ts * 1000)}
    if request:
        event["request"] = request
    return event


def exit_request(exit_code: int | None, signal: int | None, oom_killed: bool, requested_stop: bool,
                 restarting: bool, exited_at: float, restart_count: int) -> dict[str, Any]:
    """The `request` of an exit event, as Fly shapes it."""
    return {
        "exit_event": {
            "exit_code": -1 if exit_code is None else exit_code,
            "guest_exit_code": -1 if exit_code is None else exit_code,
            "guest_signal": -1 if signal is None else signal,
            "signal": -1 if signal is None else signal,
            "oom_killed": oom_killed,
            "requested_stop": requested_stop,
            "restarting": restarting,
            "exited_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(exited_at))
            + f".{int((exited_at % 1) * 1000):03d}Z",
        },
        "restart_count": restart_count,
    }
