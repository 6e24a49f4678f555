"""Errors raised by the certificate service.

Every error carries the data that explains it, a public snake_case ``code`` and the
``http_status`` the edge answers with::

    CertificateError                      (500, certificate_error)
    ├── InvalidCertificate                (400, invalid_certificate)  bad input to issue/revoke/qr
    ├── NotAllowed                        (403, not_allowed)          role may not do this
    ├── UnknownCertificate                (404, unknown_certificate)  no such certificate id
    ├── AlreadyRevoked                    (409, already_revoked)      revoke twice
    ├── KeyStoreError                     (500, key_store_error)      platform key file unusable
    └── StoreUnavailable                  (503, store_unavailable)    the database cannot be reached

Verification never raises for a bad document: a forged, altered, revoked or expired
certificate is an answer (``Verification(valid=False, reason=...)``), not an error.
"""

from __future__ import annotations

__all__ = [
    "AlreadyRevoked",
    "CertificateError",
    "InvalidCertificate",
    "KeyStoreError",
    "NotAllowed",
    "StoreUnavailable",
    "UnknownCertificate",
]


class CertificateError(Exception):
    code = "certificate_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCertificate(CertificateError):
    """A request field is missing, of the wrong type or out of range; nothing was changed."""

    code = "invalid_certificate"
    http_status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotAllowed(CertificateError):
    code = "not_allowed"
    http_status = 403

    def __init__(self, actor_role: str, action: str) -> None:
        super().__init__(f"role {actor_role!r} may not {action}")
        self.actor_role = actor_role
        self.action = action


class UnknownCertificate(CertificateError):
    code = "unknown_certificate"
    http_status = 404

    def __init__(self, certificate_id: str) -> None:
        super().__init__(f"no certificate {certificate_id!r}")
        self.certificate_id = certificate_id


class AlreadyRevoked(CertificateError):
    code = "already_revoked"
    http_status = 409

    def __init__(self, certificate_id: str, revoked_at: int | None) -> None:
        super().__init__(f"certificate {certificate_id!r} is already revoked")
        self.certificate_id = certificate_id
        self.revoked_at = revoked_at


class KeyStoreError(CertificateError):
    code = "key_store_error"
    http_status = 500

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class StoreUnavailable(CertificateError):
    """The certificate database cannot be reached (gone, or restarting): nothing was changed,
    and the same request may be sent again once it is back."""

    code = "store_unavailable"
    http_status = 503

    def __init__(self, detail: str) -> None:
        super().__init__("the certificate database is unavailable; try again shortly")
        self.detail = detail
