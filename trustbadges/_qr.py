"""QR codes (SVG) that link a printed inspection report to its verify page."""

from __future__ import annotations

import io

from .exceptions import InvalidCertificate

__all__ = ["MAX_QR_URL", "qr_svg"]

# Far below QR version 40's byte capacity, and long enough for any verify URL.
MAX_QR_URL = 1000


def qr_svg(url: str, *, scale: int = 4) -> str:
    """An SVG QR code (error correction M, 4-module quiet zone) encoding ``url``.

    Dark modules on an explicit white background: a transparent SVG drawn on a dark page
    would otherwise not scan.
    """
    # Imported here so that ``python -m trustbadges.verify`` needs only ``cryptography``.
    import segno

    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise InvalidCertificate("url", "must be an absolute http(s) URL")
    if len(url) > MAX_QR_URL or not url.isascii() or not url.isprintable():
        raise InvalidCertificate("url", f"must be printable ASCII of at most {MAX_QR_URL} chars")
    symbol = segno.make_qr(url, error="m", boost_error=False)
    out = io.BytesIO()
    symbol.save(
        out,
        kind="svg",
        scale=scale,
        border=4,
        dark="#000",
        light="#fff",
        xmldecl=False,
        title="Scan to verify this certificate",
        nl=False,
    )
    return out.getvalue().decode("utf-8")
