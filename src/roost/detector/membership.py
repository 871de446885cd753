"""Host membership from heartbeats: ok -> unknown (suspect) -> unreachable (dead).

A host is judged only on the time since its last heartbeat; the server feeds `now`. Defaults: agents
beat every 0.25 s; a host that misses 0.75 s is suspect and one that misses 1.5 s is dead, so a dead
host is declared within about 1.6 s (under the 2 s target) while a busy host has six beats of slack.
"""

from __future__ import annotations

from dataclasses import dataclass

OK = "ok"
UNKNOWN = "unknown"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class DetectorConfig:
    heartbeat_interval: float = 0.25
    suspect_after: float = 0.75
    dead_after: float = 1.5


def judge(last_heartbeat: float, now: float, config: DetectorConfig) -> str:
    silence = now - last_heartbeat
    if silence >= config.dead_after:
        return UNREACHABLE
    if silence >= config.suspect_after:
        return UNKNOWN
    return OK


@dataclass(frozen=True)
class Probe:
    """What other hosts answered when asked to reach a silent one (SWIM's indirect probe)."""

    at: float  # when the answer came
    reachable: bool  # some peer reached its agent


RECHECK_AFTER = 1.0  # a host only the control plane lost is asked about again this often


def confirm(probe: Probe | None, last_heartbeat: float, now: float) -> tuple[bool | None, bool]:
    """(dead, probe_again) for a silent host. `dead` is None until a probe made after the host went silent
    has answered; then True only if no peer could reach it. A host the peers still reach is probed again
    every RECHECK_AFTER seconds, so that it is declared dead once it really dies."""
    if probe is None or probe.at < last_heartbeat:
        return None, True
    if probe.reachable:
        return False, now - probe.at > RECHECK_AFTER
    return True, False
