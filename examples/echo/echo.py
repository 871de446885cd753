"""A TCP echo service for Roost: every line it receives comes back prefixed with the machine's id.

It listens on $PORT at $FLY_PRIVATE_IP; stops on SIGINT/SIGTERM.
"""

import asyncio
import os
import signal

MACHINE = os.environ.get("FLY_MACHINE_ID", "?").encode()


async def echo(reader, writer):
    try:
        while line := await reader.readline():
            writer.write(MACHINE + b" " + line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(echo, os.environ.get("FLY_PRIVATE_IP", "127.0.0.1"),
                                        int(os.environ.get("PORT", "7000")))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"echo listening on {server.sockets[0].getsockname()}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
