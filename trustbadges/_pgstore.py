"""``CertificateStore`` on a PostgreSQL server shared by every node (``--database-url``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, cast

import asyncpg

import database

from ._models import AuditEntry, RevocationMismatch
from ._store import (
    _NOT_REVOKED,
    _REVOKED_IN_AUDIT,
    _REVOKED_IN_TABLE,
    _SELECT,
    AnchorRows,
    ProductRows,
    StoredCertificate,
    TransitionAction,
    _not_audited,
)
from .exceptions import StoreUnavailable

__all__ = ["MIGRATIONS_COMPONENT", "PostgresCertificateStore"]

MIGRATIONS_COMPONENT = "certificates"


def _pg_row(record: Any) -> StoredCertificate:
    return StoredCertificate(*tuple(record))


class PostgresCertificateStore:
    """``CertificateStore`` on PostgreSQL; ``open`` connects and migrates (once across nodes).
    One revocation per certificate and one audit entry per (certificate, action) are unique
    keys, so of two nodes revoking, or reporting one expiry, exactly one wins."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = database.check_database_url(url)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._closed = False

    async def open(self) -> None:
        async with self._opening:
            if self._closed:
                raise RuntimeError("certificate store is closed")
            if self._pool is not None:
                return
            try:
                self._pool = await database.open_migrated(
                    self.url, MIGRATIONS_COMPONENT, "trustbadges", max_size=self._pool_size)
            except database.DatabaseUnavailable as exc:
                raise StoreUnavailable(exc.detail) from None

    async def close(self) -> None:
        async with self._opening:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, fn: Callable[[Any], Any], *, write: bool = False) -> Any:
        if self._pool is None:
            await self.open()
        pool = self._pool
        if pool is None:
            raise RuntimeError("certificate store is closed")
        try:
            return await database.run(pool, self.url, fn, write=write)
        except database.DatabaseUnavailable as exc:
            raise StoreUnavailable(exc.detail) from None

    async def insert(self, row: StoredCertificate, actor_id: str, actor_role: str) -> None:
        async def work(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO certificates (id, kind, product_id, anchor_id, category, "
                "issued_at, valid_from, expires_at, key_id, document) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                row.id, row.kind, row.product_id, row.anchor_id, row.category, row.issued_at,
                row.valid_from, row.expires_at, row.key_id, row.document)
            await _pg_audit(conn, row.issued_at, "issued", row.id, actor_id, actor_role, None)

        await self._run(work, write=True)

    async def get(self, certificate_id: str) -> StoredCertificate | None:
        async def work(conn: Any) -> StoredCertificate | None:
            found = await conn.fetchrow(database.numbered(_SELECT + " WHERE c.id = ?"),
                                        certificate_id)
            return None if found is None else _pg_row(found)

        result: StoredCertificate | None = await self._run(work)
        return result

    async def revoke(self, certificate_id: str, revoked_at: int, document: str,
                     actor_id: str, actor_role: str, reason: str) -> bool:
        async def work(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO revocations (certificate_id, revoked_at, document) "
                "VALUES ($1, $2, $3)", certificate_id, revoked_at, document)
            # Unique per (certificate, action): the trail may say revoked already, its
            # revocation row having been deleted since.
            await _pg_audit(conn, revoked_at, "revoked", certificate_id, actor_id, actor_role,
                            reason)

        try:
            await self._run(work, write=True)
        except asyncpg.IntegrityConstraintViolationError:
            return False
        return True

    async def _rows(self, sql: str, *args: Any) -> list[StoredCertificate]:
        async def work(conn: Any) -> list[StoredCertificate]:
            return [_pg_row(r) for r in await conn.fetch(database.numbered(sql), *args)]

        rows: list[StoredCertificate] = await self._run(work)
        return rows

    async def for_product(self, product_id: str) -> list[StoredCertificate]:
        return await self._rows(_SELECT + " WHERE c.product_id = ? ORDER BY c.issued_at, c.id",
                                product_id)

    async def for_anchor(self, anchor_id: str, category: str | None) -> list[StoredCertificate]:
        if category is None:
            return await self._rows(
                _SELECT + " WHERE c.anchor_id = ? ORDER BY c.issued_at, c.id", anchor_id)
        return await self._rows(
            _SELECT + " WHERE c.anchor_id = ? AND c.category = ? ORDER BY c.issued_at, c.id",
            anchor_id, category)

    async def for_many(
        self, product_ids: Sequence[str], anchors: Sequence[tuple[str, str]]
    ) -> tuple[ProductRows, AnchorRows]:
        async def work(conn: Any) -> tuple[ProductRows, AnchorRows]:
            products: ProductRows = {p: [] for p in product_ids}
            pairs: AnchorRows = {a: [] for a in anchors}
            if products:
                for record in await conn.fetch(
                    _SELECT + " WHERE c.product_id = ANY($1::text[]) "
                    "ORDER BY c.issued_at, c.id", list(products)):
                    row = _pg_row(record)
                    products[cast(str, row.product_id)].append(row)
            if pairs:
                for record in await conn.fetch(
                    _SELECT + " WHERE (c.anchor_id, c.category) IN "
                    "(SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY c.issued_at, c.id",
                    [a for a, _ in pairs], [c for _, c in pairs]):
                    row = _pg_row(record)
                    pairs[(cast(str, row.anchor_id), cast(str, row.category))].append(row)
            return products, pairs

        result: tuple[ProductRows, AnchorRows] = await self._run(work)
        return result

    async def revocation_mismatches(self) -> list[tuple[str, RevocationMismatch]]:
        async def work(conn: Any) -> list[tuple[str, RevocationMismatch]]:
            rows = await conn.fetch(
                "SELECT c.id, 'record_missing' FROM certificates c "
                f"WHERE {_REVOKED_IN_AUDIT} AND NOT {_REVOKED_IN_TABLE} "
                "UNION ALL SELECT c.id, 'audit_missing' FROM certificates c "
                f"WHERE {_REVOKED_IN_TABLE} AND NOT {_REVOKED_IN_AUDIT} ORDER BY 1")
            return [(str(r[0]), cast(RevocationMismatch, r[1])) for r in rows]

        result: list[tuple[str, RevocationMismatch]] = await self._run(work)
        return result

    async def due_transitions(
        self, now_ms: int
    ) -> list[tuple[StoredCertificate, TransitionAction]]:
        activated = await self._rows(
            _SELECT + " WHERE c.valid_from > c.issued_at AND c.valid_from <= ? AND "
            f"{_NOT_REVOKED} AND {_not_audited('activated')} ORDER BY c.valid_from", now_ms)
        expired = await self._rows(
            _SELECT + " WHERE c.expires_at IS NOT NULL AND c.expires_at <= ? AND "
            f"{_NOT_REVOKED} AND {_not_audited('expired')} ORDER BY c.expires_at", now_ms)
        result: list[tuple[StoredCertificate, TransitionAction]] = [
            (row, "activated") for row in activated]
        return result + [(row, "expired") for row in expired]

    async def next_transition_after(self, now_ms: int) -> int | None:
        async def work(conn: Any) -> int | None:
            found = await conn.fetchval(
                "SELECT MIN(t) FROM ("
                "SELECT MIN(c.expires_at) AS t FROM certificates c WHERE c.expires_at > $1 "
                f"AND {_NOT_REVOKED} UNION ALL "
                "SELECT MIN(c.valid_from) AS t FROM certificates c WHERE c.valid_from > $1 "
                f"AND {_NOT_REVOKED}) AS soonest", now_ms)
            return None if found is None else int(found)

        result: int | None = await self._run(work)
        return result

    async def record_transition(
        self, certificate_id: str, action: TransitionAction, at: int
    ) -> bool:
        async def work(conn: Any) -> bool:
            status = await conn.execute(
                "INSERT INTO audit (at, action, certificate_id, actor_id, actor_role, reason) "
                "VALUES ($1, $2, $3, 'platform', 'system', NULL) ON CONFLICT DO NOTHING",
                at, action, certificate_id)
            return bool(status.endswith(" 1"))

        result: bool = await self._run(work)
        return result

    async def audit(self, certificate_id: str | None, limit: int) -> list[AuditEntry]:
        query = "SELECT seq, at, action, certificate_id, actor_id, actor_role, reason FROM audit"
        params: tuple[object, ...] = ()
        if certificate_id is not None:
            query += " WHERE certificate_id = ?"
            params = (certificate_id,)

        async def work(conn: Any) -> list[AuditEntry]:
            rows = await conn.fetch(database.numbered(query + " ORDER BY seq LIMIT ?"),
                                    *params, limit)
            return [AuditEntry(*tuple(r)) for r in rows]

        result: list[AuditEntry] = await self._run(work)
        return result


    async def publish_key(self, key_id: str, public_pem: str, at: int) -> None:
        async def work(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO signing_keys (key_id, public_key, published_at) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", key_id, public_pem, at)

        await self._run(work)

    async def known_keys(self) -> dict[str, str]:
        async def work(conn: Any) -> dict[str, str]:
            rows = await conn.fetch("SELECT key_id, public_key FROM signing_keys")
            return {str(r[0]): str(r[1]) for r in rows}

        result: dict[str, str] = await self._run(work)
        return result


async def _pg_audit(conn: Any, at: int, action: str, certificate_id: str, actor_id: str,
                    actor_role: str, reason: str | None) -> None:
    await conn.execute(
        "INSERT INTO audit (at, action, certificate_id, actor_id, actor_role, reason) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        at, action, certificate_id, actor_id, actor_role, reason)
