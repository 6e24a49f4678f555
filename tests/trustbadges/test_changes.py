"""Change notification: grants, revocations, expiries and activations reach the listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.clock import Clock
from tests.rawdb import StoreLocation
from trustbadges import BadgeChange, CertificateService, ExpiryWatcher, wall_clock_ms

from .conftest import ADMIN, ANCHOR_ID, INSPECTOR, PRODUCT_ID, open_service, vault_details


class Recorder:
    """A listener that notes each change with the wall-clock time it arrived."""

    # How long ``next`` waits for a change before the test fails: only a bound on failure (a
    # busy machine may take seconds to run a watcher's pass), never on success.
    DEADLINE_S = 60.0

    def __init__(self) -> None:
        self.changes: list[tuple[BadgeChange, int]] = []
        self._queue: asyncio.Queue[tuple[BadgeChange, int]] = asyncio.Queue()

    async def __call__(self, change: BadgeChange) -> None:
        arrival = (change, wall_clock_ms())
        self.changes.append(arrival)
        self._queue.put_nowait(arrival)

    async def next(self) -> tuple[BadgeChange, int]:
        """The next change not yet taken, failing the test if none comes by the deadline."""
        async with asyncio.timeout(self.DEADLINE_S):
            return await self._queue.get()


# The watcher sleeps in real time until the moment its service's clock says is next; here that
# clock stands still until the test moves it, so "not yet due" and "due" are the test's to say,
# not a race between a few hundred milliseconds and a busy machine. A watcher that planned
# nothing would sleep its ``max_sleep_s`` (an hour here): hearing of a transition at all shows
# it planned for it.
NEVER_S = 3600.0


@pytest.fixture
async def live(data_dir: Path, cert_location: StoreLocation, clock: Clock
               ) -> AsyncIterator[CertificateService]:
    """A service on a clock the test moves, on either store."""
    svc = open_service(data_dir, cert_location, clock)
    yield svc
    await svc.close()


async def test_grant_and_revoke_reach_listener(service: CertificateService, clock: Clock) -> None:
    recorder = Recorder()
    failing_calls: list[BadgeChange] = []

    def failing(change: BadgeChange) -> None:
        failing_calls.append(change)
        raise RuntimeError("a broken listener must not break issuing")

    service.add_listener(failing)
    remove = service.add_listener(recorder)
    cert = await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    change, _ = await recorder.next()
    assert (change.product_id, change.reason, change.certificate_id, change.kind, change.at) == (
        PRODUCT_ID,
        "granted",
        cert.id,
        "vault",
        clock.now,
    )
    clock.advance(5)
    await service.revoke(*ADMIN, cert.id, "recalled")
    change, _ = await recorder.next()
    assert (change.reason, change.certificate_id, change.at) == ("revoked", cert.id, clock.now)
    assert len(failing_calls) == 2

    rnr = await service.issue(
        *ADMIN,
        "refund_no_return",
        anchor_id=ANCHOR_ID,
        category="essential_oil",
        details={"valid_from": clock.now, "valid_until": clock.now + 60_000},
    )
    change, _ = await recorder.next()
    assert (change.product_id, change.anchor_id, change.category, change.certificate_id) == (
        None,
        ANCHOR_ID,
        "essential_oil",
        rnr.id,
    )
    remove()
    await service.issue(*INSPECTOR, "vault", product_id=PRODUCT_ID, details=vault_details())
    assert len(recorder.changes) == 3


async def test_expiry_fires_at_the_expiry_moment(live: CertificateService, clock: Clock) -> None:
    recorder = Recorder()
    live.add_listener(recorder)
    # Started with nothing pending: it must re-plan when the certificate is issued.
    watcher = ExpiryWatcher(live, max_sleep_s=NEVER_S)
    watcher.start()
    try:
        await asyncio.sleep(0.05)
        expires_at = clock.now + 400
        cert = await live.issue(
            *INSPECTOR,
            "vault",
            product_id=PRODUCT_ID,
            details=vault_details(),
            expires_at=expires_at,
        )
        granted, _ = await recorder.next()
        assert granted.reason == "granted"
        assert (await live.badges_for(PRODUCT_ID, None, None))[0]["kind"] == "vault-certified"

        clock.now = expires_at
        expired, _ = await recorder.next()
        assert (expired.reason, expired.certificate_id, expired.at) == (
            "expired",
            cert.id,
            expires_at,
        )
        # When the listener hears of it, the badge is already gone.
        assert (await live.badges_for(PRODUCT_ID, None, None))[0]["kind"] != "vault-certified"
        audit = [(e.action, e.at, e.actor_role) for e in await live.audit_trail(cert.id)]
        assert audit[-1] == ("expired", expires_at, "system")
    finally:
        await watcher.close()


async def test_delayed_refund_no_return_activates_then_expires(
    live: CertificateService, clock: Clock
) -> None:
    recorder = Recorder()
    live.add_listener(recorder)
    watcher = ExpiryWatcher(live, max_sleep_s=NEVER_S)
    watcher.start()
    try:
        start = clock.now + 300
        cert = await live.issue(
            *ADMIN,
            "refund_no_return",
            anchor_id=ANCHOR_ID,
            category="essential_oil",
            details={"valid_from": start, "valid_until": start + 300},
        )
        assert (await recorder.next())[0].reason == "granted"
        assert not await live.refund_no_return_certified(ANCHOR_ID, "essential_oil")
        clock.now = start
        activated, _ = await recorder.next()
        assert (activated.reason, activated.certificate_id, activated.at) == (
            "activated", cert.id, start)
        assert await live.refund_no_return_certified(ANCHOR_ID, "essential_oil")
        clock.now = start + 300
        expired, _ = await recorder.next()
        assert (expired.reason, expired.at) == ("expired", start + 300)
    finally:
        await watcher.close()


async def test_revoked_certificate_does_not_expire_again(
    live: CertificateService, clock: Clock
) -> None:
    recorder = Recorder()
    live.add_listener(recorder)
    watcher = ExpiryWatcher(live, max_sleep_s=NEVER_S)
    watcher.start()
    try:
        cert = await live.issue(
            *INSPECTOR,
            "vault",
            product_id=PRODUCT_ID,
            details=vault_details(),
            expires_at=clock.now + 300,
        )
        await live.revoke(*INSPECTOR, cert.id, "withdrawn")
        # A second certificate expiring after the first: once its expiry is heard, the watcher
        # has passed the first one's moment too.
        later = await live.issue(
            *INSPECTOR,
            "vault",
            product_id=PRODUCT_ID,
            details=vault_details(),
            expires_at=clock.now + 301,
        )
        clock.advance(301)
        while (change := (await recorder.next())[0]).reason != "expired":
            assert change.certificate_id != later.id or change.reason == "granted", change
        assert [(c.certificate_id, c.reason) for c, _ in recorder.changes] == [
            (cert.id, "granted"), (cert.id, "revoked"), (later.id, "granted"),
            (later.id, "expired")]
    finally:
        await watcher.close()


async def test_each_expiry_reported_once_across_processes_and_restarts(
    data_dir: Path, cert_location: StoreLocation, clock: Clock
) -> None:
    # Two services on one store stand for two server processes (or nodes).
    first = open_service(data_dir, cert_location, clock)
    second = open_service(data_dir, cert_location, clock)
    recorders = [Recorder(), Recorder()]
    first.add_listener(recorders[0])
    second.add_listener(recorders[1])
    watchers = [ExpiryWatcher(first, max_sleep_s=0.2), ExpiryWatcher(second, max_sleep_s=0.2)]
    for watcher in watchers:
        watcher.start()
    try:
        expires_at = clock.now + 300
        cert = await first.issue(
            *INSPECTOR,
            "vault",
            product_id=PRODUCT_ID,
            details=vault_details(),
            expires_at=expires_at,
        )
        clock.now = expires_at  # both watchers find it due on their next turn (<= 0.2 s)

        def expiries() -> list[str]:
            return [c.certificate_id for r in recorders for c, _ in r.changes
                    if c.reason == "expired"]

        for _ in range(int(Recorder.DEADLINE_S / 0.02)):  # bounds failure only
            if expiries():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # several turns of both watchers: a second report would show
        assert expiries() == [cert.id]
        # Neither process has it left to report.
        assert await first.process_due_transitions() == []
        assert await second.process_due_transitions() == []
    finally:
        for watcher in watchers:
            await watcher.close()
        await first.close()
        await second.close()

    # Expired while no server ran: reported once on the next start, never again.
    third = open_service(data_dir, cert_location, clock)
    missed = await third.issue(
        *INSPECTOR,
        "vault",
        product_id=PRODUCT_ID,
        details=vault_details(),
        expires_at=clock.now + 1,
    )
    clock.advance(10_000)
    recorder = Recorder()
    third.add_listener(recorder)
    changes = await third.process_due_transitions()
    assert [(c.certificate_id, c.reason) for c in changes] == [(missed.id, "expired")]
    assert await third.process_due_transitions() == []
    await third.close()


async def test_a_woken_watcher_plans_a_certificate_another_process_issued(
    data_dir: Path, cert_location: StoreLocation, clock: Clock
) -> None:
    # Two services on one store stand for two server processes (or nodes); the issuer has no
    # watcher running (it stopped), so only the other one can report the expiry.
    issuer = open_service(data_dir, cert_location, clock)
    other = open_service(data_dir, cert_location, clock)
    recorder = Recorder()
    other.add_listener(recorder)
    watcher = ExpiryWatcher(other, max_sleep_s=NEVER_S)
    watcher.start()
    try:
        await asyncio.sleep(0.05)  # planned with nothing pending: asleep for an hour
        expires_at = clock.now + 400
        cert = await issuer.issue(
            *INSPECTOR,
            "vault",
            product_id=PRODUCT_ID,
            details=vault_details(),
            expires_at=expires_at,
        )
        await issuer.close()
        watcher.wake()  # what the news of the grant does in every other process
        clock.now = expires_at
        expired, _ = await recorder.next()
        assert (expired.reason, expired.certificate_id, expired.at) == (
            "expired", cert.id, expires_at)
    finally:
        await watcher.close()
        await other.close()
