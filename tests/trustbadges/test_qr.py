"""The QR code served for an inspection report decodes to its verify page."""

from __future__ import annotations

import io

import cairosvg
import pytest
import zxingcpp
from PIL import Image

from trustbadges import CertificateService, InvalidCertificate, UnknownCertificate, qr_svg

from .conftest import INSPECTOR, PHONE_ID, inspection_details


def decode_svg(svg: str) -> list[str]:
    """Rasterize the SVG exactly as served, then read it like a phone camera would."""
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=2)
    image = Image.open(io.BytesIO(png)).convert("L")
    return [barcode.text for barcode in zxingcpp.read_barcodes(image)]


async def test_inspection_qr_decodes_to_verify_url(service: CertificateService) -> None:
    cert = await service.issue(
        *INSPECTOR, "inspection", product_id=PHONE_ID, details=inspection_details()
    )
    svg = await service.certificate_qr_svg(cert.id, "https://shop.example/")
    assert svg.startswith("<svg")
    assert decode_svg(svg) == [f"https://shop.example/verify/{cert.id}"]


def test_qr_refuses_what_it_cannot_encode_as_a_link() -> None:
    for bad in ("/verify/c_x", "javascript:alert(1)", "https://x/" + "a" * 2000, "https://x/\n"):
        with pytest.raises(InvalidCertificate):
            qr_svg(bad)
    url = "http://127.0.0.1:8080/verify/c_AbC-12_xyz0"
    assert decode_svg(qr_svg(url)) == [url]


async def test_qr_for_unknown_certificate(service: CertificateService) -> None:
    with pytest.raises(UnknownCertificate):
        await service.certificate_qr_svg("c_nothere0000", "https://shop.example")
