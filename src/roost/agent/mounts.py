"""mount(2) and umount2(2) through libc: a machine's overlay root is mounted on every start, and a `mount`
process would cost a few milliseconds of it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
MNT_DETACH = 2


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def overlay(target: Path, *, lower: Path, upper: Path, work: Path) -> None:
    for path in (lower, upper, work):
        if "," in str(path) or ":" in str(path):  # the option string's separators
            raise OSError(22, f"overlay path {path} holds ',' or ':'")
    options = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    _check(_libc.mount(b"overlay", str(target).encode(), b"overlay", 0, options), f"mount overlay on {target}")


def unmount(target: Path) -> None:
    _check(_libc.umount2(str(target).encode(), MNT_DETACH), f"unmount {target}")
