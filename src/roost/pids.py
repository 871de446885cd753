"""Whether a process is alive, and what /proc says of it, for the components that watch others by pid (the dev
fleet, the fence keeper, the drivers)."""

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
    fields = stat_fields(pid)
    if not fields:
        return False
    return fields[0] != "Z"


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after "pid (comm) " (state, ppid, pgrp, ...: field N of proc(5) is index N - 3), or None
    if the process is gone. The command name may hold spaces and ") ": split after the last ')'."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()
