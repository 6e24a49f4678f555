"""trustbadges: first-party certificates signed with the platform's Ed25519 key, and the badges
derived from them.

Domain code: SQLite (or PostgreSQL) and ``cryptography``; never aiohttp, socketio or liveroom.
"""

from typing import TYPE_CHECKING

from ._canonical import CanonicalFormError, canonical_bytes
from ._document import CERTIFICATE_FORMAT, REVOCATION_FORMAT, key_id_for
from ._keys import KEY_FILE, KeyRing, rotate_platform_key
from ._models import (
    GUARANTEE_BADGES,
    KINDS,
    AuditEntry,
    Badge,
    BadgeChange,
    Certificate,
    InspectionTerms,
    Kind,
    RevocationMismatch,
    Verification,
    verify_path,
)
from ._qr import qr_svg
from ._service import CertificateService, ChangeListener, ExpiryWatcher, wall_clock_ms
from ._store import DB_FILE, CertificateStore, SQLiteCertificateStore, StoredCertificate
from ._validation import WARRANTY_MS
from .exceptions import (
    AlreadyRevoked,
    CertificateError,
    InvalidCertificate,
    KeyStoreError,
    NotAllowed,
    StoreUnavailable,
    UnknownCertificate,
)

__all__ = [
    "CERTIFICATE_FORMAT",
    "DB_FILE",
    "GUARANTEE_BADGES",
    "KEY_FILE",
    "KINDS",
    "REVOCATION_FORMAT",
    "WARRANTY_MS",
    "AlreadyRevoked",
    "AuditEntry",
    "Badge",
    "BadgeChange",
    "CanonicalFormError",
    "Certificate",
    "CertificateError",
    "CertificateService",
    "CertificateStore",
    "ChangeListener",
    "ExpiryWatcher",
    "InspectionTerms",
    "InvalidCertificate",
    "KeyRing",
    "KeyStoreError",
    "Kind",
    "NotAllowed",
    "PostgresCertificateStore",
    "RevocationMismatch",
    "SQLiteCertificateStore",
    "StoreUnavailable",
    "StoredCertificate",
    "UnknownCertificate",
    "Verification",
    "canonical_bytes",
    "key_id_for",
    "qr_svg",
    "rotate_platform_key",
    "verify_path",
    "wall_clock_ms",
]

if TYPE_CHECKING:
    from ._pgstore import PostgresCertificateStore


def __getattr__(name: str) -> object:
    # The PostgreSQL store loads its driver only when asked for: the offline verifier
    # (trustbadges.verify) imports this package and needs nothing but cryptography.
    if name == "PostgresCertificateStore":
        from ._pgstore import PostgresCertificateStore

        return PostgresCertificateStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
