"""A TCP relay in front of a real server that a test can hold and release: a stall that lasts
exactly as long as the test says, instead of a pause timed against the wall clock."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["StallProxy"]


class StallProxy:
    """Relays connections on ``port`` to ``target_port``. While held, bytes from clients are
    kept back (not lost): the server sees nothing until ``release``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self._target = (host, target_port)
        self._host = host
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> StallProxy:
        self._server = await asyncio.start_server(self._relay, self._host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self._target)
        pumps = [asyncio.create_task(self._pump(client_r, server_w, gated=True)),
                 asyncio.create_task(self._pump(server_r, client_w, gated=False))]
        for pump in pumps:
            self._tasks.add(pump)
            pump.add_done_callback(self._tasks.discard)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        for writer in (client_w, server_w):
            writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    gated: bool) -> None:
        while data := await reader.read(65536):
            if gated:
                await self._open.wait()
            writer.write(data)
            await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
