"""A machine log line as the agent stores it: `TIMESTAMP STREAM TEXT`, the time RFC 3339 UTC with microseconds
(so that two lines' times compare as strings), the stream stdout or stderr."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

STREAMS = ("stdout", "stderr")
_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (stdout|stderr) (.*)$")


def stamp(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(line: str) -> dict[str, Any]:
    """A log file line as the logs API gives it: {ts, stream, line} (ts None for a line without one)."""
    found = _LINE.match(line)
    if found is None:
        return {"ts": None, "stream": None, "line": line}
    return {"ts": found.group(1), "stream": found.group(2), "line": found.group(3)}
