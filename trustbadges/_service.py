"""``CertificateService``: issue, revoke and verify certificates; derive badges; report changes.

The store is async (``trustbadges/_store.py``): the SQLite one works on a thread of its own, the
PostgreSQL one over the network; neither blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._document import (
    CERTIFICATE_FORMAT,
    REVOCATION_FORMAT,
    certificate_problem,
    revocation_problem,
    sign_document,
)
from ._keys import KeyRing
from ._models import (
    BADGE_LABELS,
    GUARANTEE_BADGES,
    ISSUER_ROLES,
    KIND_BADGES,
    AuditEntry,
    Badge,
    BadgeChange,
    Certificate,
    ChangeReason,
    InspectionTerms,
    Kind,
    RevocationMismatch,
    Verification,
)
from ._qr import qr_svg
from ._store import CertificateStore, SQLiteCertificateStore, StoredCertificate
from ._validation import validate_issue, validate_reason
from .exceptions import AlreadyRevoked, InvalidCertificate, NotAllowed, UnknownCertificate

__all__ = ["CertificateService", "ChangeListener", "ExpiryWatcher", "wall_clock_ms"]

log = logging.getLogger("trustbadges")

T = TypeVar("T")
ChangeListener = Callable[[BadgeChange], Awaitable[None] | None]

# Reasons that mean "the signature itself cannot be trusted": checked before the row.
_SIGNATURE_REASONS: Final = frozenset(
    {"malformed", "unsupported_format", "unknown_key", "bad_signature"}
)
_REQUEST_FIELDS: Final = frozenset(
    {"kind", "product_id", "anchor_id", "category", "details", "expires_at"}
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_certificate_id() -> str:
    return "c_" + secrets.token_urlsafe(9)


def _check_actor(actor_id: Any, actor_role: Any) -> None:
    if not isinstance(actor_id, str) or not actor_id:
        raise InvalidCertificate("actor_id", "must be a non-empty string")
    if not isinstance(actor_role, str):
        raise InvalidCertificate("actor_role", "must be a string")


class CertificateService:
    def __init__(
        self,
        store: CertificateStore,
        keys: KeyRing,
        *,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._store = store
        self._keys = keys
        self.now_ms = now_ms
        self._listeners: list[ChangeListener] = []
        # Mismatches already logged by this process: badges re-verify on every read.
        self._reported_mismatches: set[tuple[str, RevocationMismatch]] = set()
        self._key_published = False

    @classmethod
    def open(
        cls, data_dir: Path, *, now_ms: Callable[[], int] = wall_clock_ms,
        database_url: str | None = None, signing_key_file: Path | None = None,
        pool_size: int = 5, pool_min: int = 1,
    ) -> CertificateService:
        """The production wiring: the signing key of ``signing_key_file`` (or the one in
        ``data_dir``, created if missing), certificates in ``data_dir``'s SQLite file or, with
        ``database_url``, in PostgreSQL (a pool of ``pool_min`` to ``pool_size`` connections). The
        store opens on ``start`` (or on first use)."""
        keys = (KeyRing.load_or_create(data_dir) if signing_key_file is None
                else KeyRing.from_file(signing_key_file))
        store: CertificateStore
        if database_url is None:
            store = SQLiteCertificateStore.in_data_dir(data_dir)
        else:
            from ._pgstore import PostgresCertificateStore

            store = PostgresCertificateStore(database_url, pool_size=pool_size,
                                             pool_min=pool_min)
        return cls(store, keys, now_ms=now_ms)

    async def start(self) -> None:
        """Open the store now (connect, migrate), so a bad database fails the start; publish
        this process's public key there and trust every key published before (other nodes',
        and keys rotated out)."""
        await self._store.open()
        await self._publish_key()

    async def _publish_key(self) -> None:
        public = self._keys.signing_key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        await self._store.publish_key(self._keys.active_key_id, public, self.now_ms())
        self._keys.trust(await self._store.known_keys())
        self._key_published = True

    async def _know_signers(self, rows: Iterable[StoredCertificate | None]) -> None:
        """Trust the keys of ``rows`` that another node published after we started (a new
        node, a rotation), before verifying them; an unknown key stays unknown."""
        if not self._key_published:
            await self._publish_key()
        if any(row is not None and self._keys.lookup(row.key_id) is None for row in rows):
            self._keys.trust(await self._store.known_keys())

    async def close(self) -> None:
        await self._store.close()

    # -- change notification -------------------------------------------------------------

    def add_listener(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(change)`` on every grant, revocation, expiry and activation.

        Returns a function that removes the listener. A failing listener is logged and does
        not undo the change nor stop the other listeners.
        """
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    async def _notify(self, change: BadgeChange) -> None:
        for listener in list(self._listeners):
            try:
                result = listener(change)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("badge change listener failed for %s", change.certificate_id)

    # -- issuing and revoking ------------------------------------------------------------

    async def issue(
        self,
        actor_id: str,
        actor_role: str,
        kind: str,
        *,
        product_id: str | None = None,
        anchor_id: str | None = None,
        category: str | None = None,
        details: Any,
        expires_at: int | None = None,
    ) -> Certificate:
        """Sign and store a certificate. Only ``inspector`` and ``admin`` may issue.

        Raises ``NotAllowed`` or ``InvalidCertificate`` (nothing stored) on bad input.
        """
        _check_actor(actor_id, actor_role)
        if actor_role not in ISSUER_ROLES:
            raise NotAllowed(actor_role, "issue certificates")
        now = self.now_ms()
        request = validate_issue(
            kind,
            product_id=product_id,
            anchor_id=anchor_id,
            category=category,
            details=details,
            expires_at=expires_at,
            issued_at=now,
        )
        body: dict[str, Any] = {
            "format": CERTIFICATE_FORMAT,
            "id": _new_certificate_id(),
            "kind": request.kind,
            "subject": request.subject,
            "details": request.details,
            "issued_at": now,
            "valid_from": request.valid_from,
            "expires_at": request.expires_at,
            "issuer": {"id": actor_id, "role": actor_role},
            "key_id": self._keys.active_key_id,
        }
        document = sign_document(body, self._keys.signing_key)
        row = StoredCertificate(
            id=document["id"],
            kind=request.kind,
            product_id=request.subject.get("product_id"),
            anchor_id=request.subject.get("anchor_id"),
            category=request.subject.get("category"),
            issued_at=now,
            valid_from=request.valid_from,
            expires_at=request.expires_at,
            key_id=document["key_id"],
            document=json.dumps(document, ensure_ascii=False, separators=(",", ":")),
            revocation=None,
        )
        await self._store.insert(row, actor_id, actor_role)
        log.info("certificate %s (%s) issued by %s", row.id, row.kind, actor_id)
        await self._notify(_change(row, "granted", now))
        return Certificate(document)

    async def issue_request(self, actor_id: str, actor_role: str, payload: Any) -> Certificate:
        """``issue`` from the JSON body of ``POST /api/certificates``."""
        _check_actor(actor_id, actor_role)
        if actor_role not in ISSUER_ROLES:
            raise NotAllowed(actor_role, "issue certificates")
        if not isinstance(payload, dict):
            raise InvalidCertificate("body", "must be a JSON object")
        for name in sorted(payload, key=str):
            if name not in _REQUEST_FIELDS:
                raise InvalidCertificate(str(name), "unknown field")
        if "details" not in payload:
            raise InvalidCertificate("details", "is required")
        return await self.issue(
            actor_id,
            actor_role,
            payload.get("kind"),  # type: ignore[arg-type]  # validated by issue
            product_id=payload.get("product_id"),
            anchor_id=payload.get("anchor_id"),
            category=payload.get("category"),
            details=payload["details"],
            expires_at=payload.get("expires_at"),
        )

    async def revoke(
        self, actor_id: str, actor_role: str, certificate_id: str, reason: str
    ) -> Verification:
        """Revoke with a signed revocation record. Admins revoke anything; inspectors only
        what they issued. Raises ``NotAllowed``, ``UnknownCertificate``, ``AlreadyRevoked``."""
        _check_actor(actor_id, actor_role)
        if actor_role not in ISSUER_ROLES:
            raise NotAllowed(actor_role, "revoke certificates")
        reason = validate_reason(reason)
        row = await self._get_row(certificate_id)
        issuer = _issuer_of(row)
        if actor_role != "admin" and issuer != actor_id:
            raise NotAllowed(actor_role, "revoke certificates issued by someone else")
        if row.revocation is not None or row.audit_revoked_at is not None:
            raise AlreadyRevoked(certificate_id, _revoked_at(row))
        now = self.now_ms()
        record = sign_document(
            {
                "format": REVOCATION_FORMAT,
                "certificate": certificate_id,
                "revoked_at": now,
                "reason": reason,
                "revoked_by": {"id": actor_id, "role": actor_role},
                "key_id": self._keys.active_key_id,
            },
            self._keys.signing_key,
        )
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        recorded = await self._store.revoke(
            certificate_id, now, text, actor_id, actor_role, reason
        )
        if not recorded:  # another process revoked it between our read and our write
            again = await self._get_row(certificate_id)
            raise AlreadyRevoked(certificate_id, _revoked_at(again))
        log.info("certificate %s revoked by %s", certificate_id, actor_id)
        await self._notify(_change(row, "revoked", now))
        return await self.get(certificate_id)

    # -- verification ----------------------------------------------------------------------

    def verify_document(
        self, document: Any, *, revocation: Any = None, at_ms: int | None = None
    ) -> Verification:
        """Check a certificate document as anyone holding the public keys would (pure)."""
        now = self.now_ms() if at_ms is None else at_ms
        problem = certificate_problem(document, self._keys.lookup, now, revocation)
        return Verification(
            certificate=document if isinstance(document, dict) else None,
            valid=problem is None,
            reason=problem,
            revocation=revocation if problem == "revoked" else None,
            checked_at=now,
        )

    def _verify_row(self, row: StoredCertificate, now: int) -> Verification:
        """The certificate as stored, valid only if neither the revocation table nor the audit
        trail says it was revoked; a disagreement between the two is logged (once per process)
        and named in ``revocation_mismatch``."""
        mismatch = self._revocation_mismatch(row)
        try:
            document = json.loads(row.document)
            revocation = None if row.revocation is None else json.loads(row.revocation)
        except ValueError:
            return Verification(None, False, "malformed", None, now, mismatch)
        problem = certificate_problem(document, self._keys.lookup, now, revocation)
        if problem not in _SIGNATURE_REASONS:
            if not _row_matches(row, document) or (
                revocation is not None
                and revocation_problem(revocation, row.id, self._keys.lookup) is not None
            ):
                problem = "tampered"
            elif row.audit_revoked_at is not None:
                problem = "revoked"
        return Verification(
            certificate=document,
            valid=problem is None,
            reason=problem,
            revocation=revocation if problem == "revoked" else None,
            checked_at=now,
            revocation_mismatch=mismatch,
        )

    def _revocation_mismatch(self, row: StoredCertificate) -> RevocationMismatch | None:
        mismatch: RevocationMismatch
        if row.revocation is None and row.audit_revoked_at is not None:
            mismatch = "record_missing"
        elif row.revocation is not None and row.audit_revoked_at is None:
            mismatch = "audit_missing"
        else:
            return None
        if (row.id, mismatch) not in self._reported_mismatches:
            self._reported_mismatches.add((row.id, mismatch))
            log.error(
                "certificate %s: the revocation table and the audit trail disagree (%s); "
                "it is treated as revoked. Someone edited %s: restore it from a backup",
                row.id, mismatch, "the revocations table" if mismatch == "record_missing"
                else "the audit trail",
            )
        return mismatch

    async def revocation_mismatches(self) -> list[tuple[str, RevocationMismatch]]:
        """Every certificate whose revocation table and audit trail disagree, with which record
        is missing (for an operator's check or a gauge). Each is treated as revoked."""
        return await self._store.revocation_mismatches()

    async def _get_row(self, certificate_id: str) -> StoredCertificate:
        if not isinstance(certificate_id, str):
            raise UnknownCertificate(str(certificate_id))
        row = await self._store.get(certificate_id)
        await self._know_signers([row])
        if row is None:
            raise UnknownCertificate(certificate_id)
        return row

    async def get(self, certificate_id: str) -> Verification:
        """``GET /api/certificates/{id}``; raises ``UnknownCertificate``."""
        row = await self._get_row(certificate_id)
        return self._verify_row(row, self.now_ms())

    async def certificates_for_product(self, product_id: str) -> list[Verification]:
        now = self.now_ms()
        rows = await self._store.for_product(product_id)
        await self._know_signers(rows)
        return [self._verify_row(r, now) for r in rows]

    async def certificates_for_anchor(
        self, anchor_id: str, category: str | None = None
    ) -> list[Verification]:
        now = self.now_ms()
        rows = await self._store.for_anchor(anchor_id, category)
        await self._know_signers(rows)
        return [self._verify_row(r, now) for r in rows]

    def public_keys(self) -> dict[str, Any]:
        return self._keys.public_keys()

    def sign_statement(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the active ``key_id`` and its ``signature``, signed exactly like a
        certificate (docs/verification.md): for statements the platform makes besides
        certificates, such as a lucky draw's commitment. ``body`` names its own ``format``, so
        a statement can never pass for a certificate."""
        if "format" not in body or body.get("format") in (CERTIFICATE_FORMAT, REVOCATION_FORMAT):
            raise ValueError("a statement needs a format of its own")
        return sign_document({**body, "key_id": self._keys.active_key_id},
                             self._keys.signing_key)

    async def audit_trail(
        self, certificate_id: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        return await self._store.audit(certificate_id, limit)

    # -- badges and the facts orders rely on -----------------------------------------------

    def _latest_valid(
        self, rows: Iterable[StoredCertificate], kind: str, now: int
    ) -> Verification | None:
        best: Verification | None = None
        for row in rows:
            if row.kind != kind:
                continue
            verification = self._verify_row(row, now)
            if verification.valid:
                best = verification  # rows come oldest first: the newest valid one wins
        return best

    def _badges(
        self,
        product_rows: Iterable[StoredCertificate],
        anchor_rows: Iterable[StoredCertificate] | None,
        now: int,
    ) -> list[dict[str, Any]]:
        """The badges of one product from its rows and its anchor's (for its category)."""
        badges: list[Badge] = []
        product_rows = list(product_rows)
        for kind in ("vault", "inspection"):
            found = self._latest_valid(product_rows, kind, now)
            if found is not None and found.certificate is not None:
                badge = KIND_BADGES[kind]
                badges.append(Badge(badge, BADGE_LABELS[badge], found.certificate["id"]))
        if anchor_rows is not None:
            found = self._latest_valid(anchor_rows, "refund_no_return", now)
            if found is not None and found.certificate is not None:
                badge = KIND_BADGES["refund_no_return"]
                badges.append(Badge(badge, BADGE_LABELS[badge], found.certificate["id"]))
        badges += [Badge(g, BADGE_LABELS[g]) for g in GUARANTEE_BADGES]
        return [b.to_dict() for b in badges]

    async def badges_for(
        self, product_id: str, anchor_id: str | None, category: str | None
    ) -> list[dict[str, Any]]:
        """The badges a product shows now: certificate badges first, then the guarantees."""
        found = await self.badges_for_many([(product_id, anchor_id, category)])
        return found[product_id]

    async def badges_for_many(
        self, products: Iterable[tuple[str, str | None, str | None]]
    ) -> dict[str, list[dict[str, Any]]]:
        """``badges_for`` of many ``(product_id, anchor_id, category)`` in one store trip."""
        wanted = list(products)
        now = self.now_ms()
        anchors = list(dict.fromkeys((a, c) for _, a, c in wanted
                                     if a is not None and c is not None))
        product_rows, anchor_rows = await self._store.for_many(
            list(dict.fromkeys(p for p, _, _ in wanted)), anchors)
        await self._know_signers(
            [*itertools.chain(*product_rows.values()), *itertools.chain(*anchor_rows.values())])
        return {
            p: self._badges(product_rows[p],
                            anchor_rows[(a, c)] if a is not None and c is not None else None,
                            now)
            for p, a, c in wanted
        }

    async def vault_certified(self, product_id: str) -> bool:
        rows = await self._store.for_product(product_id)
        await self._know_signers(rows)
        return self._latest_valid(rows, "vault", self.now_ms()) is not None

    async def refund_no_return_certified(self, anchor_id: str, category: str) -> bool:
        rows = await self._store.for_anchor(anchor_id, category)
        await self._know_signers(rows)
        return self._latest_valid(rows, "refund_no_return", self.now_ms()) is not None

    async def inspection_terms(self, product_id: str) -> InspectionTerms | None:
        """Warranty end and buyback price of the product's current valid inspection report."""
        rows = await self._store.for_product(product_id)
        await self._know_signers(rows)
        found = self._latest_valid(rows, "inspection", self.now_ms())
        if found is None or found.certificate is None:
            return None
        details = found.certificate["details"]
        return InspectionTerms(
            certificate_id=found.certificate["id"],
            warranty_ends_at=details["warranty_ends_at"],
            buyback_price_cents=details["buyback_price_cents"],
        )

    async def certificate_qr_svg(self, certificate_id: str, base_url: str) -> str:
        """The QR code (SVG) of ``<base_url>/verify/<id>``; raises ``UnknownCertificate``."""
        row = await self._get_row(certificate_id)
        return qr_svg(base_url.rstrip("/") + "/verify/" + row.id)

    # -- expiry and activation ---------------------------------------------------------------

    async def process_due_transitions(self, now_ms: int | None = None) -> list[BadgeChange]:
        """Report every expiry/activation due at ``now_ms`` (default: now) and not yet reported
        by any process."""
        now = self.now_ms() if now_ms is None else now_ms

        changes: list[BadgeChange] = []
        for row, action in await self._store.due_transitions(now):
            moment = row.expires_at if action == "expired" else row.valid_from
            assert moment is not None
            if await self._store.record_transition(row.id, action, moment):
                changes.append(_change(row, action, moment))
        for change in changes:
            log.info("certificate %s %s", change.certificate_id, change.reason)
            await self._notify(change)
        return changes

    async def next_transition_after(self, now_ms: int) -> int | None:
        return await self._store.next_transition_after(now_ms)


def _change(row: StoredCertificate, reason: ChangeReason, at: int) -> BadgeChange:
    kind: Kind = row.kind  # type: ignore[assignment]  # the schema CHECK constrains it
    return BadgeChange(
        product_id=row.product_id,
        anchor_id=row.anchor_id,
        category=row.category,
        reason=reason,
        certificate_id=row.id,
        kind=kind,
        at=at,
    )


def _issuer_of(row: StoredCertificate) -> str | None:
    try:
        issuer = json.loads(row.document).get("issuer")
    except (ValueError, AttributeError):
        return None
    return issuer.get("id") if isinstance(issuer, dict) else None


def _revoked_at(row: StoredCertificate) -> int | None:
    """When the signed revocation record says the certificate was revoked, else the audit."""
    if row.revocation is None:
        return row.audit_revoked_at
    try:
        value = json.loads(row.revocation).get("revoked_at")
    except (ValueError, AttributeError):
        return row.audit_revoked_at
    return value if isinstance(value, int) else row.audit_revoked_at


def _row_matches(row: StoredCertificate, document: dict[str, Any]) -> bool:
    """The indexed columns say what the signed document says (else someone edited the DB)."""
    subject = document["subject"]
    return bool(
        row.id == document["id"]
        and row.kind == document["kind"]
        and row.product_id == subject.get("product_id")
        and row.anchor_id == subject.get("anchor_id")
        and row.category == subject.get("category")
        and row.issued_at == document["issued_at"]
        and row.valid_from == document["valid_from"]
        and row.expires_at == document["expires_at"]
        and row.key_id == document["key_id"]
    )


class ExpiryWatcher:
    """Owner of the loop that reports expiries (and delayed activations) when they happen.

    It sleeps until the soonest pending moment and re-plans at once when a certificate is
    issued in this process, or when ``wake()`` says another process issued one (the caller
    carries that news between processes); it also wakes at least every ``max_sleep_s``, in case
    such news was lost. When several processes share the data dir, every one of them plans every
    expiry, and the audit table's uniqueness makes exactly one of them report it: an expiry is
    reported on time even if the process that issued the certificate has stopped.
    """

    def __init__(self, service: CertificateService, *, max_sleep_s: float = 30.0) -> None:
        self._service = service
        self._max_sleep_s = max_sleep_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._remove_listener: Callable[[], None] | None = None

    def start(self) -> None:
        if self._task is not None:
            return
        self._remove_listener = self._service.add_listener(self._on_change)
        self._task = asyncio.create_task(self._run(), name="trustbadges-expiry")

    async def close(self) -> None:
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Re-plan from the store now: a certificate was issued elsewhere."""
        self._wake.set()

    def _on_change(self, change: BadgeChange) -> None:
        if change.reason in ("granted", "revoked"):
            self._wake.set()

    async def _run(self) -> None:
        while True:
            # Cleared before reading the plan: an issue landing after the read still wakes us.
            self._wake.clear()
            try:
                # One reading of the clock for both: read twice, a moment passing between them
                # was neither due at the first nor still ahead at the second, and waited for
                # ``max_sleep_s``.
                now = self._service.now_ms()
                await self._service.process_due_transitions(now)
                upcoming = await self._service.next_transition_after(now)
            except Exception:
                log.exception("expiry watcher pass failed; retrying in 1 s")
                delay = 1.0
            else:
                delay = self._max_sleep_s
                if upcoming is not None:
                    delay = min(delay, max(0.0, (upcoming - now) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
