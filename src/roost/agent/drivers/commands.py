"""Running one command to completion for a caller (a machine's exec): its output bounded, its time bounded,
and, when time runs out, the command killed (not just the tool that started it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as signals
from pathlib import Path

from roost.agent.drivers.base import DriverError, ExecResult

MAX_OUTPUT = 1024 * 1024  # bytes kept of each of stdout and stderr
MAX_STDIN = 1024 * 1024


class CommandTimeout(DriverError):
    pass


async def _read_bounded(stream: asyncio.StreamReader | None, limit: int) -> bytes:
    if stream is None:
        return b""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[:limit - len(kept)]
    return bytes(kept)


async def run_command(argv: list[str], *, stdin: bytes, timeout: float, env: dict[str, str] | None = None,
                      cwd: Path | None = None, pid_file: Path | None = None) -> ExecResult:
    """Run argv; on timeout, kill it (the pid in `pid_file` too: the process a runtime started for us)."""
    if len(stdin) > MAX_STDIN:
        raise DriverError(f"stdin is larger than {MAX_STDIN} bytes")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=cwd, start_new_session=True)
    except OSError as exc:
        raise DriverError(f"could not run {argv[0]!r}: {exc.strerror or exc}") from exc

    async def feed() -> None:
        if proc.stdin is None:
            return
        # The command may exit without reading its input: its pipe is then closed under us (uvloop says so
        # with a RuntimeError).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        with contextlib.suppress(RuntimeError):
            proc.stdin.close()

    work = asyncio.gather(feed(), _read_bounded(proc.stdout, MAX_OUTPUT), _read_bounded(proc.stderr, MAX_OUTPUT),
                          proc.wait())
    try:
        _, out, err, status = await asyncio.wait_for(work, timeout)
    except TimeoutError:
        _kill(proc.pid, pid_file)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        raise CommandTimeout(f"the command did not finish within {timeout:g} s and was killed") from None
    if status < 0:
        return ExecResult(out, err, 128 - status, -status)
    if status > 128 and pid_file is not None:  # a runtime reports a signal as 128 + its number
        return ExecResult(out, err, status, status - 128)
    return ExecResult(out, err, status)


def _kill(pid: int, pid_file: Path | None) -> None:
    if pid_file is not None:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signals.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signals.SIGKILL)
