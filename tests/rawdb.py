"""Plain SQL on a store's database behind the store's back, on either backend: what a script,
an operator or another release could do to it."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import asyncpg

__all__ = ["REFUSED", "REJECTED", "RawDatabase", "StoreLocation", "location_url"]

# Where a store lives: a data dir (SQLite) or a PostgreSQL URL.
StoreLocation = Path | str
# What either database raises when a constraint or a schema trigger refuses a write.
REFUSED = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError, asyncpg.RaiseError)
# ... and when a trigger refuses a change it does not allow at all (an append-only table).
REJECTED = (sqlite3.DatabaseError, asyncpg.RaiseError)


def location_url(where: StoreLocation) -> str | None:
    """The database URL of ``where`` (None: SQLite in the data dir)."""
    return None if isinstance(where, Path) else where


class RawDatabase:
    """Another writer of the store's database (a script, another version): plain SQL with ``?``
    placeholders, each statement committed on its own, on either backend."""

    def __init__(self, where: StoreLocation, sqlite_file: str) -> None:
        self.where = where
        self.sqlite_file = sqlite_file
        self._sqlite: sqlite3.Connection | None = None
        self._pg: asyncpg.Connection | None = None

    async def __aenter__(self) -> RawDatabase:
        if isinstance(self.where, Path):
            self._sqlite = sqlite3.connect(self.where / self.sqlite_file, isolation_level=None)
        else:
            self._pg = await asyncpg.connect(self.where)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            await self._pg.close()

    async def execute(self, sql: str, *args: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute(sql, args)
            return
        assert self._pg is not None
        await self._pg.execute(_numbered(sql), *args)

    async def value(self, sql: str, *args: object) -> object:
        """The first column of the first row."""
        if self._sqlite is not None:
            row = self._sqlite.execute(sql, args).fetchone()
            return None if row is None else row[0]
        assert self._pg is not None
        return await self._pg.fetchval(_numbered(sql), *args)

    async def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        if self._sqlite is not None:
            return [tuple(row) for row in self._sqlite.execute(sql, args)]
        assert self._pg is not None
        return [tuple(row) for row in await self._pg.fetch(_numbered(sql), *args)]

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self.where, Path)


def _numbered(sql: str) -> str:
    numbered = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(numbered)}", sql)
