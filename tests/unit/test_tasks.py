"""The named-task helper: tasks have names, are kept until they end, and failures nobody awaits are logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from roost.tasks import spawn


async def test_a_task_is_named_kept_and_forgotten_when_done() -> None:
    keep: set[asyncio.Task[object]] = set()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 7

    task = spawn(work(), "worker-1", keep=keep)
    await asyncio.sleep(0)
    assert task.get_name() == "worker-1" and task in keep
    gate.set()
    assert await task == 7
    await asyncio.sleep(0)
    assert keep == set()


async def test_an_unawaited_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise ValueError("disk on fire")

    with caplog.at_level(logging.ERROR, logger="roost.tasks"):
        task = spawn(broken(), "doomed")
        await asyncio.wait({task})
        await asyncio.sleep(0)
    assert "task doomed failed: ValueError: disk on fire" in caplog.text
