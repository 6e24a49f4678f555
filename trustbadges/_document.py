"""Signed documents: how a certificate and a revocation record are signed and checked.

A document is a JSON object; its ``signature`` member is the unpadded base64url Ed25519
signature of the canonical bytes (see ``_canonical``) of the same object without ``signature``.
The ``format`` member names what the document is, so a signed revocation can never pass for a
certificate or the other way round.

Standard library and ``cryptography`` only: ``python -m trustbadges.verify`` runs on this alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._canonical import CanonicalFormError, canonical_bytes

__all__ = [
    "CERTIFICATE_FIELDS",
    "CERTIFICATE_FORMAT",
    "REVOCATION_FIELDS",
    "REVOCATION_FORMAT",
    "KeyLookup",
    "b64url_decode",
    "b64url_encode",
    "certificate_problem",
    "key_id_for",
    "revocation_problem",
    "sign_document",
    "signature_problem",
]

CERTIFICATE_FORMAT = "liveroom.certificate.v1"
REVOCATION_FORMAT = "liveroom.revocation.v1"

# Every member of a v1 certificate; all of them except ``signature`` are signed.
CERTIFICATE_FIELDS: Mapping[str, tuple[type, ...]] = {
    "format": (str,),
    "id": (str,),
    "kind": (str,),
    "subject": (dict,),
    "details": (dict,),
    "issued_at": (int,),
    "valid_from": (int,),
    "expires_at": (int, type(None)),
    "issuer": (dict,),
    "key_id": (str,),
    "signature": (str,),
}
REVOCATION_FIELDS: Mapping[str, tuple[type, ...]] = {
    "format": (str,),
    "certificate": (str,),
    "revoked_at": (int,),
    "reason": (str,),
    "revoked_by": (dict,),
    "key_id": (str,),
    "signature": (str,),
}

KeyLookup = Callable[[str], Ed25519PublicKey | None]


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except binascii.Error as exc:
        raise ValueError("not base64url") from exc


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """``k_`` + the first 16 hex digits of SHA-256 over the 32 raw public-key bytes."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "k_" + hashlib.sha256(raw).hexdigest()[:16]


def sign_document(body: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """Return ``body`` plus its ``signature``; ``body`` must already name its ``key_id``."""
    if "signature" in body:
        raise ValueError("body already carries a signature")
    message = canonical_bytes(dict(body))
    return {**body, "signature": b64url_encode(private_key.sign(message))}


def _shape_problem(doc: Any, fields: Mapping[str, tuple[type, ...]], fmt: str) -> str | None:
    if not isinstance(doc, dict):
        return "malformed"
    if doc.get("format") != fmt:
        return "unsupported_format"
    if set(doc) != set(fields):
        return "malformed"
    for name, types in fields.items():
        value = doc[name]
        # bool is an int subclass; a timestamp of ``true`` is malformed, not "1".
        if isinstance(value, bool) or not isinstance(value, types):
            return "malformed"
    return None


def signature_problem(doc: Mapping[str, Any], lookup: KeyLookup) -> str | None:
    """``None`` if the signature is good, else ``unknown_key``/``bad_signature``/``malformed``."""
    public_key = lookup(doc["key_id"])
    if public_key is None:
        return "unknown_key"
    try:
        signature = b64url_decode(doc["signature"])
        message = canonical_bytes({k: v for k, v in doc.items() if k != "signature"})
    except (ValueError, CanonicalFormError):
        return "malformed"
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return "bad_signature"
    return None


def revocation_problem(revocation: Any, certificate_id: str, lookup: KeyLookup) -> str | None:
    """``None`` if ``revocation`` is a genuine platform revocation of ``certificate_id``."""
    problem = _shape_problem(revocation, REVOCATION_FIELDS, REVOCATION_FORMAT)
    if problem is not None:
        return problem
    if revocation["certificate"] != certificate_id:
        return "wrong_certificate"
    return signature_problem(revocation, lookup)


def certificate_problem(
    doc: Any, lookup: KeyLookup, now_ms: int, revocation: Any = None
) -> str | None:
    """Why ``doc`` is not a valid certificate at ``now_ms``, or ``None`` if it is.

    Checked in this order, the first failure wins: ``malformed``, ``unsupported_format``,
    ``unknown_key``, ``bad_signature``, ``revoked`` (only if ``revocation`` is a genuine signed
    revocation of this certificate), ``expired`` (``now_ms >= expires_at``), ``not_yet_valid``
    (``now_ms < valid_from``).
    """
    problem = _shape_problem(doc, CERTIFICATE_FIELDS, CERTIFICATE_FORMAT)
    if problem is not None:
        return problem
    problem = signature_problem(doc, lookup)
    if problem is not None:
        return problem
    if revocation is not None and revocation_problem(revocation, doc["id"], lookup) is None:
        return "revoked"
    expires_at = doc["expires_at"]
    if expires_at is not None and now_ms >= expires_at:
        return "expired"
    if now_ms < doc["valid_from"]:
        return "not_yet_valid"
    return None
