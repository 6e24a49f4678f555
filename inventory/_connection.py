"""A lean Redis connection for the script calls: one pipelined socket, hiredis parsing.

Every buy batch is one EVALSHA. Through redis-py each call also takes a connection from the pool
(with a readiness probe), packs its arguments through the encoder, runs the retry wrapper and the
read timeouts, and the observability hooks: several times the CPU of the same EVALSHA written on
a raw stream, and under a steady stream of buys most of what a buy cost above the no-op round
trip (docs/performance.md, "Session 5", has the numbers).

``ScriptConnection`` writes each command as one ``transport.write`` and matches replies to
callers in order (Redis answers a connection's commands in the order they were sent), so any
number of calls share the one socket without waiting for each other. What redis-py did for us is
kept, by hand:

* connect lazily, with a timeout, then AUTH and SELECT as the URL asks;
* a command that met a lost connection (Redis restarted, the socket reset) is sent again on a
  new one, after a capped exponential back-off, like the pool's ``Retry``; the scripts are
  idempotent (a buy is keyed by user and request id, commit and release check the hold's
  state), so sending one twice is safe. After the last attempt the caller gets
  ``StoreUnavailable``;
* ``LOADING`` (Redis reading its AOF after a restart) is retried the same way;
* a reply that does not come within ``reply_timeout_s`` (5 s, redis-py's socket timeout) ends
  the connection (replies are matched by position, so it cannot go on) and the call is retried
  like a lost connection; TCP keepalive finds a peer that vanished from an idle connection;
* ``LOADING``, ``BUSY``, ``MASTERDOWN`` and ``READONLY`` (a restart, a long script, a failover)
  are retried the same way before the caller gets ``StoreUnavailable``; after ``READONLY`` (the
  server was demoted to a replica) the next attempt opens a new connection;
* behind Redis Sentinel, the address is asked of the sentinels (``resolve``) on every new
  connection, so after a failover the next attempt reaches the promoted replica.

``confirmed_evalsha`` runs a script and then ``WAIT`` for replicas in the same write on the same
socket, so Redis's replication offset covers what the script wrote (see its docstring).

Sending a call again is safe because every script is idempotent: a buy is keyed by user and
request id, commit, release and restock check the reservation's state, and a sale created twice
is recognised as the same one. (What the caller cannot tell is whether its first copy changed
anything; see ``InventoryService._notify``.)

Error replies come back as :class:`hiredis.ReplyError` values, never raised here; the script
runner maps them (``NOSCRIPT`` re-registers the script).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import hiredis

from .exceptions import StoreUnavailable

__all__ = [
    "Address",
    "Arg",
    "ConnectionLost",
    "Resolve",
    "ScriptConnection",
    "online_replicas",
    "pack_command",
]

log = logging.getLogger("inventory.connection")

Arg = bytes | str | int
_MAX_EVALSHA_HEADS = 1024
# Error replies that say "not now" rather than "no".
_TRANSIENT = ("LOADING", "BUSY", "MASTERDOWN", "READONLY")
# TCP keepalive as redis-py sets it: probe after 30 s idle, every 5 s, give up after 3.
_KEEPALIVE = ((socket.TCP_KEEPIDLE, 30), (socket.TCP_KEEPINTVL, 5), (socket.TCP_KEEPCNT, 3))


# Where the primary is now (host, port), asked on every new connection: Sentinel's answer.
Resolve = Callable[[], Awaitable[tuple[str, int]]]


def online_replicas(info: bytes | str) -> int:
    """The replicas of an ``INFO replication`` reply that are in sync (``state=online``): of
    the ``connected_slaves``, one still receiving its first copy (``wait_bgsave``,
    ``send_bulk``) cannot acknowledge a WAIT yet."""
    text = info.decode() if isinstance(info, bytes) else info
    online = 0
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("slave") and name[5:].isdigit() and "state=online" in value.split(","):
            online += 1
    return online


class ConnectionLost(Exception):
    """The socket closed (or never opened) before the reply came; the command may be resent."""


def pack_command(args: Sequence[Arg]) -> bytes:
    """One RESP array of bulk strings."""
    return b"*%d\r\n%b" % (len(args), _bulk_strings(args))


def _bulk_strings(args: Sequence[Arg]) -> bytes:
    parts = []
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        elif type(arg) is int:
            data = b"%d" % arg
        else:
            raise TypeError(f"a Redis argument must be bytes, str or int, not {type(arg).__name__}")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


class _RespProtocol(asyncio.Protocol):
    """Replies are handed to the waiting futures in the order the commands were written."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but they are one.
        self._transport = cast(asyncio.Transport, transport)

    def request(self, command: bytes) -> asyncio.Future[Any]:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionLost("not connected")
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        transport.write(command)
        self._waiters.append(waiter)
        return waiter

    def request_many(self, commands: Sequence[bytes]) -> list[asyncio.Future[Any]]:
        """Several commands in one write: Redis runs them back to back on this connection."""
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionLost("not connected")
        loop = asyncio.get_running_loop()
        waiters: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        transport.write(b"".join(commands))
        self._waiters.extend(waiters)
        return waiters

    async def settle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until every reply asked for has come."""
        if self._waiters:
            await asyncio.wait(list(self._waiters), timeout=timeout_s)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiters = self._waiters
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = waiters.popleft()
                if not waiter.done():  # the caller may have been cancelled meanwhile
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # A stream we cannot follow (or a reply nobody asked for): nothing after it can be
            # matched, so the connection is finished.
            log.error("Redis script connection out of step (%s); closing it", exc)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        error = ConnectionLost(str(exc) if exc else "connection closed")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@dataclass(frozen=True, slots=True)
class Address:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket, instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = None


class ScriptConnection:
    def __init__(
        self,
        address: Address,
        *,
        connect_timeout_s: float = 5.0,
        reply_timeout_s: float = 5.0,
        attempts: int = 6,
        backoff_base_s: float = 0.02,
        backoff_cap_s: float = 0.5,
        resolve: Resolve | None = None,
    ) -> None:
        """``resolve``: asked for the primary's address before each new connection (Sentinel);
        without it ``address`` is the server's."""
        if attempts < 1 or connect_timeout_s <= 0 or reply_timeout_s <= 0:
            raise ValueError("attempts and timeouts must be positive")
        self.address = address
        self._connect_timeout_s = connect_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._closed = False
        self.resends = 0
        self._attempts = attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._resolve = resolve
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        # EVALSHA's script and keys are the same for every batch of a sale: packed once.
        self._evalsha_heads: dict[tuple[str, tuple[str, ...]], bytes] = {}

    @classmethod
    def like(cls, connection_kwargs: dict[str, Any],
             resolve: Resolve | None = None) -> ScriptConnection:
        """A connection to the server a redis-py pool's ``connection_kwargs`` describe (plain
        TCP or a unix socket), or to the primary ``resolve`` names (Sentinel)."""
        return cls(resolve=resolve, address=Address(
            host=str(connection_kwargs.get("host", "127.0.0.1")),
            port=int(connection_kwargs.get("port", 6379)),
            path=connection_kwargs.get("path"),
            db=int(connection_kwargs.get("db", 0) or 0),
            username=connection_kwargs.get("username"),
            password=connection_kwargs.get("password"),
        ))

    async def call(self, *args: Arg) -> Any:
        """Send one command and return its reply (an error reply is returned as a
        ``hiredis.ReplyError`` value). Raises StoreUnavailable once Redis stays unreachable."""
        return await self._send(pack_command(args))

    async def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return await self._send(self._evalsha_command(sha, keys, args))

    async def confirmed_evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg],
                                fence_key: str, replicas: int,
                                timeout_ms: int) -> tuple[Any, int]:
        """Run a script, then ``SET fence_key`` and ``WAIT replicas timeout_ms``, written
        together on one connection and sent again together: returns the script's reply and how
        many replicas acknowledged everything up to the fence. The fence is a write after the
        script on the same server, so the count covers what the script found as well as what it
        wrote (a replayed buy writes nothing, and a fresh connection's own offset is 0)."""
        extra = self._timeout_for(timeout_ms)
        commands = [
            self._evalsha_command(sha, keys, args),
            pack_command(["SET", fence_key, "1"]),
            pack_command(["WAIT", replicas, timeout_ms]),
        ]
        replies = await self._send_many(commands, extra_timeout_s=extra)
        wait = replies[2]
        if isinstance(wait, hiredis.ReplyError):
            return replies[0], 0
        return replies[0], int(wait)

    async def replicas(self) -> int:
        """How many replicas of the primary are in sync now (``INFO replication``); 0 if it
        cannot say."""
        reply = await self.call("INFO", "replication")
        if isinstance(reply, hiredis.ReplyError):
            return 0
        return online_replicas(reply)

    def _timeout_for(self, timeout_ms: int) -> float:
        return max(0.0, timeout_ms / 1000)

    def _evalsha_command(self, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> bytes:
        head_key = (sha, tuple(keys))
        head = self._evalsha_heads.get(head_key)
        if head is None:
            if len(self._evalsha_heads) >= _MAX_EVALSHA_HEADS:
                self._evalsha_heads.clear()
            # Without the array's length, which depends on the arguments.
            head = pack_command(["EVALSHA", sha, len(keys), *keys]).partition(b"\r\n")[2]
            self._evalsha_heads[head_key] = head
        count = 3 + len(keys) + len(args)
        return b"*%d\r\n%b%b" % (count, head, _bulk_strings(args))

    async def _send(self, command: bytes) -> Any:
        return (await self._send_many([command]))[0]

    async def _send_many(self, commands: Sequence[bytes], *,
                         extra_timeout_s: float = 0.0) -> list[Any]:
        last = ""
        for attempt in range(self._attempts):
            if attempt:
                self.resends += 1
                await asyncio.sleep(min(self._backoff_cap_s, self._backoff_base_s * 2 ** attempt))
            if self._closed:
                raise StoreUnavailable("the script connection is closed")
            try:
                protocol = self._protocol or await self._connect()
                if len(commands) == 1:
                    waiters = [protocol.request(commands[0])]
                else:
                    waiters = protocol.request_many(commands)
                # A plain timer on the replies (cheaper than asyncio.timeout, once per batch).
                expiry = asyncio.get_running_loop().call_later(
                    self._reply_timeout_s + extra_timeout_s, _time_out, waiters)
                try:
                    replies = [await waiter for waiter in waiters]
                except TimeoutError:
                    protocol.abort()  # a reply that never came leaves every later one misplaced
                    raise
                finally:
                    expiry.cancel()
                    if len(waiters) > 1:
                        _retrieve(waiters)
            except (ConnectionLost, OSError, TimeoutError) as exc:
                last = str(exc) or f"no reply within {self._reply_timeout_s:g} s"
                continue
            transient = [r for r in replies
                         if isinstance(r, hiredis.ReplyError) and str(r).startswith(_TRANSIENT)]
            if transient:
                last = str(transient[0])
                if last.startswith("READONLY"):
                    # A demoted primary: the next attempt asks where the primary is now.
                    protocol.abort()
                continue
            return replies
        raise StoreUnavailable(f"Redis at {self._where()} did not answer: {last}")

    async def script_load(self, source: bytes) -> Any:
        return await self.call("SCRIPT", "LOAD", source)

    async def close(self) -> None:
        """Take no more calls; the calls already sent get their replies (within the reply
        timeout), then the socket is closed."""
        self._closed = True
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            await protocol.settle(self._reply_timeout_s)
            protocol.close()
            await protocol.closed

    def _where(self) -> str:
        address = self.address
        return address.path or f"{address.host}:{address.port}"

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            # Callers that queued behind the first one share the connection it made.
            if self._protocol is not None:
                return self._protocol
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self._connect_timeout_s):
                if self._resolve is not None:
                    host, port = await self._resolve_primary()
                    self.address = replace(self.address, host=host, port=port)
                address = self.address
                if address.path:
                    _, protocol = await loop.create_unix_connection(_RespProtocol, address.path)
                else:
                    transport, protocol = await loop.create_connection(
                        _RespProtocol, address.host, address.port)
                    _keep_alive(transport.get_extra_info("socket"))
                try:
                    await self._handshake(protocol)
                except BaseException:
                    protocol.abort()
                    raise
            protocol.closed.add_done_callback(lambda _: self._forget(protocol))
            self._protocol = protocol
            return protocol

    async def _resolve_primary(self) -> tuple[str, int]:
        assert self._resolve is not None
        try:
            host, port = await self._resolve()
        except Exception as exc:  # redis-py's MasterNotFoundError, sentinels unreachable
            raise ConnectionLost(f"no primary from the sentinels: {exc}") from exc
        return str(host), int(port)

    async def _handshake(self, protocol: _RespProtocol) -> None:
        address = self.address
        steps: list[tuple[Arg, ...]] = []
        if address.password is not None:
            steps.append(("AUTH", address.username, address.password) if address.username
                         else ("AUTH", address.password))
        if address.db:
            steps.append(("SELECT", address.db))
        for step in steps:
            reply = await protocol.request(pack_command(step))
            if isinstance(reply, hiredis.ReplyError):
                # Wrong password or database: retrying cannot help, and saying so beats a
                # generic "unavailable" after six attempts.
                raise StoreUnavailable(f"Redis refused {step[0]!s}: {reply}")

    def _forget(self, protocol: _RespProtocol) -> None:
        if self._protocol is protocol:
            self._protocol = None


def _retrieve(waiters: list[asyncio.Future[Any]]) -> None:
    """Mark the errors of the replies nobody awaited after the first failed as seen."""
    for waiter in waiters:
        if waiter.done() and not waiter.cancelled():
            waiter.exception()


def _time_out(waiters: list[asyncio.Future[Any]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(TimeoutError())


def _keep_alive(sock: Any) -> None:
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in _KEEPALIVE:
        sock.setsockopt(socket.IPPROTO_TCP, option, value)
