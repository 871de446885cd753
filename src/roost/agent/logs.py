"""Reading a machine's log file: the last N lines, or everything after a byte offset (for follow); each line
with its timestamp and stream (agent/logrelay.py writes them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from roost.agent.logrelay import BELL, LogBell
from roost.core.logline import parse

MAX_READ = 1024 * 1024
KEEPALIVE_SECONDS = 10.0  # an empty line this often: a follower gone away is noticed by the next write
FOLLOW_MAX_SECONDS = 3600.0


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


async def follow(path: Path, offset: int | None, lines: int, bell: LogBell = BELL,
                 limit: float = FOLLOW_MAX_SECONDS) -> AsyncIterator[str]:
    """NDJSON batches `{"lines": [...], "offset": N}`: the last `lines` lines (or everything after `offset`),
    then each new batch as soon as the machine writes it, for at most `limit` seconds."""
    batch = tail(path, lines) if offset is None else since(path, offset)
    yield json.dumps(batch) + "\n"
    position = batch["offset"]
    deadline = asyncio.get_running_loop().time() + limit
    while asyncio.get_running_loop().time() < deadline:
        rang = await bell.wait(path, KEEPALIVE_SECONDS)
        batch = since(path, position)
        if batch["lines"] or batch["offset"] != position:
            position = batch["offset"]
            yield json.dumps(batch) + "\n"
        elif not rang:
            yield "\n"
