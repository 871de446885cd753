"""What `GET .../machines/{id}/ps` shows (Fly's ProcessStat): each process of a machine with its command,
directory, memory, CPU and the TCP sockets it listens on, read from /proc. The table parsing is pure."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
MAX_CMDLINE = 4096


def listening(table: str, inodes: set[str], v6: bool) -> list[str]:
    """Addresses (`ip:port`) of the sockets in /proc/net/tcp{,6} `table` that listen and belong to `inodes`."""
    out = []
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A" or fields[9] not in inodes:
            continue
        hex_ip, hex_port = fields[1].split(":")
        raw = bytes.fromhex(hex_ip)
        # The kernel prints each 32-bit word in host (little-endian) order.
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
        ip = ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw)
        port = int(hex_port, 16)
        out.append(f"[{ip}]:{port}" if v6 else f"{ip}:{port}")
    return out


def stat(pid: int, boot: float | None = None) -> dict[str, Any] | None:
    """One process's ProcessStat, or None if it is gone."""
    proc = Path(f"/proc/{pid}")
    try:
        raw = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()[:MAX_CMDLINE]
        rss_pages = int((proc / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
    boot = boot if boot is not None else _boot_time()
    age = max(time.time() - (boot + started / TICKS), 1e-3)
    directory = ""
    with contextlib.suppress(OSError):
        directory = os.readlink(proc / "cwd")
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in (proc / "fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    sockets = []
    if inodes:
        for name, v6 in (("tcp", False), ("tcp6", True)):
            with contextlib.suppress(OSError):
                sockets += [{"proto": "tcp", "address": a}
                            for a in listening((proc / "net" / name).read_text(), inodes, v6)]
    guest_pid = pid
    with contextlib.suppress(OSError, ValueError):
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                guest_pid = int(line.split()[-1])  # as the machine sees it, in its own PID namespace
    command = " ".join(part.decode(errors="replace") for part in cmdline.split(b"\0") if part)
    return {
        "pid": guest_pid, "command": command or raw[raw.find("(") + 1:raw.rfind(")")],
        "directory": directory, "rss": rss_pages * PAGE,
        "cpu": round(100 * (utime + stime) / TICKS / age),  # percent of one CPU over its life
        "rtime": round(1000 * utime / TICKS), "stime": round(1000 * stime / TICKS),  # CPU ms: user, system
        "listen_sockets": sockets,
    }


def _boot_time() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def stats(pids: list[int]) -> list[dict[str, Any]]:
    boot = _boot_time()
    return [s for s in (stat(pid, boot) for pid in sorted(pids)) if s is not None]
