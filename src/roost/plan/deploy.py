"""Deploy planning: which process groups get new machines and how many, how existing machines are updated.

flyctl (internal/command/deploy): a group "needs machines" when no existing machine carries its
`fly_process_group` (first deploy, a new group, or a deploy after scaling to zero). Such a group gets, with
--ha (the default): 2 machines when it has services, 1 machine when it has mounts (volumes don't
replicate), else 1 machine plus 1 stopped standby watching it. Existing machines are updated in place:
machines that were started (or starting, or failed) are launched with the new version; standbys and every
other machine that was not running stay stopped (skip_launch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STRATEGIES = ("rolling", "immediate", "canary", "bluegreen")
DEFAULT_MAX_UNAVAILABLE = 0.33
LAUNCHED_AFTER_UPDATE = ("started", "starting", "failed", "replacing")


@dataclass(frozen=True)
class GroupPlan:
    group: str
    roles: tuple[str, ...]  # "first", "second", "standby" for new machines; () when the group has machines

    def describe(self) -> str:
        if self.roles == ("first",):
            return f'1 "{self.group}" machine'
        if self.roles == ("first", "second"):
            return f'2 "{self.group}" machines'
        return f'1 "{self.group}" machine and 1 standby machine for it'


def new_machines(group: str, has_services: bool, has_mounts: bool, ha: bool) -> GroupPlan:
    if not ha or has_mounts:
        return GroupPlan(group, ("first",))
    if has_services:
        return GroupPlan(group, ("first", "second"))
    return GroupPlan(group, ("first", "standby"))


def groups_needing_machines(config_groups: Sequence[str], existing_groups: Mapping[str, int]) -> list[str]:
    return sorted(g for g in config_groups if existing_groups.get(g, 0) == 0)


def groups_to_remove(config_groups: Sequence[str], existing_groups: Mapping[str, int]) -> list[str]:
    return sorted(g for g, n in existing_groups.items() if n and g not in config_groups)


def skip_launch(state: str, is_standby: bool) -> bool:
    """flyctl's skipLaunch: only machines that were running come back up after an update. The state is
    looked at first, as flyctl does: a standby that runs (it took over from a machine on a failed host) is
    doing the group's work and is relaunched with the new version; a stopped standby stays stopped."""
    if state == "started":
        return False
    if is_standby:
        return True
    return state not in LAUNCHED_AFTER_UPDATE


def state_after_update(state: str, launched: bool) -> str:
    """What an update leaves a machine in, for the deploy's own report. A suspended machine cannot resume
    into a new version (its memory belongs to the old one): it ends stopped, and starts cold next time."""
    if launched:
        return "started"
    return "stopped" if state == "suspended" else state


def pool_size(max_unavailable: float | None, machines: int) -> int:
    """How many running machines a rolling deploy updates at once (flyctl's getPoolSize)."""
    value = DEFAULT_MAX_UNAVAILABLE if max_unavailable is None else max_unavailable
    if value >= 1:
        return int(value)
    return max(1, math.ceil(machines * value))


def chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i:i + size]) for i in range(0, len(items), max(1, size))]


def strategy(requested: str | None, configured: str | None) -> str:
    for value in (requested, configured):
        if value in STRATEGIES:
            return value
    return "rolling"
