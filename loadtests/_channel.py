"""How the coordinating process and its buyer workers talk: small dict messages.

In one process an asyncio queue pair; across processes a multiprocessing pipe, read in a thread
so neither event loop blocks while waiting.
"""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection
from typing import Any, Protocol

__all__ = ["Channel", "PipeChannel", "QueueChannel", "queue_pair"]

Message = dict[str, Any]


class Channel(Protocol):
    async def send(self, message: Message) -> None: ...

    async def recv(self) -> Message: ...


class PipeChannel:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def send(self, message: Message) -> None:
        # Large results could fill the pipe; a thread keeps the loop responsive meanwhile.
        await asyncio.to_thread(self._connection.send, message)

    async def recv(self) -> Message:
        message: Message = await asyncio.to_thread(self._connection.recv)
        return message


class QueueChannel:
    def __init__(self, outgoing: asyncio.Queue[Message], incoming: asyncio.Queue[Message]) -> None:
        self._outgoing = outgoing
        self._incoming = incoming

    async def send(self, message: Message) -> None:
        await self._outgoing.put(message)

    async def recv(self) -> Message:
        return await self._incoming.get()


def queue_pair() -> tuple[QueueChannel, QueueChannel]:
    there: asyncio.Queue[Message] = asyncio.Queue()
    back: asyncio.Queue[Message] = asyncio.Queue()
    return QueueChannel(there, back), QueueChannel(back, there)
