"""The Lua scripts: loaded from ``inventory/lua`` with importlib.resources, registered once with
SCRIPT LOAD and run by EVALSHA. A NOSCRIPT answer (Redis restarted, SCRIPT FLUSH) re-registers the
script and runs it again, which is safe because a script that Redis did not know did not run.

The hand-off writer in the prelude is generated from ``handoff.schema`` when a script is loaded,
so every script writes exactly the schema's fields (and a change of the schema changes the SHA).

The calls go through a ``ScriptCalls``: the lean :class:`ScriptConnection` (the hot path's), or
redis-py's client for what that connection does not speak (TLS).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, cast

import hiredis
import msgpack
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool, SentinelManagedConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handoff import schema

from ._connection import Arg, ScriptConnection
from .exceptions import ScriptFailed, StoreUnavailable

log = logging.getLogger("inventory.scripts")

__all__ = [
    "SCRIPT_NAMES",
    "RedisPyCalls",
    "Script",
    "ScriptCalls",
    "ScriptRunner",
    "handoff_lua",
    "load_script",
    "script_calls_for",
    "store_errors",
]

SCRIPT_NAMES = (
    "create_sale",
    "end_sale",
    "buy_batch",
    "commit",
    "release",
    "restock",
    "expire_holds",
)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: bytes
    sha: str


@contextmanager
def store_errors() -> Iterator[None]:
    """Redis unreachable or timing out becomes StoreUnavailable (a typed, retryable error)."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc


def _read(name: str) -> str:
    return (resources.files("inventory") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


# The line of the prelude that the generated hand-off writer replaces.
_HANDOFF_MARKER = "--@handoff"


def _lua_string(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_:.{}-]+", text):
        raise ValueError(f"not a plain name for Lua: {text!r}")
    return f"'{text}'"


def handoff_lua() -> str:
    """The Lua that writes hand-off entries, from ``handoff.schema``: ``HANDOFF`` (entry type →
    its name on the stream), ``HANDOFF_GROUP`` (the consumer group) and
    ``handoff(entry_type, r, now)``, which adds one entry to the sale's stream with the
    schema's fields, each copied from the reservation record ``r`` of the same name, and the
    event-time field set to ``now``."""
    types = ", ".join(f"[{_lua_string(t)}] = {_lua_string(t)}" for t in schema.ENTRY_TYPES)
    values = "".join(
        f"    [{_lua_string(f.name)}] = "
        + ("now" if f.name == schema.EVENT_TIME_FIELD else f"r[{_lua_string(f.name)}]")
        + ",\n"
        for f in schema.FIELDS
    )
    return (
        f"local HANDOFF = {{{types}}}\n"
        f"local HANDOFF_GROUP = {_lua_string(schema.CONSUMER_GROUP)}\n"
        "local function handoff(entry_type, r, now)\n"
        f"  redis.call('XADD', K.stream, '*', {_lua_string(schema.TYPE_FIELD)}, entry_type,\n"
        f"    {_lua_string(schema.DATA_FIELD)}, cmsgpack.pack({{\n"
        f"{values}"
        "  }))\n"
        "end\n"
    )


def _prelude() -> str:
    lines = _read("_prelude").splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.strip() == _HANDOFF_MARKER]
    if len(marked) != 1:
        raise ValueError(f"_prelude.lua must hold one {_HANDOFF_MARKER} line")
    lines[marked[0]] = handoff_lua()
    return "".join(lines)


def load_script(name: str, shared: Sequence[str] = ()) -> Script:
    """The script ``name``, after the prelude and the ``shared`` helper files (in order)."""
    # The prelude is shared code, not a script of its own: Lua in Redis has no require().
    parts = [_prelude(), *(_read(part) for part in shared), _read(name)]
    source = "\n".join(parts).encode()
    return Script(name=name, source=source, sha=hashlib.sha1(source).hexdigest())


class ScriptCalls(Protocol):
    """Where the scripts run. An error reply is returned as a ``hiredis.ReplyError`` value; an
    unreachable Redis raises StoreUnavailable. ``resends`` counts the calls sent again after
    their connection was lost (their first copy may have run)."""

    resends: int

    async def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> Any: ...

    async def script_load(self, source: bytes) -> Any: ...

    async def confirmed_evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg],
                                fence_key: str, replicas: int,
                                timeout_ms: int) -> tuple[Any, int]:
        """The script's reply, and how many replicas acknowledged it (``WAIT`` after a fence
        write, on the connection the script ran on)."""
        ...

    async def replicas(self) -> int:
        """The primary's connected replicas now."""
        ...

    async def close(self) -> None: ...


class RedisPyCalls:
    """Script calls through a redis-py client (its pool, its retries, TLS, cluster routing)."""

    # redis-py retries inside its own call; whether it did is not known here.
    resends = 0

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        return await self._call(self._client.evalsha(sha, len(keys), *keys, *args))

    async def script_load(self, source: bytes) -> Any:
        return await self._call(self._client.script_load(source))

    async def confirmed_evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Arg],
                                fence_key: str, replicas: int,
                                timeout_ms: int) -> tuple[Any, int]:
        # A pipeline runs on one connection of the pool, as WAIT needs.
        with store_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.evalsha(sha, len(keys), *keys, *args)
                pipe.set(fence_key, 1)
                pipe.execute_command("WAIT", replicas, timeout_ms)
                script, _, wait = await pipe.execute(raise_on_error=False)
        if isinstance(script, NoScriptError):
            script = hiredis.ReplyError(f"NOSCRIPT {script}")
        elif isinstance(script, ResponseError):
            script = hiredis.ReplyError(str(script))
        return script, (int(wait) if isinstance(wait, int) else 0)

    async def replicas(self) -> int:
        if getattr(self._client, "connection_pool", None) is None:  # a RedisCluster
            # WAIT answers for one node's connection; a cluster routes each call by key, so
            # the confirmation is not offered there (0: never asked for).
            return 0
        with store_errors():
            info = await self._client.info("replication")
        return sum(1 for name, value in info.items()
                   if name.startswith("slave") and isinstance(value, dict)
                   and value.get("state") == "online")

    async def close(self) -> None:
        """The client belongs to the caller."""

    @staticmethod
    async def _call(pending: Any) -> Any:
        with store_errors():
            try:
                return await cast(Awaitable[Any], pending)
            except NoScriptError as exc:
                return hiredis.ReplyError(f"NOSCRIPT {exc}")
            except ResponseError as exc:
                return hiredis.ReplyError(str(exc))


def script_calls_for(client: aioredis.Redis) -> ScriptCalls:
    """The lean connection to the server ``client`` talks to (behind Sentinel: to the primary
    its sentinels name, asked again on every new connection), or the client itself when that
    connection cannot speak to it (TLS, or a cluster client, which routes each call by key)."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        if pool.connection_class is not SentinelManagedConnection:  # TLS
            return RedisPyCalls(client)
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
        return ScriptConnection.like(kwargs, resolve=pool.get_master_address)
    if pool is None or pool.connection_class not in (Connection, UnixDomainSocketConnection):
        return RedisPyCalls(client)
    return ScriptConnection.like(pool.connection_kwargs)


class ScriptRunner:
    """Runs the package's scripts; every reply is a msgpack document."""

    def __init__(self, calls: ScriptCalls, scripts: Sequence[Script] | None = None) -> None:
        """``scripts``: the scripts to register (default: the flash sale's)."""
        self._calls = calls
        if scripts is None:
            scripts = [load_script(name) for name in SCRIPT_NAMES]
        self.scripts = {script.name: script for script in scripts}

    async def register(self) -> None:
        for script in self.scripts.values():
            await self._load(script)

    async def close(self) -> None:
        await self._calls.close()

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script and decode its msgpack reply."""
        return (await self.run_resent(name, keys, args))[0]

    async def run_resent(
        self, name: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> tuple[Any, bool]:
        """``run``, and whether a call may have been sent twice meanwhile: then a reply saying
        "nothing changed" may be the second copy's, the first having made the change."""
        script = self.scripts[name]
        resends = self._calls.resends
        reply = await self._calls.evalsha(script.sha, keys, args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            await self._load(script)
            reply = await self._calls.evalsha(script.sha, keys, args)
        if isinstance(reply, hiredis.ReplyError):
            log.error("script %s failed: %s", name, reply)
            raise ScriptFailed(name, str(reply))
        return msgpack.unpackb(reply, raw=False), self._calls.resends != resends

    async def run_confirmed(
        self, name: str, keys: Sequence[str], args: Sequence[Arg], fence_key: str,
        replicas: int, timeout_ms: int,
    ) -> tuple[Any, bool, int]:
        """``run_resent``, and how many replicas acknowledged the script's effects within
        ``timeout_ms`` (see ``ScriptCalls.confirmed_evalsha``)."""
        script = self.scripts[name]
        resends = self._calls.resends
        reply, confirmed = await self._calls.confirmed_evalsha(
            script.sha, keys, args, fence_key, replicas, timeout_ms)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            await self._load(script)
            reply, confirmed = await self._calls.confirmed_evalsha(
                script.sha, keys, args, fence_key, replicas, timeout_ms)
        if isinstance(reply, hiredis.ReplyError):
            log.error("script %s failed: %s", name, reply)
            raise ScriptFailed(name, str(reply))
        return msgpack.unpackb(reply, raw=False), self._calls.resends != resends, confirmed

    async def replicas(self) -> int:
        return await self._calls.replicas()

    async def _load(self, script: Script) -> None:
        reply = await self._calls.script_load(script.source)
        if isinstance(reply, hiredis.ReplyError):
            log.error("script %s could not be registered: %s", script.name, reply)
            raise ScriptFailed(script.name, str(reply))
