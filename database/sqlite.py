"""What the SQLite stores of ``orders`` and ``trustbadges`` share: opening a file that several
processes may open at the same moment."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]


def use_wal(conn: sqlite3.Connection, attempts: int = 500) -> None:
    """Switch the file to WAL (it stays so). Switching a fresh file needs it to itself for a
    moment, and SQLite answers "database is locked" at once instead of waiting while another
    process starting up holds it, so try again for up to ~5 s."""
    mode = None
    for attempt in range(attempts):
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY or (
                attempt == attempts - 1
            ):
                raise
            mode = None
        if mode == "wal":
            return
        time.sleep(0.01)
    raise sqlite3.OperationalError(f"cannot switch {mode!r} journal to WAL: database is busy")
