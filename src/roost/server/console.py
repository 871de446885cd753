"""`roost ssh console` through the control plane: the caller's WebSocket relayed to one opened with the
machine's host agent (agent/console.py runs the shell). Each side's close reaches the other, with its code
and reason (`exit N` when the shell ends; 4000 + an HTTP status when something refused)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import websockets
from starlette.websockets import WebSocket, WebSocketDisconnect

from roost.core.errors import RoostError


async def refuse(ws: WebSocket, exc: RoostError) -> None:
    await ws.accept()
    await ws.close(code=4000 + exc.status, reason=exc.message[:120])


async def relay(client: WebSocket, connect: Any) -> None:
    try:
        agent = await connect
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
        await refuse(client, RoostError(503, f"host agent unreachable: {exc}"))
        return
    await client.accept()

    async def up() -> None:
        while True:
            message = await client.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await agent.send(message["bytes"])
            elif message.get("text") is not None:
                await agent.send(message["text"])

    async def down() -> None:
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            async for data in agent:
                if isinstance(data, bytes):
                    await client.send_bytes(data)
                else:
                    await client.send_text(data)

    tasks = {asyncio.ensure_future(up()), asyncio.ensure_future(down())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await agent.close()
        code = agent.protocol.close_code or 1000
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await client.close(code=code if code in (1000, 1011) or 4000 <= code < 5000 else 1011,
                               reason=(agent.protocol.close_reason or "")[:120])
