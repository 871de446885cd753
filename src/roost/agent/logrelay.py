"""A machine's output, line by line, with a timestamp and its stream (stdout or stderr), into its log file.

The machine writes into two FIFOs in its directory, which it holds open for reading and writing: so a write
never meets a FIFO without a reader (no SIGPIPE when the agent is away), and output the agent has not read
yet waits in the FIFO (up to its buffer, 1 MB; then the machine's writes wait) until the agent, restarted,
opens them again and carries on. The agent reads them on its event loop: no thread or process per machine.

Each line in the log file is `TIMESTAMP STREAM TEXT` (core/logline.py: RFC 3339 UTC with microseconds).
A line longer than MAX_LINE is cut into several.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import os
from pathlib import Path

from roost.core.logline import STREAMS, stamp

PIPE_SIZE = 1024 * 1024
MAX_LINE = 16 * 1024
_F_SETPIPE_SZ = 1031


def fifo_paths(machine_dir: Path) -> dict[str, Path]:
    return {stream: machine_dir / f"{stream}.fifo" for stream in STREAMS}


def machine_ends(machine_dir: Path) -> dict[str, int]:
    """The FIFOs' ends for the machine (stdout, stderr), opened for reading and writing; close them in the
    agent once the machine has them."""
    ends = {}
    for stream, path in fifo_paths(machine_dir).items():
        if not path.exists():
            os.mkfifo(path, 0o600)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_SIZE)
        ends[stream] = fd
    return ends


class LogBell:
    """Rung when lines are appended to a log file, so that a follower reads them at once instead of polling."""

    def __init__(self) -> None:
        self._waiters: dict[Path, set[asyncio.Future[None]]] = {}

    def ring(self, path: Path) -> None:
        for waiter in self._waiters.pop(path, set()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, path: Path, timeout: float) -> bool:
        """True when lines came within `timeout` seconds."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(path, set()).add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(path)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    self._waiters.pop(path, None)


BELL = LogBell()  # the agent's one bell: its relays ring it, the logs API's followers wait on it


class LogRelay:
    """Reads one machine's FIFOs into its log file while it runs (and, after an agent restart, again)."""

    def __init__(self, machine_dir: Path, log_path: Path, bell: LogBell = BELL) -> None:
        self.log_path = log_path
        self.bell = bell
        self._fds: dict[str, int] = {}
        self._partial: dict[str, bytes] = {stream: b"" for stream in STREAMS}
        self._paths = fifo_paths(machine_dir)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for stream, path in self._paths.items():
            if not path.exists():
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._fds[stream] = fd
            loop.add_reader(fd, self._readable, stream)

    def _readable(self, stream: str) -> None:
        fd = self._fds.get(stream)
        if fd is None:
            return
        chunks: list[bytes] = []
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while len(chunks) < 64:  # bounded per wake-up: other machines' output and the API come first
                data = os.read(fd, 65536)
                if not data:  # every writer closed it: nothing more will come (and EOF would wake us forever)
                    with contextlib.suppress(Exception):
                        asyncio.get_running_loop().remove_reader(fd)
                    break
                chunks.append(data)
        if chunks:
            self._write(stream, b"".join(chunks))

    def _write(self, stream: str, data: bytes, flush: bool = False) -> None:
        data = self._partial[stream] + data
        lines = data.split(b"\n")
        self._partial[stream] = b"" if flush else lines.pop()
        while len(self._partial[stream]) > MAX_LINE:
            lines.append(self._partial[stream][:MAX_LINE])
            self._partial[stream] = self._partial[stream][MAX_LINE:]
        if flush and lines and lines[-1] == b"":
            lines.pop()
        if not lines:
            return
        prefix = f"{stamp(dt.datetime.now(dt.UTC).timestamp())} {stream} ".encode()
        out = b"".join(prefix + line[:MAX_LINE] + b"\n" for line in lines)
        with open(self.log_path, "ab") as fh:
            fh.write(out)
        self.bell.ring(self.log_path)

    def stop(self) -> None:
        """The machine ended (or the agent stops): read what is left, then let go of the FIFOs."""
        loop = asyncio.get_running_loop()
        for stream, fd in list(self._fds.items()):
            self._readable(stream)
            if self._partial[stream]:
                self._write(stream, b"", flush=True)
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            os.close(fd)
        self._fds.clear()
