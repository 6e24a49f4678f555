"""Fixtures for trustbadges: a service on a temp data dir with a clock the test drives; every
test that uses ``service`` (or ``cert_location``) runs on both stores, a SQLite file and a fresh
PostgreSQL database."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.clock import T0, Clock
from tests.rawdb import StoreLocation, location_url
from trustbadges import CertificateService

START_MS = T0
DAY_MS = 24 * 3600 * 1000
INSPECTOR = ("u_inspector01", "inspector")
ADMIN = ("u_admin000001", "admin")
ANCHOR_ID = "u_anchor00001"
PRODUCT_ID = "p_ring000001"
PHONE_ID = "p_phone00001"
# A syntactically valid IMEI (Luhn check digit 8).
IMEI = "490154203237518"


def vault_details() -> dict[str, Any]:
    return {
        "material": "18k gold, 1 ct diamond",
        "weight_mg": 3_250,
        "grade": "VS1",
        "appraiser": "Vault Shenzhen #3",
        "photo_sha256": [hashlib.sha256(b"front").hexdigest(), hashlib.sha256(b"back").hexdigest()],
    }


def inspection_details() -> dict[str, Any]:
    return {
        "model": "iPhone 13 128GB",
        "imei": IMEI,
        "battery_health_pct": 87,
        "screen_condition": "light_wear",
        "body_condition": "scratched",
        "components": {"screen": "original", "battery": "replaced", "camera": "original"},
        "tests": {"touch": "pass", "face_id": "pass", "speaker": "fail"},
        "buyback_price_cents": 180_000,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def cert_location(request: pytest.FixtureRequest, data_dir: Path) -> StoreLocation:
    if request.param == "sqlite":
        return data_dir
    url: str = request.getfixturevalue("pg_url")
    return url


def open_service(data_dir: Path, where: StoreLocation,
                 clock: Callable[[], int] | None = None) -> CertificateService:
    """A service with the key of ``data_dir`` and its certificates at ``where``; two on one
    location are two server processes (or nodes)."""
    if clock is None:
        return CertificateService.open(data_dir, database_url=location_url(where))
    return CertificateService.open(data_dir, now_ms=clock, database_url=location_url(where))


@pytest.fixture
async def service(data_dir: Path, cert_location: StoreLocation,
                  clock: Clock) -> AsyncIterator[CertificateService]:
    svc = open_service(data_dir, cert_location, clock)
    await svc.start()
    yield svc
    await svc.close()
