"""Reading a machine's log file: the last N lines, or everything after a byte offset (for follow); each line
with its timestamp and stream (agent/logrelay.py writes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roost.agent.logrelay import parse

MAX_READ = 1024 * 1024


def tail(path: Path, lines: int) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError:
        return {"lines": [], "offset": 0}
    if lines <= 0:
        return {"lines": [], "offset": size}
    with open(path, "rb") as fh:
        chunk = min(size, max(4096, lines * 256), MAX_READ)
        fh.seek(size - chunk)
        data = fh.read(chunk)
    text = data.decode("utf-8", "replace").splitlines()
    if chunk < size and text:
        text = text[1:]  # the first line may be cut
    return {"lines": [parse(line) for line in text[-lines:]], "offset": size}


def since(path: Path, offset: int) -> dict[str, Any]:
    try:
        size = path.stat().st_size
    except OSError:
        return {"lines": [], "offset": 0}
    if offset > size:  # the log was trimmed: start over from its beginning
        offset = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(min(size - offset, MAX_READ))
    end = data.rfind(b"\n")
    if end < 0:
        return {"lines": [], "offset": offset}
    complete = data[: end + 1]
    return {"lines": [parse(line) for line in complete.decode("utf-8", "replace").splitlines()],
            "offset": offset + len(complete)}
