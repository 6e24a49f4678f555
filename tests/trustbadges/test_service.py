"""Issuing rules, durability, audit, badges and the facts orders rely on."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from tests.clock import Clock
from tests.rawdb import REJECTED, RawDatabase, StoreLocation
from trustbadges import (
    DB_FILE,
    GUARANTEE_BADGES,
    KEY_FILE,
    WARRANTY_MS,
    AlreadyRevoked,
    CertificateService,
    InvalidCertificate,
    KeyRing,
    NotAllowed,
    UnknownCertificate,
    rotate_platform_key,
)

from .conftest import (
    ADMIN,
    ANCHOR_ID,
    DAY_MS,
    IMEI,
    INSPECTOR,
    PHONE_ID,
    PRODUCT_ID,
    inspection_details,
    open_service,
    vault_details,
)


def file_contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


async def count_rows(where: StoreLocation) -> tuple[object, object]:
    async with RawDatabase(where, DB_FILE) as db:
        return (await db.value("SELECT COUNT(*) FROM certificates"),
                await db.value("SELECT COUNT(*) FROM audit"))


@pytest.mark.parametrize("role", ["viewer", "anchor", "", "root"])
async def test_only_inspectors_and_admins_issue(
    service: CertificateService, cert_location: StoreLocation, role: str
) -> None:
    with pytest.raises(NotAllowed) as info:
        await service.issue(
            "u_someone0001", role, "vault", product_id=PRODUCT_ID, details=vault_details()
        )
    assert info.value.http_status == 403
    assert info.value.code == "not_allowed"
    with pytest.raises(NotAllowed):
        await service.issue_request("u_someone0001", role, {"kind": "vault"})
    assert await count_rows(cert_location) == (0, 0)


async def test_revocation_rights(service: CertificateService) -> None:
    cert = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    with pytest.raises(NotAllowed):
        await service.revoke("u_anchor00001", "anchor", cert.id, "I do not like it")
    with pytest.raises(NotAllowed):  # another inspector may not revoke a colleague's work
        await service.revoke("u_inspector02", "inspector", cert.id, "mistake")
    assert (await service.get(cert.id)).valid
    await service.revoke(*ADMIN, cert.id, "appraiser error")
    with pytest.raises(AlreadyRevoked) as info:
        await service.revoke(*ADMIN, cert.id, "again")
    assert info.value.http_status == 409
    assert info.value.revoked_at is not None
    with pytest.raises(UnknownCertificate) as missing:
        await service.revoke(*ADMIN, "c_doesnotexist", "gone")
    assert missing.value.http_status == 404


BAD_VAULT: list[tuple[str, dict[str, Any]]] = [
    ("details.weight_mg", {"weight_mg": 3.25}),
    ("details.weight_mg", {"weight_mg": 0}),
    ("details.weight_mg", {"weight_mg": True}),
    ("details.material", {"material": "  "}),
    ("details.grade", {"grade": 7}),
    ("details.photo_sha256", {"photo_sha256": []}),
    ("details.photo_sha256[0]", {"photo_sha256": ["abc"]}),
    ("details.photo_sha256", {"photo_sha256": ["a" * 64, "A" * 64]}),
    ("details.colour", {"colour": "gold"}),
]
BAD_INSPECTION: list[tuple[str, dict[str, Any]]] = [
    ("details.battery_health_pct", {"battery_health_pct": 101}),
    ("details.battery_health_pct", {"battery_health_pct": -1}),
    ("details.screen_condition", {"screen_condition": "perfect"}),
    ("details.components.battery", {"components": {"battery": "fake"}}),
    ("details.components", {"components": {"Bad Name": "original"}}),
    ("details.tests.touch", {"tests": {"touch": "ok"}}),
    ("details.imei", {"imei": "490154203237519"}),  # wrong check digit
    ("details.imei", {"imei_sha256": "a" * 64}),  # both given
    ("details.buyback_price_cents", {"buyback_price_cents": 1999.5}),
    ("details.warranty_ends_at", {"warranty_ends_at": 1}),  # computed, never given
]


@pytest.mark.parametrize(("field", "change"), BAD_VAULT)
async def test_bad_vault_details_rejected(
    service: CertificateService, cert_location: StoreLocation, field: str,
    change: dict[str, Any],
) -> None:
    with pytest.raises(InvalidCertificate) as info:
        await service.issue(
            *INSPECTOR, "vault", product_id=PRODUCT_ID, details={**vault_details(), **change}
        )
    assert info.value.field == field
    assert info.value.http_status == 400
    assert await count_rows(cert_location) == (0, 0)


@pytest.mark.parametrize(("field", "change"), BAD_INSPECTION)
async def test_bad_inspection_details_rejected(
    service: CertificateService, cert_location: StoreLocation, field: str,
    change: dict[str, Any],
) -> None:
    with pytest.raises(InvalidCertificate) as info:
        await service.issue(
            *INSPECTOR,
            "inspection",
            product_id=PHONE_ID,
            details={**inspection_details(), **change},
        )
    assert info.value.field == field
    assert IMEI not in str(info.value)
    assert await count_rows(cert_location) == (0, 0)


async def test_bad_requests_rejected(service: CertificateService, clock: Clock) -> None:
    bad: list[tuple[str, dict[str, Any]]] = [
        ("kind", {"kind": "gold", "product_id": PRODUCT_ID, "details": vault_details()}),
        ("product_id", {"kind": "vault", "product_id": "ring", "details": vault_details()}),
        (
            "anchor_id",
            {
                "kind": "vault",
                "product_id": PRODUCT_ID,
                "anchor_id": ANCHOR_ID,
                "details": vault_details(),
            },
        ),
        ("details", {"kind": "vault", "product_id": PRODUCT_ID}),
        ("details", {"kind": "vault", "product_id": PRODUCT_ID, "details": []}),
        (
            "expires_at",
            {
                "kind": "vault",
                "product_id": PRODUCT_ID,
                "details": vault_details(),
                "expires_at": clock.now,
            },
        ),
        (
            "price",
            {"kind": "vault", "product_id": PRODUCT_ID, "details": vault_details(), "price": 1},
        ),
        (
            "details.valid_until",
            {
                "kind": "refund_no_return",
                "anchor_id": ANCHOR_ID,
                "category": "essential_oil",
                "details": {"valid_from": clock.now, "valid_until": clock.now},
            },
        ),
        (
            "details.valid_until",
            {
                "kind": "refund_no_return",
                "anchor_id": ANCHOR_ID,
                "category": "essential_oil",
                "details": {"valid_from": 0, "valid_until": clock.now - 1},
            },
        ),
        (
            "category",
            {
                "kind": "refund_no_return",
                "anchor_id": ANCHOR_ID,
                "details": {"valid_from": 0, "valid_until": clock.now + DAY_MS},
            },
        ),
        ("body", ["vault"]),  # type: ignore[list-item]
    ]
    for field, payload in bad:
        with pytest.raises(InvalidCertificate) as info:
            await service.issue_request(*ADMIN, payload)
        assert info.value.field == field, payload


async def stored_text(where: StoreLocation, data_dir: Path) -> dict[str, bytes]:
    """Everything the service stored: the data dir's files, and on PostgreSQL every row of
    every table of the store's schema (as JSON text)."""
    stored = file_contents(data_dir)
    if isinstance(where, str):
        async with RawDatabase(where, DB_FILE) as db:
            tables = await db.rows("SELECT table_name FROM information_schema.tables "
                                   "WHERE table_schema = current_schema()")
            assert len(tables) >= 4  # certificates, revocations, audit, signing keys
            for (table,) in tables:
                rows = await db.rows(f'SELECT row_to_json(t)::text FROM "{table}" t')
                stored[f"table {table}"] = "\n".join(str(row[0]) for row in rows).encode()
    return stored


async def test_inspection_hashes_imei_and_sets_warranty(
    service: CertificateService, cert_location: StoreLocation, data_dir: Path, clock: Clock
) -> None:
    cert = await service.issue_request(
        *INSPECTOR, {"kind": "inspection", "product_id": PHONE_ID, "details": inspection_details()}
    )
    assert cert.details["imei_sha256"] == hashlib.sha256(IMEI.encode()).hexdigest()
    assert "imei" not in cert.details
    assert cert.details["warranty_ends_at"] == clock.now + WARRANTY_MS == clock.now + 180 * DAY_MS
    # The raw IMEI is nowhere on disk, nor in the database.
    stored = await stored_text(cert_location, data_dir)
    assert any(cert.id.encode() in content for content in stored.values())
    for name, content in stored.items():
        assert IMEI.encode() not in content, name
    terms = await service.inspection_terms(PHONE_ID)
    assert terms is not None
    assert (terms.certificate_id, terms.warranty_ends_at, terms.buyback_price_cents) == (
        cert.id,
        clock.now + 180 * DAY_MS,
        180_000,
    )
    assert await service.inspection_terms(PRODUCT_ID) is None


async def test_certificates_survive_restart_with_audit(
    data_dir: Path, cert_location: StoreLocation, clock: Clock
) -> None:
    first = open_service(data_dir, cert_location, clock)
    kept = await first.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    clock.advance(1000)
    revoked = await first.issue(*ADMIN, "vault", product_id=PRODUCT_ID, details=vault_details())
    clock.advance(1000)
    await first.revoke(*ADMIN, revoked.id, "wrong stone")
    key_id = first.public_keys()["active_key_id"]
    await first.close()

    assert stat.S_IMODE(os.stat(data_dir / KEY_FILE).st_mode) == 0o600
    second = open_service(data_dir, cert_location, clock)
    try:
        assert second.public_keys()["active_key_id"] == key_id
        assert (await second.get(kept.id)).valid
        assert (await second.get(revoked.id)).reason == "revoked"
        trail = [
            (e.action, e.certificate_id, e.actor_id, e.actor_role, e.reason, e.at)
            for e in await second.audit_trail()
        ]
        assert trail == [
            ("issued", kept.id, INSPECTOR[0], "inspector", None, clock.now - 2000),
            ("issued", revoked.id, ADMIN[0], "admin", None, clock.now - 1000),
            ("revoked", revoked.id, ADMIN[0], "admin", "wrong stone", clock.now),
        ]
        async with RawDatabase(cert_location, DB_FILE) as db:
            with pytest.raises(REJECTED, match="append-only"):
                await db.execute("DELETE FROM audit")
    finally:
        await second.close()


async def test_editing_the_database_is_detected(
    service: CertificateService, cert_location: StoreLocation
) -> None:
    moved = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    edited = await service.issue(
        *INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details()
    )
    async with RawDatabase(cert_location, DB_FILE) as db:
        # Move a genuine certificate onto another product through its index column...
        await db.execute("UPDATE certificates SET product_id = 'p_fake000001' WHERE id = ?",
                         moved.id)
        # ...and raise the weight inside another's stored document.
        doc = json.loads(str(await db.value(
            "SELECT document FROM certificates WHERE id = ?", edited.id)))
        doc["details"]["weight_mg"] = 9_999
        await db.execute("UPDATE certificates SET document = ? WHERE id = ?",
                         json.dumps(doc), edited.id)
    assert (await service.get(moved.id)).reason == "tampered"
    assert (await service.get(edited.id)).reason == "bad_signature"
    fake_badges = await service.badges_for("p_fake000001", None, None)
    assert [b["kind"] for b in fake_badges] == list(GUARANTEE_BADGES)
    assert not await service.vault_certified(PRODUCT_ID)


async def test_badges_follow_certificates(service: CertificateService, clock: Clock) -> None:
    def kinds(badges: list[dict[str, Any]]) -> list[str]:
        return [b["kind"] for b in badges]

    assert kinds(await service.badges_for(PRODUCT_ID, ANCHOR_ID, "jewelry")) == list(
        GUARANTEE_BADGES
    )
    vault = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    rnr = await service.issue(
        *ADMIN,
        "refund_no_return",
        anchor_id=ANCHOR_ID,
        category="essential_oil",
        details={"valid_from": clock.now, "valid_until": clock.now + DAY_MS},
    )
    badges = await service.badges_for(PRODUCT_ID, ANCHOR_ID, "jewelry")
    assert badges[0] == {
        "kind": "vault-certified",
        "label": "Vault certified",
        "certificate": vault.id,
        "verify_url": f"/verify/{vault.id}",
    }
    assert kinds(badges) == ["vault-certified", *GUARANTEE_BADGES]
    assert all(b["certificate"] is None and b["verify_url"] is None for b in badges[1:])
    oil = await service.badges_for("p_oil0000001", ANCHOR_ID, "essential_oil")
    assert kinds(oil) == ["refund-no-return", *GUARANTEE_BADGES]
    assert oil[0]["certificate"] == rnr.id
    # Another anchor selling the same category is not certified.
    assert kinds(await service.badges_for("p_oil0000002", "u_other000001", "essential_oil")) == (
        list(GUARANTEE_BADGES)
    )
    assert await service.vault_certified(PRODUCT_ID)
    assert await service.refund_no_return_certified(ANCHOR_ID, "essential_oil")
    assert not await service.refund_no_return_certified(ANCHOR_ID, "jewelry")

    many = await service.badges_for_many(
        [(PRODUCT_ID, ANCHOR_ID, "jewelry"), ("p_oil0000001", ANCHOR_ID, "essential_oil")]
    )
    assert kinds(many[PRODUCT_ID])[0] == "vault-certified"
    assert kinds(many["p_oil0000001"])[0] == "refund-no-return"

    await service.revoke(*INSPECTOR, vault.id, "recalled")
    assert kinds(await service.badges_for(PRODUCT_ID, ANCHOR_ID, "jewelry")) == list(
        GUARANTEE_BADGES
    )
    assert not await service.vault_certified(PRODUCT_ID)
    clock.advance(DAY_MS)
    assert not await service.refund_no_return_certified(ANCHOR_ID, "essential_oil")
    listed = await service.certificates_for_product(PRODUCT_ID)
    assert [(v.certificate["id"] if v.certificate else None, v.reason) for v in listed] == [
        (vault.id, "revoked")
    ]


async def test_key_rotation_keeps_old_certificates_valid(
    data_dir: Path, cert_location: StoreLocation, clock: Clock
) -> None:
    first = open_service(data_dir, cert_location, clock)
    old = await first.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    await first.close()
    new_key_id = rotate_platform_key(data_dir)
    second = open_service(data_dir, cert_location, clock)
    try:
        published = second.public_keys()
        assert published["active_key_id"] == new_key_id != old.key_id
        assert {(k["key_id"], k["status"]) for k in published["keys"]} == {
            (new_key_id, "active"),
            (old.key_id, "retired"),
        }
        assert (await second.get(old.id)).valid
        fresh = await second.issue(
            *INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details()
        )
        assert fresh.key_id == new_key_id
    finally:
        await second.close()


async def test_concurrent_first_start_agrees_on_one_key(tmp_path: Path) -> None:
    rings = await asyncio.gather(
        *(asyncio.to_thread(KeyRing.load_or_create, tmp_path) for _ in range(8))
    )
    assert len({ring.active_key_id for ring in rings}) == 1
    assert sorted(file_contents(tmp_path)) == [KEY_FILE]
