"""Standby takeover decisions: which standbys start when a host is declared dead.

A standby (a machine whose config lists `standbys`) starts only when the host of a machine it watches is
declared dead (unreachable, confirmed by other hosts) — never because that machine stopped, crashed or
was destroyed. It must itself be stopped, on a live host other than the dead one; a standby watching
several machines starts once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from roost.core.lifecycle import MAYBE_RUNNING, State


@dataclass(frozen=True)
class MachineView:
    id: str
    host_id: str
    state: State
    standbys: tuple[str, ...]  # the machines this one watches (it is a standby if non-empty)


@dataclass(frozen=True)
class Takeover:
    watched: str  # the machine on the dead host
    standby: str  # the machine that starts in its place


STARTABLE = frozenset({State.STOPPED, State.CREATED, State.FAILED, State.SUSPENDED})


def takeovers(dead_host: str, machines: Iterable[MachineView], live_hosts: set[str]) -> list[Takeover]:
    views = list(machines)
    on_dead = {m.id for m in views if m.host_id == dead_host and m.state in MAYBE_RUNNING | {State.STARTED}}
    plans: list[Takeover] = []
    started: set[str] = set()
    for standby in sorted(views, key=lambda m: m.id):
        if not standby.standbys or standby.id in started:
            continue
        if standby.host_id == dead_host or standby.host_id not in live_hosts or standby.state not in STARTABLE:
            continue
        for watched in standby.standbys:
            if watched in on_dead:
                plans.append(Takeover(watched, standby.id))
                started.add(standby.id)
                break
    return plans


def watched_on(host_id: str, machines: Iterable[MachineView]) -> set[str]:
    """Machines on `host_id` that a standby on another host watches: the ones its agent fences."""
    views = list(machines)
    hosts = {m.id: m.host_id for m in views}
    watched: set[str] = set()
    for standby in views:
        for target in standby.standbys:
            if hosts.get(target) == host_id and standby.host_id != host_id:
                watched.add(target)
    return watched
