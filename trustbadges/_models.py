"""Value objects of the certificate service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "BADGE_LABELS",
    "GUARANTEE_BADGES",
    "ISSUER_ROLES",
    "KINDS",
    "AuditEntry",
    "Badge",
    "BadgeChange",
    "Certificate",
    "ChangeReason",
    "InspectionTerms",
    "Kind",
    "RevocationMismatch",
    "Verification",
    "verify_path",
]

Kind = Literal["vault", "inspection", "refund_no_return"]
KINDS: Final[tuple[Kind, ...]] = ("vault", "inspection", "refund_no_return")
ISSUER_ROLES: Final[frozenset[str]] = frozenset({"inspector", "admin"})

ChangeReason = Literal["granted", "revoked", "expired", "activated"]
RevocationMismatch = Literal["record_missing", "audit_missing"]

# The badge each certificate kind grants, then the guarantees every product carries.
KIND_BADGES: Final[dict[str, str]] = {
    "vault": "vault-certified",
    "inspection": "inspected",
    "refund_no_return": "refund-no-return",
}
GUARANTEE_BADGES: Final[tuple[str, ...]] = (
    "fake-one-pay-ten",
    "paid-return-shipping",
    "door-pickup",
    "7-day-returns",
)
BADGE_LABELS: Final[dict[str, str]] = {
    "vault-certified": "Vault certified",
    "inspected": "Inspected",
    "refund-no-return": "Refund without return",
    "fake-one-pay-ten": "Fake one, pay ten",
    "paid-return-shipping": "Return shipping paid",
    "door-pickup": "Door-to-door pickup",
    "7-day-returns": "7-day no-reason returns",
}


def verify_path(certificate_id: str) -> str:
    return f"/verify/{certificate_id}"


@dataclass(frozen=True, slots=True)
class Certificate:
    """A signed certificate; ``document`` is exactly what was signed plus its signature."""

    document: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.document["id"])

    @property
    def kind(self) -> Kind:
        kind: Kind = self.document["kind"]
        return kind

    @property
    def subject(self) -> dict[str, Any]:
        subject: dict[str, Any] = self.document["subject"]
        return subject

    @property
    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = self.document["details"]
        return details

    @property
    def issued_at(self) -> int:
        return int(self.document["issued_at"])

    @property
    def valid_from(self) -> int:
        return int(self.document["valid_from"])

    @property
    def expires_at(self) -> int | None:
        value = self.document["expires_at"]
        return None if value is None else int(value)

    @property
    def key_id(self) -> str:
        return str(self.document["key_id"])

    def to_dict(self) -> dict[str, Any]:
        return dict(self.document)


@dataclass(frozen=True, slots=True)
class Verification:
    """The answer of ``GET /api/certificates/{id}``.

    ``reason`` is ``None`` when valid, else one of ``malformed``, ``unsupported_format``,
    ``unknown_key``, ``bad_signature``, ``tampered`` (the stored row disagrees with its signed
    document), ``revoked``, ``expired``, ``not_yet_valid``.

    ``revocation_mismatch`` is ``None`` unless the server's revocation table and its audit trail
    disagree about this certificate: ``record_missing`` (the trail says revoked, the signed
    revocation record is gone: still revoked, ``revocation`` is ``None``) or ``audit_missing``
    (a genuine revocation record the trail does not mention: revoked). Either is a sign that
    someone edited the database.
    """

    certificate: dict[str, Any] | None
    valid: bool
    reason: str | None
    revocation: dict[str, Any] | None = None
    checked_at: int = 0
    revocation_mismatch: RevocationMismatch | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "certificate": self.certificate,
            "valid": self.valid,
            "reason": self.reason,
            "revocation": self.revocation,
            "checked_at": self.checked_at,
            "revocation_mismatch": self.revocation_mismatch,
        }


@dataclass(frozen=True, slots=True)
class Badge:
    kind: str
    label: str
    certificate: str | None = None

    @property
    def verify_url(self) -> str | None:
        return None if self.certificate is None else verify_path(self.certificate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "certificate": self.certificate,
            "verify_url": self.verify_url,
        }


@dataclass(frozen=True, slots=True)
class BadgeChange:
    """A certificate was granted, revoked, expired or became valid.

    ``product_id`` is set for vault and inspection certificates; refund-no-return certificates
    concern every product of ``anchor_id`` in ``category`` and carry ``product_id=None``.
    """

    product_id: str | None
    anchor_id: str | None
    category: str | None
    reason: ChangeReason
    certificate_id: str
    kind: Kind
    at: int


@dataclass(frozen=True, slots=True)
class InspectionTerms:
    certificate_id: str
    warranty_ends_at: int
    buyback_price_cents: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: int
    action: str
    certificate_id: str
    actor_id: str
    actor_role: str
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "action": self.action,
            "certificate_id": self.certificate_id,
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "reason": self.reason,
        }
