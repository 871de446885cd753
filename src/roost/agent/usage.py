"""Reading a machine's CPU time and memory from its cgroup (v1 or v2) or, without one, from its processes. Each
reader returns None for what it cannot see, so a scrape never fails for a machine that just exited."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from roost.agent.procinfo import TICKS

PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        return path.read_text()
    return None


def cpu_stat_seconds(text: str | None) -> float | None:
    """cgroup v2 `cpu.stat`: its usage_usec, in seconds."""
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == "usage_usec" and value.strip().isdigit():
            return int(value) / 1e6
    return None


def number(text: str | None, scale: float = 1.0) -> float | None:
    """A file holding one integer (cpuacct.usage in ns, memory.current, memory.usage_in_bytes), scaled."""
    value = (text or "").strip()
    return int(value) * scale if value.isdigit() else None


def cgroup_v2(directory: Path) -> tuple[float | None, int | None]:
    memory = number(_read(directory / "memory.current"))
    return cpu_stat_seconds(_read(directory / "cpu.stat")), None if memory is None else int(memory)


def cgroup_v1(cpuacct: Path | None, memory: Path | None) -> tuple[float | None, int | None]:
    cpu = number(_read(cpuacct / "cpuacct.usage"), 1e-9) if cpuacct else None
    used = number(_read(memory / "memory.usage_in_bytes")) if memory else None
    return cpu, None if used is None else int(used)


def stat_cpu_seconds(text: str | None, children: bool) -> float | None:
    """/proc/PID/stat: user and system time (with its waited-for children's when `children`), in seconds."""
    if not text:
        return None
    fields = text[text.rfind(")") + 2:].split()
    try:
        ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    except (IndexError, ValueError):
        return None
    return ticks / TICKS


def processes(pids: list[int]) -> tuple[float | None, int | None]:
    """CPU seconds and resident memory of a machine's processes (the first one's reaped children included)."""
    cpu: float | None = None
    rss: int | None = None
    for i, pid in enumerate(pids):
        seconds = stat_cpu_seconds(_read(Path(f"/proc/{pid}/stat")), children=i == 0)
        statm = (_read(Path(f"/proc/{pid}/statm")) or "").split()
        if seconds is not None:
            cpu = (cpu or 0.0) + seconds
        if len(statm) > 1 and statm[1].isdigit():
            rss = (rss or 0) + int(statm[1]) * PAGE
    return cpu, rss

