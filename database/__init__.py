"""What the PostgreSQL backends of ``orders`` and ``trustbadges`` share: the database URL's check,
a connection pool that reports an unreachable server as one error, versioned ``.sql``
migrations applied once under an advisory lock, however many nodes start at the same time, and
running a store's work on a pooled connection (``open_migrated``, ``run``, ``numbered``).

It knows no domain package: each passes its own migrations (``<package>/pg/NNNN_name.sql``) and
turns ``DatabaseUnavailable`` into its own exception.

::

    DatabaseError
    ├── DatabaseUrlError        the URL is not a PostgreSQL URL the server can use
    ├── DatabaseUnavailable     the server cannot be reached (at start, or a query met a lost one)
    └── SchemaTooNew            the database was migrated by a newer release than this one
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

__all__ = [
    "UNAVAILABLE_ERRORS",
    "DatabaseError",
    "DatabaseUnavailable",
    "DatabaseUrlError",
    "Migration",
    "SchemaTooNew",
    "check_database_url",
    "guarded",
    "migrate",
    "migrations_in",
    "numbered",
    "open_migrated",
    "open_pool",
    "redact",
    "run",
]

T = TypeVar("T")
SCHEMES = ("postgresql", "postgres")
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# One lock for every component's migrations: their schema_migrations table is shared.
_MIGRATION_LOCK = int.from_bytes(hashlib.blake2b(b"liveroom schema", digest_size=8).digest(),
                                 "big", signed=True)

# What a lost or unreachable server looks like to asyncpg: refused or reset sockets, the
# server shutting down or not yet accepting (class 57, class 08), a connection gone mid-query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


class DatabaseError(Exception):
    """Root of this package's errors."""


class DatabaseUrlError(DatabaseError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"database URL {redact(url)!r}: {reason}")
        self.url = redact(url)
        self.reason = reason


class DatabaseUnavailable(DatabaseError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"database {redact(url)} is unavailable: {detail}")
        self.url = redact(url)
        self.detail = detail


class SchemaTooNew(DatabaseError):
    def __init__(self, component: str, found: int, known: int) -> None:
        super().__init__(
            f"the {component} schema in the database is at version {found}, newer than the "
            f"{known} this release knows: upgrade liveroom on this node (never downgrade a "
            "node that shares a migrated database)")
        self.component = component
        self.found = found
        self.known = known


def redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe to log or print)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def check_database_url(url: str) -> str:
    """``url`` if it names a PostgreSQL server and database the driver can use; else
    ``DatabaseUrlError`` saying what is wrong. Nothing is contacted."""
    try:
        parts = urlsplit(url)
        port = parts.port
        query = parse_qs(parts.query, strict_parsing=False)
    except ValueError as exc:
        raise DatabaseUrlError(url, str(exc)) from None
    if parts.scheme not in SCHEMES:
        raise DatabaseUrlError(url, "must start with postgresql:// (or postgres://)")
    if not parts.hostname and "host" not in query:
        raise DatabaseUrlError(url, "names no host (postgresql://USER@HOST:PORT/DATABASE)")
    if port == 0:
        raise DatabaseUrlError(url, "port 0 is not a port")
    if not parts.path.strip("/"):
        raise DatabaseUrlError(url, "names no database (postgresql://USER@HOST:PORT/DATABASE)")
    return url


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10,
                    connect_timeout_s: float = 5.0) -> asyncpg.Pool:
    """A pool of ``max_size`` connections at most; ``DatabaseUnavailable`` if the server cannot
    be reached (or refuses us) within ``connect_timeout_s``. Connections lost later are
    replaced by the pool on their next use."""
    check_database_url(url)
    try:
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size,
                                         timeout=connect_timeout_s,
                                         max_inactive_connection_lifetime=60.0)
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(url, _one_line(exc)) from None
    if pool is None:  # pragma: no cover - create_pool returns the pool when awaited
        raise DatabaseUnavailable(url, "no pool")
    return pool


async def open_migrated(url: str, component: str, package: str, *,
                        max_size: int) -> asyncpg.Pool:
    """``open_pool``, then ``migrate`` the database to ``component``'s migrations of
    ``package`` (``migrations_in(package)``); the pool is closed again if migrating fails."""
    pool = await open_pool(url, max_size=max_size)
    try:
        await migrate(pool, component, migrations_in(package))
    except BaseException:
        await pool.close()
        raise
    return pool


async def run(pool: asyncpg.Pool, url: str, fn: Callable[[Any], Awaitable[T]], *,
              write: bool = False) -> T:
    """``fn(connection)`` on a connection of ``pool``, in a transaction when ``write``; a lost
    or unreachable server becomes ``DatabaseUnavailable`` (``guarded``). A read is tried once
    more, on a fresh connection: one the pool kept from before a server restart fails on its
    first use; a write is not tried again."""

    async def work() -> T:
        async with pool.acquire() as conn:
            if not write:
                return await fn(conn)
            async with conn.transaction():
                return await fn(conn)

    try:
        return await guarded(url, work)
    except DatabaseUnavailable:
        if write:
            raise
        return await guarded(url, work)


def numbered(sql: str) -> str:
    """``?`` placeholders (SQL shared with a SQLite store) as PostgreSQL's ``$1, $2…``."""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, OSError) else text


async def guarded(url: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work``; a lost or unreachable server becomes ``DatabaseUnavailable``."""
    try:
        return await work()
    except UNAVAILABLE_ERRORS as exc:
        raise DatabaseUnavailable(url, _one_line(exc)) from None
    except asyncpg.InterfaceError as exc:
        if "closed" in str(exc) or "connection" in str(exc):
            raise DatabaseUnavailable(url, _one_line(exc)) from None
        raise


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_in(package: str, folder: str = "pg") -> tuple[Migration, ...]:
    """The ``NNNN_name.sql`` files of ``package/folder`` in version order; versions must run
    1, 2, 3… without gaps (a gap is a file lost in packaging)."""
    found: list[Migration] = []
    for entry in resources.files(package).joinpath(folder).iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name,
                                   entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise ValueError(f"{package}/{folder}: migration versions must be 1..N without gaps")
    return tuple(found)


async def migrate(pool: asyncpg.Pool, component: str,
                  migrations: tuple[Migration, ...]) -> int:
    """Apply the migrations of ``component`` the database lacks, each in its own transaction
    with its ``schema_migrations`` row, under a session advisory lock: nodes starting together
    wait for one another and apply each version once. Returns the version the database is at.
    Raises ``SchemaTooNew`` (and changes nothing) if the database is ahead of ``migrations``."""
    known = migrations[-1].version if migrations else 0
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
                "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
                "PRIMARY KEY (component, version))")
            rows = await conn.fetch(
                "SELECT version FROM schema_migrations WHERE component = $1", component)
            done = {int(r["version"]) for r in rows}
            newest = max(done, default=0)
            if newest > known:
                raise SchemaTooNew(component, newest, known)
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (component, version, name) "
                        "VALUES ($1, $2, $3)", component, migration.version, migration.name)
                newest = migration.version
            return newest
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
