"""A revocation is recorded twice, in the revocation table (the signed record) and in the
append-only audit trail; deleting either row leaves the certificate revoked, and the mismatch
is reported."""

from __future__ import annotations

import logging

import pytest

from tests.clock import Clock
from tests.rawdb import RawDatabase, StoreLocation
from trustbadges import DB_FILE, GUARANTEE_BADGES, AlreadyRevoked, CertificateService

from .conftest import ADMIN, ANCHOR_ID, DAY_MS, INSPECTOR, PRODUCT_ID, vault_details


async def raw(where: StoreLocation, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Edit the database behind the service's back, as someone with access to it would."""
    async with RawDatabase(where, DB_FILE) as db:
        for sql, args in statements:
            if sql == DROP_APPEND_ONLY:
                sql = ("DROP TRIGGER audit_no_delete" if db.is_sqlite
                       else "DROP TRIGGER audit_no_update ON audit")
            await db.execute(sql, *args)


DROP_APPEND_ONLY = "-- drop the trigger that keeps the audit trail append-only"


def errors_about(caplog: pytest.LogCaptureFixture, certificate_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.ERROR and certificate_id in r.getMessage()]


async def test_deleting_the_revocation_row_does_not_bring_a_certificate_back(
    service: CertificateService, cert_location: StoreLocation, caplog: pytest.LogCaptureFixture
) -> None:
    cert = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    revoked = await service.revoke(*ADMIN, cert.id, "the stone is glass")
    await raw(cert_location, ("DELETE FROM revocations WHERE certificate_id = ?", (cert.id,)))

    check = await service.get(cert.id)
    assert (check.valid, check.reason, check.revocation) == (False, "revoked", None)
    assert check.revocation_mismatch == "record_missing"
    assert check.to_dict()["revocation_mismatch"] == "record_missing"
    assert not await service.vault_certified(PRODUCT_ID)
    badges = await service.badges_for(PRODUCT_ID, None, "jewelry")
    assert [b["kind"] for b in badges] == list(GUARANTEE_BADGES)
    [listed] = await service.certificates_for_product(PRODUCT_ID)
    assert (listed.reason, listed.revocation_mismatch) == ("revoked", "record_missing")

    # Reported once per process to the log, every time in the answer and to the operator.
    assert len(errors_about(caplog, cert.id)) == 1
    assert await service.revocation_mismatches() == [(cert.id, "record_missing")]
    # Revoking again is refused: it was revoked, at the time the trail recorded.
    with pytest.raises(AlreadyRevoked) as info:
        await service.revoke(*ADMIN, cert.id, "again")
    assert revoked.revocation is not None
    assert info.value.revoked_at == revoked.revocation["revoked_at"]


async def test_deleting_the_audit_entry_keeps_it_revoked_and_is_reported(
    service: CertificateService, cert_location: StoreLocation, caplog: pytest.LogCaptureFixture
) -> None:
    cert = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    revoked = await service.revoke(*ADMIN, cert.id, "the stone is glass")
    # The trail is append-only by trigger: a tamperer drops the trigger first.
    await raw(cert_location, (DROP_APPEND_ONLY, ()),
        ("DELETE FROM audit WHERE certificate_id = ? AND action = 'revoked'", (cert.id,)))

    check = await service.get(cert.id)
    assert (check.valid, check.reason) == (False, "revoked")
    assert check.revocation == revoked.revocation, "the signed record is still the proof"
    assert check.revocation_mismatch == "audit_missing"
    assert len(errors_about(caplog, cert.id)) == 1
    assert await service.revocation_mismatches() == [(cert.id, "audit_missing")]


async def test_an_untouched_database_reports_no_mismatch(
    service: CertificateService, caplog: pytest.LogCaptureFixture
) -> None:
    kept = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    gone = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    await service.revoke(*ADMIN, gone.id, "recalled")
    assert (await service.get(kept.id)).revocation_mismatch is None
    assert (await service.get(gone.id)).revocation_mismatch is None
    assert await service.revocation_mismatches() == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_certificate_revoked_only_in_the_trail_is_not_reported_as_expiring(
    service: CertificateService, cert_location: StoreLocation, clock: Clock
) -> None:
    """Expiries are announced for live certificates only; a revoked one stays revoked."""
    cert = await service.issue(*ADMIN, "refund_no_return", anchor_id=ANCHOR_ID,
                               category="essential_oil",
                               details={"valid_from": clock.now, "valid_until": clock.now + DAY_MS})
    await service.revoke(*ADMIN, cert.id, "too many refunds")
    await raw(cert_location, ("DELETE FROM revocations WHERE certificate_id = ?", (cert.id,)))
    clock.advance(DAY_MS)
    assert await service.process_due_transitions() == []
    assert await service.next_transition_after(clock.now - 2 * DAY_MS) is None
    assert not await service.refund_no_return_certified(ANCHOR_ID, "essential_oil")
