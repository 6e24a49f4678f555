"""Durable certificate storage: the async ``CertificateStore`` protocol and its two backends.

``SQLiteCertificateStore`` (the embedded default, ``<data_dir>/certificates.sqlite3``) runs its
``sqlite3`` calls on one dedicated thread, so the event loop never waits on disk; several server
processes may open the same file, and writes that must be atomic across them run in ``BEGIN
IMMEDIATE`` transactions. ``PostgresCertificateStore`` (``--database-url``) keeps the same
guarantees on a server every node shares, through its unique keys and transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal, Protocol, TypeVar, cast

from ._models import AuditEntry, RevocationMismatch

__all__ = [
    "DB_FILE",
    "CertificateStore",
    "SQLiteCertificateStore",
    "StoredCertificate",
    "TransitionAction",
]

T = TypeVar("T")
DB_FILE = "certificates.sqlite3"
TransitionAction = Literal["expired", "activated"]
# Rows of several products and (anchor, category) pairs, fetched in one trip.
ProductRows = dict[str, list["StoredCertificate"]]
AnchorRows = dict[tuple[str, str], list["StoredCertificate"]]


@dataclass(frozen=True, slots=True)
class StoredCertificate:
    id: str
    kind: str
    product_id: str | None
    anchor_id: str | None
    category: str | None
    issued_at: int
    valid_from: int
    expires_at: int | None
    key_id: str
    document: str
    revocation: str | None
    # When the audit trail says the certificate was revoked (None: it does not). A revocation
    # counts if either this or ``revocation`` says so: deleting one row does not unrevoke.
    audit_revoked_at: int | None = None


class CertificateStore(Protocol):
    """Every method is async; a store opens itself on first use if ``open`` was not awaited,
    and refuses work (``RuntimeError``) once closed. A database that cannot be reached raises
    ``StoreUnavailable``."""

    async def open(self) -> None: ...

    async def insert(self, row: StoredCertificate, actor_id: str, actor_role: str) -> None: ...

    async def get(self, certificate_id: str) -> StoredCertificate | None: ...

    async def revoke(
        self,
        certificate_id: str,
        revoked_at: int,
        document: str,
        actor_id: str,
        actor_role: str,
        reason: str,
    ) -> bool:
        """Record the revocation; False if the certificate was already revoked."""
        ...

    async def for_product(self, product_id: str) -> list[StoredCertificate]: ...

    async def for_anchor(
        self, anchor_id: str, category: str | None
    ) -> list[StoredCertificate]: ...

    async def for_many(
        self, product_ids: Sequence[str], anchors: Sequence[tuple[str, str]]
    ) -> tuple[ProductRows, AnchorRows]:
        """``for_product`` of each product and ``for_anchor`` of each (anchor, category), in
        one trip to the database; every one asked for is a key of the answer."""
        ...

    async def revocation_mismatches(self) -> list[tuple[str, RevocationMismatch]]:
        """``(certificate id, "record_missing" | "audit_missing")`` for every certificate whose
        revocation table and audit trail disagree about a revocation."""
        ...

    async def due_transitions(
        self, now_ms: int
    ) -> list[tuple[StoredCertificate, TransitionAction]]: ...

    async def next_transition_after(self, now_ms: int) -> int | None: ...

    async def record_transition(
        self, certificate_id: str, action: TransitionAction, at: int
    ) -> bool:
        """Audit an expiry/activation; True only for the one caller that recorded it."""
        ...

    async def audit(self, certificate_id: str | None, limit: int) -> list[AuditEntry]: ...

    async def publish_key(self, key_id: str, public_pem: str, at: int) -> None:
        """Remember a public key this store's certificates may be signed with (kept forever:
        a key rotated out still verifies what it signed)."""
        ...

    async def known_keys(self) -> dict[str, str]:
        """Every published public key, ``{key_id: PEM}``."""
        ...

    async def close(self) -> None: ...


_SELECT = """
SELECT c.id, c.kind, c.product_id, c.anchor_id, c.category, c.issued_at, c.valid_from,
       c.expires_at, c.key_id, c.document, r.document,
       (SELECT a.at FROM audit a WHERE a.certificate_id = c.id AND a.action = 'revoked')
FROM certificates c LEFT JOIN revocations r ON r.certificate_id = c.id
"""
_REVOKED_IN_TABLE = "EXISTS (SELECT 1 FROM revocations r2 WHERE r2.certificate_id = c.id)"
_REVOKED_IN_AUDIT = (
    "EXISTS (SELECT 1 FROM audit a2 WHERE a2.certificate_id = c.id AND a2.action = 'revoked')"
)
# Revoked by either record: one deleted row does not bring a certificate back.
_NOT_REVOKED = f"NOT {_REVOKED_IN_TABLE} AND NOT {_REVOKED_IN_AUDIT}"


def _not_audited(action: str) -> str:
    return (
        "NOT EXISTS (SELECT 1 FROM audit a WHERE a.certificate_id = c.id "
        f"AND a.action = '{action}')"
    )


def _row(values: tuple[object, ...]) -> StoredCertificate:
    return StoredCertificate(*values)  # type: ignore[arg-type]


class _SqliteCertificates:
    """The SQLite work, synchronous: used only on ``SQLiteCertificateStore``'s thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        # Imported here: the offline verifier imports trustbadges with nothing but cryptography,
        # and the database package brings asyncpg.
        from database.sqlite import use_wal

        # Two processes starting on a fresh data dir at once: the switch waits for the other.
        use_wal(self._db)
        # FULL: a certificate acknowledged to its issuer survives a power cut too.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        schema = resources.files("trustbadges").joinpath("schema.sql").read_text("utf-8")
        with self._lock:
            self._db.executescript(schema)

    def _audit_insert(
        self,
        at: int,
        action: str,
        certificate_id: str,
        actor_id: str,
        actor_role: str,
        reason: str | None,
    ) -> None:
        self._db.execute(
            "INSERT INTO audit (at, action, certificate_id, actor_id, actor_role, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (at, action, certificate_id, actor_id, actor_role, reason),
        )

    def insert(self, row: StoredCertificate, actor_id: str, actor_role: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO certificates (id, kind, product_id, anchor_id, category, "
                    "issued_at, valid_from, expires_at, key_id, document) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.id,
                        row.kind,
                        row.product_id,
                        row.anchor_id,
                        row.category,
                        row.issued_at,
                        row.valid_from,
                        row.expires_at,
                        row.key_id,
                        row.document,
                    ),
                )
                self._audit_insert(row.issued_at, "issued", row.id, actor_id, actor_role, None)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, certificate_id: str) -> StoredCertificate | None:
        with self._lock:
            found = self._db.execute(_SELECT + " WHERE c.id = ?", (certificate_id,)).fetchone()
        return None if found is None else _row(found)

    def revoke(
        self,
        certificate_id: str,
        revoked_at: int,
        document: str,
        actor_id: str,
        actor_role: str,
        reason: str,
    ) -> bool:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                try:
                    self._db.execute(
                        "INSERT INTO revocations (certificate_id, revoked_at, document) "
                        "VALUES (?, ?, ?)",
                        (certificate_id, revoked_at, document),
                    )
                    # Unique per (certificate, action): the trail may say revoked already,
                    # its revocation row having been deleted since.
                    self._audit_insert(
                        revoked_at, "revoked", certificate_id, actor_id, actor_role, reason
                    )
                except sqlite3.IntegrityError:
                    self._db.execute("ROLLBACK")
                    return False
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return True

    def for_product(self, product_id: str) -> list[StoredCertificate]:
        with self._lock:
            rows = self._db.execute(
                _SELECT + " WHERE c.product_id = ? ORDER BY c.issued_at, c.id", (product_id,)
            ).fetchall()
        return [_row(r) for r in rows]

    def for_anchor(self, anchor_id: str, category: str | None) -> list[StoredCertificate]:
        query = _SELECT + " WHERE c.anchor_id = ?"
        params: tuple[str, ...] = (anchor_id,)
        if category is not None:
            query += " AND c.category = ?"
            params += (category,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY c.issued_at, c.id", params).fetchall()
        return [_row(r) for r in rows]

    def for_many(
        self, product_ids: Sequence[str], anchors: Sequence[tuple[str, str]]
    ) -> tuple[ProductRows, AnchorRows]:
        return ({p: self.for_product(p) for p in product_ids},
                {(a, c): self.for_anchor(a, c) for a, c in anchors})

    def revocation_mismatches(self) -> list[tuple[str, RevocationMismatch]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT c.id, 'record_missing' FROM certificates c "
                f"WHERE {_REVOKED_IN_AUDIT} AND NOT {_REVOKED_IN_TABLE} "
                "UNION ALL SELECT c.id, 'audit_missing' FROM certificates c "
                f"WHERE {_REVOKED_IN_TABLE} AND NOT {_REVOKED_IN_AUDIT} ORDER BY 1"
            ).fetchall()
        return [(str(r[0]), cast(RevocationMismatch, r[1])) for r in rows]

    def due_transitions(self, now_ms: int) -> list[tuple[StoredCertificate, TransitionAction]]:
        with self._lock:
            activated = self._db.execute(
                _SELECT + " WHERE c.valid_from > c.issued_at AND c.valid_from <= ? AND "
                f"{_NOT_REVOKED} AND {_not_audited('activated')} ORDER BY c.valid_from",
                (now_ms,),
            ).fetchall()
            expired = self._db.execute(
                _SELECT + " WHERE c.expires_at IS NOT NULL AND c.expires_at <= ? AND "
                f"{_NOT_REVOKED} AND {_not_audited('expired')} ORDER BY c.expires_at",
                (now_ms,),
            ).fetchall()
        result: list[tuple[StoredCertificate, TransitionAction]] = [
            (_row(r), "activated") for r in activated
        ]
        result += [(_row(r), "expired") for r in expired]
        return result

    def next_transition_after(self, now_ms: int) -> int | None:
        with self._lock:
            found = self._db.execute(
                "SELECT MIN(t) FROM ("
                f"SELECT MIN(c.expires_at) AS t FROM certificates c WHERE c.expires_at > ? "
                f"AND {_NOT_REVOKED} UNION ALL "
                f"SELECT MIN(c.valid_from) AS t FROM certificates c WHERE c.valid_from > ? "
                f"AND {_NOT_REVOKED})",
                (now_ms, now_ms),
            ).fetchone()
        return None if found is None or found[0] is None else int(found[0])

    def record_transition(self, certificate_id: str, action: TransitionAction, at: int) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO audit "
                "(at, action, certificate_id, actor_id, actor_role, reason) "
                "VALUES (?, ?, ?, 'platform', 'system', NULL)",
                (at, action, certificate_id),
            )
            return cursor.rowcount == 1

    def audit(self, certificate_id: str | None, limit: int) -> list[AuditEntry]:
        query = "SELECT seq, at, action, certificate_id, actor_id, actor_role, reason FROM audit"
        params: tuple[object, ...] = ()
        if certificate_id is not None:
            query += " WHERE certificate_id = ?"
            params = (certificate_id,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        return [AuditEntry(*r) for r in rows]

    def publish_key(self, key_id: str, public_pem: str, at: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO signing_keys (key_id, public_key, published_at) "
                "VALUES (?, ?, ?)", (key_id, public_pem, at))

    def known_keys(self) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT key_id, public_key FROM signing_keys").fetchall()
        return {str(k): str(v) for k, v in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SQLiteCertificateStore:
    """``CertificateStore`` on an embedded SQLite file, every call on one dedicated thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._db: _SqliteCertificates | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> SQLiteCertificateStore:
        return cls(data_dir / DB_FILE)

    async def open(self) -> None:
        async with self._opening:
            if self._closed:
                raise RuntimeError("certificate store is closed")
            if self._db is not None:
                return
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trustbadges")
            try:
                self._db = await asyncio.get_running_loop().run_in_executor(
                    executor, _SqliteCertificates, self.path)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._executor = executor

    async def close(self) -> None:
        async with self._opening:
            self._closed = True
            executor, db = self._executor, self._db
            self._executor, self._db = None, None
        if executor is None or db is None:
            return
        await asyncio.get_running_loop().run_in_executor(executor, db.close)
        executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[_SqliteCertificates], T]) -> T:
        if self._db is None:
            await self.open()
        db, executor = self._db, self._executor
        if db is None or executor is None:
            raise RuntimeError("certificate store is closed")
        return await asyncio.get_running_loop().run_in_executor(executor, fn, db)

    async def insert(self, row: StoredCertificate, actor_id: str, actor_role: str) -> None:
        await self._run(lambda db: db.insert(row, actor_id, actor_role))

    async def get(self, certificate_id: str) -> StoredCertificate | None:
        return await self._run(lambda db: db.get(certificate_id))

    async def revoke(self, certificate_id: str, revoked_at: int, document: str,
                     actor_id: str, actor_role: str, reason: str) -> bool:
        return await self._run(lambda db: db.revoke(
            certificate_id, revoked_at, document, actor_id, actor_role, reason))

    async def for_product(self, product_id: str) -> list[StoredCertificate]:
        return await self._run(lambda db: db.for_product(product_id))

    async def for_anchor(self, anchor_id: str, category: str | None) -> list[StoredCertificate]:
        return await self._run(lambda db: db.for_anchor(anchor_id, category))

    async def for_many(
        self, product_ids: Sequence[str], anchors: Sequence[tuple[str, str]]
    ) -> tuple[ProductRows, AnchorRows]:
        return await self._run(lambda db: db.for_many(product_ids, anchors))

    async def revocation_mismatches(self) -> list[tuple[str, RevocationMismatch]]:
        return await self._run(lambda db: db.revocation_mismatches())

    async def due_transitions(
        self, now_ms: int
    ) -> list[tuple[StoredCertificate, TransitionAction]]:
        return await self._run(lambda db: db.due_transitions(now_ms))

    async def next_transition_after(self, now_ms: int) -> int | None:
        return await self._run(lambda db: db.next_transition_after(now_ms))

    async def record_transition(
        self, certificate_id: str, action: TransitionAction, at: int
    ) -> bool:
        return await self._run(lambda db: db.record_transition(certificate_id, action, at))

    async def audit(self, certificate_id: str | None, limit: int) -> list[AuditEntry]:
        return await self._run(lambda db: db.audit(certificate_id, limit))

    async def publish_key(self, key_id: str, public_pem: str, at: int) -> None:
        await self._run(lambda db: db.publish_key(key_id, public_pem, at))

    async def known_keys(self) -> dict[str, str]:
        return await self._run(lambda db: db.known_keys())
