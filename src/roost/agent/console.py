"""An interactive shell in a machine, over a WebSocket (`roost ssh console`): the command runs on a pseudo-
terminal (in the machine: `runc exec -t`), its output goes out as binary messages, binary messages in are
typed into it, and a text message `{"resize": [rows, cols]}` resizes its terminal. When the command ends the
socket closes with code 1000 and the reason `exit N`; when the caller goes away the command is killed.
One read at a time from the terminal: a slow caller slows the command, nothing piles up."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import termios
from pathlib import Path

from starlette.websockets import WebSocket, WebSocketDisconnect

MAX_INPUT = 64 * 1024  # one message typed in


async def _read(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other side is closed (the command ended)
        return b""


def resize(fd: int, rows: int, cols: int) -> None:
    if 0 < rows < 10000 and 0 < cols < 10000:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def serve(ws: WebSocket, argv: list[str], cwd: Path | None, env: dict[str, str] | None) -> None:
    """Run argv on a terminal for the accepted WebSocket `ws` until either ends."""
    master, slave = os.openpty()
    resize(master, 24, 80)
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                                    env=env, start_new_session=True)
    except OSError as exc:
        os.close(master)
        os.close(slave)
        await ws.close(code=1011, reason=f"could not start {argv[0]}: {exc.strerror or exc}"[:120])
        return
    os.close(slave)

    async def output() -> None:
        while data := await _read(master):
            await ws.send_bytes(data)

    async def typed() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                os.write(master, message["bytes"][:MAX_INPUT])
            elif message.get("text"):
                with contextlib.suppress(ValueError, TypeError, KeyError, OSError):
                    rows, cols = json.loads(message["text"])["resize"]
                    resize(master, int(rows), int(cols))

    out_task = asyncio.ensure_future(output())
    in_task = asyncio.ensure_future(typed())
    exit_task = asyncio.ensure_future(proc.wait())
    try:
        done, _ = await asyncio.wait({in_task, exit_task}, return_when=asyncio.FIRST_COMPLETED)
        if exit_task in done:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(out_task, 2)  # what it printed last
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await ws.close(code=1000, reason=f"exit {exit_task.result()}")
    finally:
        for task in (in_task, out_task):
            task.cancel()
        if proc.returncode is None:  # the caller left: the command goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGHUP)
            try:
                await asyncio.wait_for(proc.wait(), 2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        os.close(master)
