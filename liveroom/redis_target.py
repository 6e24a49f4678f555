"""Where the server's Redis is, and the one place its connections are built.

A Redis URL is either a plain server (``redis://``, ``rediss://``, ``unix://``) or a service
behind Redis Sentinel::

    redis+sentinel://[[username]:password@]host:port[,host:port...]/service_name[?db=N]

The sentinels' addresses are listed (three is the usual number); the credentials and the
database are the data nodes' (the sentinels themselves are reached without them). Every
connection the server makes goes through :func:`redis_client` (the services' pools, the hand-off
consumer's) or :func:`socketio_url` (python-socketio's manager of ``--workers N``); the inventory's
lean script connection follows the client it is built from (``inventory.script_calls_for``). So
after a failover each of them asks the sentinels where the primary is now.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "POOL_WAIT_S",
    "SENTINEL_SCHEME",
    "RedisTarget",
    "parse_redis_url",
    "redis_client",
    "socketio_url",
]

SENTINEL_SCHEME = "redis+sentinel"
PLAIN_SCHEMES = ("redis", "rediss", "unix")
# A request that waits for a free connection under a spike is slow, not failed: the wait is
# bounded generously, and the pool bounds the connections.
POOL_WAIT_S = 30
# A sentinel that does not answer is skipped for the next one after this long.
SENTINEL_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL: ``sentinels`` is empty for a plain server."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def behind_sentinel(self) -> bool:
        return bool(self.sentinels)


def parse_redis_url(url: str) -> RedisTarget:
    """The target a Redis URL names; ValueError says what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme in PLAIN_SCHEMES:
        return RedisTarget(url=url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"a Redis URL starts with redis://, rediss://, unix:// or "
                         f"{SENTINEL_SCHEME}://, not {url!r}")
    hosts = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for entry in hosts.split(","):
        host, colon, port = entry.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{SENTINEL_SCHEME}:// lists sentinels as host:port[,host:port...];"
                             f" {entry!r} is not one")
        sentinels.append((host.strip("[]"), int(port)))
    service = parts.path.strip("/")
    if not service or "/" in service:
        raise ValueError(f"{SENTINEL_SCHEME}:// needs the service name as its path "
                         f"(/mymaster), not {parts.path!r}")
    query = parse_qs(parts.query)
    db_values = query.pop("db", ["0"])
    if query:
        raise ValueError(f"{SENTINEL_SCHEME}:// takes only ?db=N, not {sorted(query)}")
    if not db_values[-1].isdigit():
        raise ValueError(f"{SENTINEL_SCHEME}://...?db= must be a number, not {db_values[-1]!r}")
    return RedisTarget(url=url, sentinels=tuple(sentinels), service=service,
                       db=int(db_values[-1]), username=parts.username or None,
                       password=parts.password)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (the primary's address asked of the sentinels on each new connection)
    with the blocking pool's bound: under a spike a caller waits for a free connection."""


def redis_client(redis_url: str, pool_size: int) -> aioredis.Redis:
    """A bounded pool that reconnects after Redis restarts (and, behind Sentinel, follows a
    failover to the promoted replica): a command that met a dropped connection is retried on a
    fresh one (our writes are idempotent or guarded)."""
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.02), 5)
    errors: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError]
    target = parse_redis_url(redis_url)
    if not target.behind_sentinel:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=pool_size, timeout=POOL_WAIT_S,
            retry=retry, retry_on_error=errors)
        return aioredis.Redis(connection_pool=pool)
    assert target.service is not None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S,
                         "socket_connect_timeout": SENTINEL_TIMEOUT_S},
        db=target.db, username=target.username, password=target.password)
    client: aioredis.Redis = sentinel.master_for(
        target.service, connection_pool_class=_BlockingSentinelPool,
        max_connections=pool_size, timeout=POOL_WAIT_S, retry=retry, retry_on_error=errors)
    return client


def socketio_url(redis_url: str) -> str:
    """The URL python-socketio's Redis manager understands for the same target (its Sentinel
    form puts the database in the path: ``redis+sentinel://hosts/db/service``)."""
    target = parse_redis_url(redis_url)
    if not target.behind_sentinel:
        return redis_url
    auth = ""
    if target.password is not None:
        auth = f"{target.username or ''}:{target.password}@"
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    return f"{SENTINEL_SCHEME}://{auth}{hosts}/{target.db}/{target.service}"
