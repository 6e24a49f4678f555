"""The Lua scripts: loaded from ``inventory/lua`` with importlib.resources, registered once with
SCRIPT LOAD and run by EVALSHA. A NOSCRIPT answer (Redis restarted, SCRIPT FLUSH) re-registers the
script and runs it again, which is safe because a script that Redis did not know did not run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .exceptions import StoreUnavailable

__all__ = ["SCRIPT_NAMES", "Script", "ScriptRunner", "load_script", "store_errors"]

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


def load_script(name: str) -> Script:
    # The prelude is shared code, not a script of its own: Lua in Redis has no require().
    source = (_read("_prelude") + "\n" + _read(name)).encode()
    return Script(name=name, source=source, sha=hashlib.sha1(source).hexdigest())


class ScriptRunner:
    """Runs the package's scripts on one client; every reply is a msgpack document."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self.scripts = {name: load_script(name) for name in SCRIPT_NAMES}

    async def register(self) -> None:
        with store_errors():
            for script in self.scripts.values():
                await cast(Awaitable[Any], self._client.script_load(script.source))

    async def run(self, name: str, keys: Sequence[str], args: Sequence[bytes | str | int]) -> Any:
        """Run a script and decode its msgpack reply."""
        script = self.scripts[name]
        with store_errors():
            try:
                raw = await cast(
                    Awaitable[bytes], self._client.evalsha(script.sha, len(keys), *keys, *args)
                )
            except NoScriptError:
                await cast(Awaitable[Any], self._client.script_load(script.source))
                raw = await cast(
                    Awaitable[bytes], self._client.evalsha(script.sha, len(keys), *keys, *args)
                )
        return msgpack.unpackb(raw, raw=False)
