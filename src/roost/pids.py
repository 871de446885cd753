"""Whether a process is alive, for the components that watch others by pid (the dev fleet, the fence keeper)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie is gone for every purpose here). Not a pid
    (0 or less) is never alive: kill(0) and kill(-1) would ask about our own process group, or everything."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # the state follows the command name in parentheses, which may itself hold ") "
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False
