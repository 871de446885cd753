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
