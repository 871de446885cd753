"""The machine lifecycle: one transition table for every request that changes a machine's state.

A user request is checked against the table before anything happens: an illegal move raises a
RoostError with Fly's status (412) and changes nothing. A legal one names the transitional state the
machine enters while the host agent does the work; the agent's report then settles it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from roost.core.errors import RoostError, precondition


class State(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"
    REPLACING = "replacing"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    SUSPEND = "suspend"
    RESTART = "restart"
    SIGNAL = "signal"
    UPDATE = "update"
    DESTROY = "destroy"
    FORCE_DESTROY = "force_destroy"
    CORDON = "cordon"
    METADATA = "metadata"
    LEASE = "lease"


S = State
TRANSIENT = frozenset({S.STARTING, S.STOPPING, S.SUSPENDING, S.REPLACING, S.DESTROYING})
RUNNING = frozenset({S.STARTED})
# States in which the machine's process may exist on its host (used by fencing and capacity).
MAYBE_RUNNING = frozenset({S.STARTING, S.STARTED, S.STOPPING, S.SUSPENDING, S.REPLACING})
WAITABLE = frozenset({S.STARTED, S.STOPPED, S.SUSPENDED, S.DESTROYED, S.CREATED, S.FAILED})
ALIVE = frozenset(set(State) - {S.DESTROYED})


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[State]  # the move happens
    noop: frozenset[State]  # already there (or on the way): succeed without doing anything
    enters: State | None  # transitional state written before the agent works; None = no state change
    verb: str  # for the error message


TABLE: dict[Action, Rule] = {
    Action.START: Rule(frozenset({S.CREATED, S.STOPPED, S.SUSPENDED, S.FAILED}),
                       frozenset({S.STARTING, S.STARTED}), S.STARTING, "start"),
    Action.STOP: Rule(frozenset({S.STARTED, S.STARTING, S.SUSPENDED, S.CREATED, S.FAILED}),
                      frozenset({S.STOPPING, S.STOPPED}), S.STOPPING, "stop"),
    Action.SUSPEND: Rule(frozenset({S.STARTED}), frozenset({S.SUSPENDING, S.SUSPENDED}), S.SUSPENDING, "suspend"),
    Action.RESTART: Rule(frozenset({S.STARTED}), frozenset(), S.STOPPING, "restart"),
    Action.SIGNAL: Rule(frozenset({S.STARTED}), frozenset(), None, "signal"),
    Action.UPDATE: Rule(frozenset({S.CREATED, S.STARTED, S.STOPPED, S.SUSPENDED, S.FAILED}), frozenset(),
                        S.REPLACING, "update"),
    Action.DESTROY: Rule(frozenset({S.CREATED, S.STOPPED, S.SUSPENDED, S.FAILED}), frozenset(), S.DESTROYING,
                         "destroy"),
    Action.FORCE_DESTROY: Rule(frozenset(ALIVE - {S.DESTROYING}), frozenset({S.DESTROYING}), S.DESTROYING,
                               "destroy"),
    Action.CORDON: Rule(frozenset(ALIVE - {S.DESTROYING}), frozenset(), None, "cordon"),
    Action.METADATA: Rule(frozenset(ALIVE - {S.DESTROYING}), frozenset(), None, "change metadata of"),
    Action.LEASE: Rule(frozenset(ALIVE - {S.DESTROYING}), frozenset(), None, "lease"),
}


def check(action: Action, current: State) -> bool:
    """True if the action must be carried out, False if it is a no-op; raises if it is illegal."""
    rule = TABLE[action]
    if current in rule.allowed:
        return True
    if current in rule.noop:
        return False
    raise illegal(action, current)


def illegal(action: Action, current: State) -> RoostError:
    rule = TABLE[action]
    if action is Action.DESTROY and current in MAYBE_RUNNING:
        return precondition(
            f"unable to destroy machine, not currently stopped or suspended (state '{current}'); "
            "stop it first or pass force=true"
        )
    if action is Action.SIGNAL:
        return precondition(f"unable to signal machine, it is not running (state '{current}')")
    return precondition(f"failed_precondition: unable to {rule.verb} machine from current state: '{current}'")


def observed(current: State, reported: State) -> State:
    """What the store records when the host agent reports `reported` (the agent sees the process).

    The agent is the authority on whether the process runs; the only states it cannot override are the
    ones the control plane alone decides: a destroyed machine stays destroyed, and a machine being
    destroyed only moves on to destroyed.
    """
    if current is S.DESTROYED:
        return S.DESTROYED
    if current is S.DESTROYING and reported is not S.DESTROYED:
        return S.DESTROYING
    return reported
