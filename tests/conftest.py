"""Session-wide test settings."""

from __future__ import annotations

import signal


def _terminate(_signum: int, _frame: object) -> None:
    # A run stopped with SIGTERM (a CI timeout, `timeout`, `kill`) unwinds like Ctrl-C, so fixtures still
    # tear down their fleets and nothing they started is left running.
    raise KeyboardInterrupt


def pytest_configure() -> None:
    signal.signal(signal.SIGTERM, _terminate)
