"""Background tasks, named and observed: every task has a name (it shows in logs and in asyncio's task
dumps), is kept referenced until it ends (so it is never garbage-collected mid-flight), and an exception
nobody awaits is logged instead of vanishing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("roost.tasks")
T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], name: str, keep: set[asyncio.Task[Any]] | None = None) -> asyncio.Task[T]:
    """Start `coro` as a task called `name`; `keep` is the owner's set of live tasks (for shutdown)."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    owner = _running if keep is None else keep
    owner.add(task)
    task.add_done_callback(owner.discard)
    task.add_done_callback(_observe)
    return task


def _observe(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("task %s failed: %s: %s", task.get_name(), type(exc).__name__, exc, exc_info=exc)
