"""What happens to a host's machines when the host comes back, and when an operator starts a machine that a
standby replaced: one rule, used by the agent, the server and deploy.

The rule (docs/failover.md):
- A machine whose desired state is *running* runs again once its host is back, unless a standby took over
  its work while the host was away. The fencing token decides which: the replaced machine's record names
  the standby that holds the work (`replaced_by`), and that machine stays stopped.
- The agent restarts its own machines at once (no control plane needed), except the *watched* ones (a
  standby elsewhere may have taken over): those wait, stopped, for the control plane's verdict. (When only
  the agent crashed and a process exited meanwhile, that was the app's own exit: its restart policy decides.)
- A suspended machine whose memory was lost with the host stays down: it becomes stopped (its files are
  kept, so the next start boots from them, as Fly does) and starts only when asked or when traffic comes.
- An operator may start a replaced machine again: the work is handed back with a new fencing token, and
  the standby is stopped and re-armed (a standby again, for the same machine).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from roost.core.lifecycle import State


class AgentAction(Enum):
    ADOPT = "adopt"  # the process outlived the agent: keep watching it
    RESTART = "restart"  # died with its host, desired running, nobody else can have taken over: start it now
    EXITED = "exited"  # only the agent was down and the process ended meanwhile: its restart policy decides
    AWAIT = "await"  # desired running but watched: stopped until the control plane says
    STOPPED = "stopped"  # was suspended: memory lost, stays down (files kept)
    NOTHING = "nothing"  # it was not running


def on_agent_start(recorded_state: State, alive: bool, watched: bool, host_restarted: bool) -> AgentAction:
    """An agent that starts again finds each machine of its record alive or not. `host_restarted`: the host
    itself went down (its boot id changed), so every process died with it, not by its own exit."""
    if recorded_state not in (State.STARTED, State.SUSPENDED):
        return AgentAction.NOTHING
    if alive:
        return AgentAction.ADOPT
    if recorded_state is State.SUSPENDED:
        return AgentAction.STOPPED
    if watched:
        # The host was silent long enough for a takeover, or may have been: the control plane knows.
        return AgentAction.AWAIT
    return AgentAction.RESTART if host_restarted else AgentAction.EXITED


class ServerAction(Enum):
    START = "start"  # run it again: nothing took its work
    KEEP_STOPPED = "keep-stopped"  # its standby holds the work
    NOTHING = "nothing"  # it was not meant to run


DESIRED_RUNNING = frozenset({State.STARTED, State.STARTING, State.REPLACING})


def on_machine_lost(desired: State, fencing: Mapping[str, Any]) -> ServerAction:
    """The control plane's verdict on a machine its host lost (a power cut, or fenced while cut off),
    reported by the agent once it is back: `desired` is what the store said before the report."""
    if fencing.get("replaced_by"):
        return ServerAction.KEEP_STOPPED
    if desired in DESIRED_RUNNING:
        return ServerAction.START
    return ServerAction.NOTHING


def replaced_by(fencing: Mapping[str, Any]) -> str:
    """The standby that holds this machine's work, or ''."""
    return str(fencing.get("replaced_by") or "")


def holds_work(machine_id: str, fencing: Mapping[str, Any]) -> bool:
    """A standby that took over holds its pair's work: it may be started (and stopped) like any machine."""
    return fencing.get("holder") == machine_id


@dataclass(frozen=True)
class HandBack:
    token: int
    watched: dict[str, Any]  # the replaced machine's new fencing record
    standby: dict[str, Any]  # the standby's


def hand_back(watched_id: str, standby_id: str, watched_fencing: Mapping[str, Any],
              standby_fencing: Mapping[str, Any], now: float) -> HandBack:
    """The fencing records after an operator starts a replaced machine: a token above both, held by it."""
    token = max(int(watched_fencing.get("token", 1)), int(standby_fencing.get("token", 1))) + 1
    record = {"token": token, "pair": [watched_id, standby_id], "holder": watched_id, "at": now}
    return HandBack(token, dict(record), dict(record))
