"""A lean Socket.IO v5 / Engine.IO v4 client over one aiohttp websocket.

python-socketio's AsyncClient carries reconnection, namespaces, polling and binary support; a
load generator needs none of it and pays for all of it per connection. This client speaks just
the websocket transport on the default namespace:

* the server opens with ``0{"sid", "pingInterval", ...}``; we send ``40{"token": ...}``;
* ``40{...}`` means connected, ``44{"message", "data"}`` means refused;
* the server pings with ``2``, we answer ``3``;
* we emit ``42<id>["event", data]`` and the answer comes back as ``43<id>[data]``;
* pushes arrive as ``42["event", data]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from .exceptions import ConnectFailed, ProtocolViolation

__all__ = ["LeanSocket", "PushHandler", "socket_url"]

PushHandler = Callable[[str, Any], None]


def socket_url(http_url: str) -> str:
    base = http_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return base + "/socket.io/?EIO=4&transport=websocket"


class LeanSocket:
    def __init__(self, session: aiohttp.ClientSession, http_url: str, token: str,
                 on_push: PushHandler | None = None) -> None:
        self._session = session
        self._url = socket_url(http_url)
        self._token = token
        self._on_push = on_push
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected: asyncio.Future[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self.closed_reason: str | None = None

    @property
    def connected(self) -> bool:
        return (self._connected is not None and self._connected.done()
                and not self._connected.cancelled() and self._connected.exception() is None
                and self.closed_reason is None)

    async def connect(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        self._connected = loop.create_future()
        try:
            self._ws = await self._session.ws_connect(
                self._url, autoping=False, compress=0, max_msg_size=4 * 1024 * 1024,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0))
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectFailed(f"websocket: {type(exc).__name__}: {exc}") from None
        self._reader = asyncio.create_task(self._read_loop())
        try:
            await asyncio.wait_for(asyncio.shield(self._connected), timeout)
        except TimeoutError:
            await self.close()
            raise ConnectFailed(f"no Socket.IO connect answer within {timeout}s") from None
        except ConnectFailed:
            await self.close()
            raise

    async def emit(self, event: str, data: Any = None) -> asyncio.Future[Any]:
        """Send ``event`` with an ack id; the future resolves with the ack's first argument."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._ws is None or self.closed_reason is not None:
            future.set_exception(ConnectionResetError(self.closed_reason or "not connected"))
            return future
        ack_id = next(self._ids)
        self._pending[ack_id] = future
        frame = "42" + str(ack_id) + orjson.dumps([event, data]).decode()
        try:
            await self._ws.send_str(frame)
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            self._pending.pop(ack_id, None)
            if not future.done():
                future.set_exception(ConnectionResetError(f"send failed: {exc}"))
        return future

    def forget(self, future: asyncio.Future[Any]) -> None:
        """Stop waiting for an ack (after a timeout) so a late answer is dropped."""
        for ack_id, pending in list(self._pending.items()):
            if pending is future:
                del self._pending[ack_id]
                return

    async def call(self, event: str, data: Any = None, timeout: float = 10.0) -> Any:
        future = await self.emit(event, data)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.forget(future)

    async def close(self) -> None:
        if self.closed_reason is None:
            self.closed_reason = "closed by client"
        if self._ws is not None and not self._ws.closed:
            try:
                await self._ws.send_str("41")
                await self._ws.close()
            except (aiohttp.ClientError, OSError, RuntimeError):
                pass
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._fail_pending(self.closed_reason)

    # internals -------------------------------------------------------------------------------

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError(reason))
        if self._connected is not None and not self._connected.done():
            self._connected.set_exception(ConnectFailed(reason))

    async def _read_loop(self) -> None:
        assert self._ws is not None
        ws = self._ws
        reason = "server closed the websocket"
        try:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_frame(message.data)
                elif message.type is aiohttp.WSMsgType.ERROR:
                    reason = f"websocket error: {ws.exception()}"
                    break
        except ProtocolViolation as exc:
            reason = str(exc)
        except (aiohttp.ClientError, OSError) as exc:
            reason = f"websocket: {type(exc).__name__}: {exc}"
        if self.closed_reason is None:
            self.closed_reason = reason
        self._fail_pending(self.closed_reason)

    async def _on_frame(self, frame: str) -> None:
        assert self._ws is not None
        kind = frame[:1]
        if kind == "2":  # ping
            await self._ws.send_str("3")
        elif kind == "4":
            self._on_socket_packet(frame)
        elif kind == "1":  # engine close
            await self._ws.close()
        elif kind not in ("0", "3", "6"):
            raise ProtocolViolation(frame, "unknown Engine.IO packet")
        elif kind == "0" and self._ws is not None:
            await self._ws.send_str("40" + orjson.dumps({"token": self._token}).decode())

    def _on_socket_packet(self, frame: str) -> None:
        try:
            self._dispatch(frame)
        except orjson.JSONDecodeError:
            raise ProtocolViolation(frame, "payload is not JSON") from None

    def _dispatch(self, frame: str) -> None:
        packet = frame[1:2]
        body = frame[2:]
        if body.startswith("/"):  # a namespace other than "/" is none of our business
            return
        if packet == "2":
            event = orjson.loads(body)
            if self._on_push is not None and isinstance(event, list) and event:
                self._on_push(str(event[0]), event[1] if len(event) > 1 else None)
        elif packet == "3":
            digits = 0
            while digits < len(body) and body[digits].isdigit():
                digits += 1
            if digits == 0:
                raise ProtocolViolation(frame, "ack without an id")
            future = self._pending.pop(int(body[:digits]), None)
            args = orjson.loads(body[digits:])
            if future is not None and not future.done():
                future.set_result(args[0] if isinstance(args, list) and args else None)
        elif packet == "0":
            if self._connected is not None and not self._connected.done():
                self._connected.set_result(None)
        elif packet == "4":
            refusal = orjson.loads(body) if body else {}
            data = refusal.get("data") if isinstance(refusal, dict) else None
            code = data.get("code") if isinstance(data, dict) else None
            message = refusal.get("message", "refused") if isinstance(refusal, dict) else body
            if self._connected is not None and not self._connected.done():
                self._connected.set_exception(ConnectFailed(str(message), code))
        elif packet == "1":
            self.closed_reason = "server disconnected the socket"
        else:
            raise ProtocolViolation(frame, "unknown Socket.IO packet")
