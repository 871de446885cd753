"""Issue 20: following a machine's log without polling (the agent's relay rings a bell its followers wait on),
and the server's filters: since a duration or a time, a region, a machine."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from roost.agent import logs
from roost.agent.logrelay import LogBell
from roost.core.errors import RoostError
from roost.core.logline import parse, stamp
from roost.server.logs import LogFilter, log_cutoff


def line(text: str, stream: str = "stdout", at: float | None = None) -> str:
    return f"{stamp(time.time() if at is None else at)} {stream} {text}\n"


async def test_a_follower_gets_a_line_as_soon_as_the_bell_rings(tmp_path: Path) -> None:
    path, bell = tmp_path / "machine.log", LogBell()
    path.write_text(line("old one") + line("old two"))
    stream = logs.follow(path, None, 1, bell=bell, limit=5)
    first = json.loads(await anext(stream))
    assert [x["line"] for x in first["lines"]] == ["old two"]
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    with open(path, "a") as fh:
        fh.write(line("fresh", "stderr"))
    began = time.monotonic()
    bell.ring(path)
    batch = json.loads(await asyncio.wait_for(waiting, 1))
    assert time.monotonic() - began < 0.1, "woken by the bell, not a poll"
    assert [(x["line"], x["stream"]) for x in batch["lines"]] == [("fresh", "stderr")]
    assert batch["offset"] == path.stat().st_size
    await stream.aclose()


async def test_a_quiet_follow_sends_keepalives_and_resumes_from_an_offset(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "KEEPALIVE_SECONDS", 0.05)
    path, bell = tmp_path / "machine.log", LogBell()
    path.write_text(line("a") + line("b"))
    offset = len(line("a", at=0))
    stream = logs.follow(path, offset, 100, bell=bell, limit=5)
    assert [x["line"] for x in json.loads(await anext(stream))["lines"]] == ["b"]
    assert await asyncio.wait_for(anext(stream), 1) == "\n", "an empty line while nothing is written"
    path.write_text(line("c"))  # trimmed: shorter than the offset, so read again from its start
    bell.ring(path)
    assert [x["line"] for x in json.loads(await asyncio.wait_for(anext(stream), 1))["lines"]] == ["c"]
    await stream.aclose()
    assert not bell._waiters, "a closed follower leaves no waiter behind"


def test_since_is_a_duration_or_a_time_and_filters_by_timestamp() -> None:
    now = 1_800_000_000.0
    assert log_cutoff("10m", now) == stamp(now - 600)
    assert log_cutoff("2027-01-15T08:00:00Z") == "2027-01-15T08:00:00.000000Z"
    assert log_cutoff(None) is None
    for bad in ("banana", "2027-13-45T99:00:00Z", "-5m"):
        with pytest.raises(RoostError) as refused:
            log_cutoff(bad, now)
        assert refused.value.status == 400 and "since" in refused.value.message
    want = LogFilter(since=stamp(now))
    assert want.keeps({"timestamp": stamp(now + 0.5)}) and not want.keeps({"timestamp": stamp(now - 0.5)})
    assert not want.keeps({"timestamp": None}) and LogFilter().keeps({"timestamp": None})
    assert parse(line("x y", "stderr", now)) == {"ts": stamp(now), "stream": "stderr", "line": "x y"}
