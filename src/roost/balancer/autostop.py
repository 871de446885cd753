"""The idle loop: which machine (if any) one pass stops in one region, by Fly Proxy's rule.

With more than one running machine, stop one when `running - (over_soft + 1) >= 1` (a buffer of one idle
machine stays for incoming traffic). A region's only machine stops only when it has had no traffic. At
most one machine per region per pass. Never below `min_machines_running` in the app's primary region
(the setting has no effect elsewhere). `suspend` suspends (the caller falls back to stop where a machine
cannot be suspended); `off` never stops anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Running:
    id: str
    load: int  # peak concurrency since the previous pass (0 = no traffic at all)
    soft_limit: int
    started_at: float  # when it last started (ties: the newest stops first)


@dataclass(frozen=True)
class StopPlan:
    machine_id: str
    action: str  # stop | suspend
    reason: str


def plan(running: Sequence[Running], mode: str, min_running: int, is_primary_region: bool) -> StopPlan | None:
    if mode not in ("stop", "suspend") or not running:
        return None
    floor = min_running if is_primary_region else 0
    if len(running) <= floor:
        return None
    if len(running) == 1:
        only = running[0]
        if only.load == 0:
            return StopPlan(only.id, mode, "the region's only machine had no traffic")
        return None
    over = sum(1 for m in running if m.load >= m.soft_limit)
    excess = len(running) - (over + 1)
    if excess < 1:
        return None
    victim = min(running, key=lambda m: (m.load, -m.started_at, m.id))
    return StopPlan(victim.id, mode, f"{len(running)} running, {over} over soft_limit: one is excess")
