"""Restart policy: after an unrequested exit, does the machine start again? Fly's rules: `no` never,
`always` always, `on-failure` (the default) on a non-zero exit up to `max_retries` restarts within a
five-minute window; `spot-price` behaves as on-failure here (there is no spot market)."""

from __future__ import annotations

from collections.abc import Sequence

from roost.core.machine_config import RestartPolicy

WINDOW_SECONDS = 300.0


def should_restart(policy: RestartPolicy, exit_code: int | None, recent_restarts: Sequence[float], now: float) -> bool:
    in_window = sum(1 for t in recent_restarts if now - t < WINDOW_SECONDS)
    if policy.policy == "no":
        return False
    if policy.policy == "always":
        return True
    failed = exit_code is None or exit_code != 0
    return failed and in_window < policy.max_retries


def backoff(attempt: int) -> float:
    """Seconds to wait before restart number `attempt` (1-based): quick first, capped at 5 s."""
    return float(min(5.0, 0.1 * (2 ** max(0, attempt - 1))))
