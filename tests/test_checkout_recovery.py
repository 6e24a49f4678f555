"""Checkout crashes between the order store and the inventory, on real Redis and real SQLite.

Checkout writes a ``pending`` intent first, then commits the hold in Redis, then turns the intent
into the order. These tests kill a checkout between those steps (by raising, or by cancelling its
task), "restart" the order side on the same data dir and Redis, and check what every buyer and the
stock see: exactly one order per sold unit, none for a unit that went back on sale, and the same
order when the buyer simply retries.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from inventory import InventoryService, SaleSpec
from liveroom.commerce import CertificationAdapter, InventoryLedger, OrderUpkeep
from liveroom.metrics import Metrics
from orders import (
    INTENT_GRACE_MS,
    PAYMENT_TIMEOUT_MS,
    Actor,
    HandoffRecord,
    HoldExpired,
    Order,
    OrderNotFound,
    OrderService,
    ReservationInfo,
    SandboxPaymentProvider,
    SqliteOrderStore,
)
from tests.clock import Clock
from tests.server_harness import live_server
from trustbadges import CertificateService

HOLD_MS = 60_000
PRICE = 49_900
SECRET = b"recovery-test-secret"
ADDRESS = {"name": "Li Wei", "phone": "13800138000", "line1": "1 Main St", "city": "Linyi"}


class Crash(Exception):
    """The process died here (raised where a real crash would stop the checkout)."""


class CrashingLedger:
    """The real inventory, with a crash injected around the commit of chosen reservations:
    ``before`` never reaches Redis; ``after`` commits in Redis, then hangs until its task is
    cancelled (the process dies before the order is written)."""

    def __init__(self, real: InventoryLedger) -> None:
        self.real = real
        self.before: set[str] = set()
        self.after: set[str] = set()
        self.committed_then_hung: dict[str, asyncio.Event] = {}

    async def commit(self, reservation_id: str, user_id: str) -> ReservationInfo:
        if reservation_id in self.before:
            raise Crash(reservation_id)
        info = await self.real.commit(reservation_id, user_id)
        if reservation_id in self.after:
            self.committed_then_hung.setdefault(reservation_id, asyncio.Event()).set()
            await asyncio.Event().wait()  # until cancelled
        return info

    async def restock(self, reservation_id: str) -> bool:
        return await self.real.restock(reservation_id)

    async def get_reservation(self, reservation_id: str) -> ReservationInfo:
        return await self.real.get_reservation(reservation_id)

    async def release(self, reservation_id: str, user_id: str) -> None:
        await self.real.release(reservation_id, user_id)

    async def per_person_limit(self, sale_id: str) -> int:
        return await self.real.per_person_limit(sale_id)


@dataclass
class OrderSide:
    """One "process" of the order module: its own store connection, service and provider."""

    store: SqliteOrderStore
    service: OrderService
    payments: SandboxPaymentProvider
    pushes: list[tuple[str, Any, str]] = field(default_factory=list)

    async def stop(self) -> None:
        await self.payments.close()
        await self.store.close()


@dataclass
class Rig:
    clock: Clock
    data_dir: Path
    inventory: InventoryService
    certificates: CertificateService
    sale_id: str = ""

    async def start_orders(self, ledger: Any = None) -> OrderSide:
        store = SqliteOrderStore.in_data_dir(self.data_dir)
        await store.open()
        payments = SandboxPaymentProvider(SECRET, delay_s=0.001, now_ms=self.clock)
        service = OrderService(store, ledger or InventoryLedger(self.inventory),
                               CertificationAdapter(self.certificates), payments, SECRET,
                               now_ms=self.clock)
        payments.sink = service.handle_payment_callback
        return OrderSide(store, service, payments)

    async def start_crashing(self) -> tuple[OrderSide, CrashingLedger]:
        """An order side whose inventory commits can be made to crash (``CrashingLedger``)."""
        ledger = CrashingLedger(InventoryLedger(self.inventory))
        return await self.start_orders(ledger), ledger

    async def hold(self, user_id: str, qty: int = 1) -> str:
        result = await self.inventory.buy(self.sale_id, user_id, qty, f"req-{user_id}")
        assert result.status == "reserved", result
        assert result.reservation is not None
        return result.reservation.id

    async def sale_counts(self) -> tuple[int, int, int]:
        sale = await self.inventory.get_sale(self.sale_id)
        return sale.remaining, sale.held, sale.sold


def address_of(reservation: str) -> dict[str, str]:
    """Each checkout's own door and phone: one door may take only a sale's per-person limit."""
    seq = int(reservation.rsplit(".", 1)[1])
    return {**ADDRESS, "line1": f"{seq} Main St", "phone": f"1380013{seq:04d}"}


def checkout_body(reservation: str, payment: object = "cod") -> dict[str, object]:
    return {"reservation": reservation, "address": address_of(reservation), "payment": payment}


def buyer(i: int) -> Actor:
    return Actor(f"u_buyer{i:07d}", "viewer")


@pytest.fixture
async def rig(redis: aioredis.Redis, data_dir: Path) -> AsyncIterator[Rig]:
    clock = Clock()
    inventory = InventoryService(redis, now_ms=clock)
    await inventory.start()
    certificates = CertificateService.open(data_dir, now_ms=clock)
    r = Rig(clock, data_dir, inventory, certificates)
    sale = await inventory.create_sale(SaleSpec(
        room_id="r_room000001", product_id="p_prod000001", anchor_id="u_anchor00001",
        title="Essential oil", category="essential_oil", brand="Acme", stock=20,
        price_cents=PRICE, per_user_limit=1, starts_at_ms=clock.now,
        ends_at_ms=clock.now + 3_600_000, hold_ms=HOLD_MS))
    r.sale_id = sale.id
    yield r
    await certificates.close()
    await inventory.close()


async def crash_after_commit(side: OrderSide, ledger: CrashingLedger, who: Actor,
                             reservation: str, payment: object = "cod") -> None:
    """Run the checkout until Redis has sold the unit, then kill it before the order exists."""
    ledger.after.add(reservation)
    task = asyncio.create_task(side.service.checkout(who, checkout_body(reservation, payment)))
    while reservation not in ledger.committed_then_hung:
        await asyncio.sleep(0.005)
        assert not task.done(), task
    await ledger.committed_then_hung[reservation].wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_crash_after_the_redis_commit_is_recovered_as_one_order(rig: Rig) -> None:
    ann = buyer(1)
    hold = await rig.hold(ann.user_id)
    first, ledger = await rig.start_crashing()
    await crash_after_commit(first, ledger, ann, hold)
    assert await rig.sale_counts() == (19, 0, 1), "Redis sold the unit"
    assert await first.service.list_orders(ann) == [], "the buyer sees no order yet"
    await first.stop()

    second = await rig.start_orders()
    try:
        # Fresh intents are left alone (their checkout may still be running elsewhere).
        early = await second.service.reconcile()
        assert (early.placed, early.voided) == ((), ())
        assert await second.service.list_orders(ann) == []
        rig.clock.advance(INTENT_GRACE_MS)
        settled = await second.service.reconcile()
        [order] = settled.placed
        assert order.status == "confirmed"
        assert (order.reservation_id, order.buyer_id, order.total_cents) == (hold, ann.user_id,
                                                                               PRICE)
        assert order.address.line1 == address_of(hold)["line1"], "the address came from the intent"
        assert await second.service.list_orders(ann) == [order]
        history = [(e.kind, e.to_status) for e in await second.service.history(ann, order.id)]
        assert history == [("created", "created"), ("confirm", "confirmed")]
        # A cash-on-delivery order recovered this way is collected at delivery as usual.
        [payment] = await second.service.payments_of(ann, order.id)
        assert (payment.method, payment.status) == ("cod", "pending")

        again = await second.service.checkout(ann, checkout_body(hold))
        assert again.id == order.id
        assert (await second.service.reconcile()).placed == ()
        assert await rig.sale_counts() == (19, 0, 1)
    finally:
        await second.stop()


async def test_crash_before_the_redis_commit_then_retry_or_expiry(rig: Rig) -> None:
    ann, bo = buyer(1), buyer(2)
    ann_hold, bo_hold = await rig.hold(ann.user_id), await rig.hold(bo.user_id)
    first, ledger = await rig.start_crashing()
    ledger.before.update({ann_hold, bo_hold})
    for who, hold in ((ann, ann_hold), (bo, bo_hold)):
        with pytest.raises(Crash):
            await first.service.checkout(who, checkout_body(hold))
    intent = await first.store.get_order_by_reservation(ann_hold)
    assert intent is not None
    assert intent.status == "pending"
    with pytest.raises(OrderNotFound):
        await first.service.get_order(ann, intent.id)
    await first.stop()
    assert await rig.sale_counts() == (18, 2, 0), "nothing sold: both units still held"

    second = await rig.start_orders()
    try:
        rig.clock.advance(INTENT_GRACE_MS)
        waiting = await second.service.reconcile()
        assert (waiting.placed, waiting.voided) == ((), ())
        assert set(waiting.waiting) == {ann_hold, bo_hold}, "live holds are left to the buyer"

        # Ann retries the same checkout: the same order, now placed and sold.
        order = await second.service.checkout(ann, checkout_body(ann_hold))
        assert (order.id, order.status) == (intent.id, "confirmed")
        assert (await second.service.checkout(ann, checkout_body(ann_hold))).id == intent.id

        # Bo never comes back: his hold expires and the unit goes back on sale, with no order.
        rig.clock.advance(HOLD_MS)
        await rig.inventory.expire_holds(rig.sale_id)
        settled = await second.service.reconcile()
        assert (settled.placed, settled.voided) == ((), (bo_hold,))
        assert await second.service.list_orders(bo) == []
        with pytest.raises(HoldExpired):
            await second.service.checkout(bo, checkout_body(bo_hold))
        assert await rig.sale_counts() == (19, 0, 1)
        assert [o.reservation_id for o in await second.service.list_orders(ann)] == [ann_hold]
    finally:
        await second.stop()


async def test_many_interrupted_checkouts_leave_one_order_per_sold_unit(rig: Rig) -> None:
    rng = random.Random(4)
    buyers = [buyer(i) for i in range(12)]
    holds = {who.user_id: await rig.hold(who.user_id) for who in buyers}
    first, ledger = await rig.start_crashing()
    fates: dict[str, str] = {}
    for who in buyers:
        hold = holds[who.user_id]
        fate = fates[hold] = rng.choice(["ok", "before", "after", "abandoned"])
        if fate == "ok":
            await first.service.checkout(who, checkout_body(hold))
        elif fate == "before":
            ledger.before.add(hold)
            with pytest.raises(Crash):
                await first.service.checkout(who, checkout_body(hold))
        elif fate == "after":
            await crash_after_commit(first, ledger, who, hold)
    assert {"ok", "before", "after"} <= set(fates.values())
    await first.stop()

    second = await rig.start_orders()
    try:
        # Every hold not sold runs out; then the reconciler settles what the crashes left.
        rig.clock.advance(HOLD_MS)
        await rig.inventory.expire_holds(rig.sale_id)
        await second.service.reconcile()
        remaining, held, sold = await rig.sale_counts()
        assert held == 0
        assert sold == sum(1 for fate in fates.values() if fate in ("ok", "after"))
        assert remaining + sold == 20
        ordered: dict[str, Order] = {}
        for who in buyers:
            for order in await second.service.list_orders(who):
                assert order.reservation_id not in ordered
                ordered[order.reservation_id] = order
        for hold, fate in fates.items():
            state = (await rig.inventory.get_reservation(hold)).state
            if fate in ("ok", "after"):
                assert state == "committed"
                assert ordered[hold].status == "confirmed"
            else:
                assert state == "expired"
                assert hold not in ordered, f"{fate}: a returned unit has no order"
        assert len(ordered) == sold
    finally:
        await second.stop()


async def test_a_recovered_online_checkout_waits_for_payment(rig: Rig) -> None:
    ann = buyer(1)
    hold = await rig.hold(ann.user_id)
    first, ledger = await rig.start_crashing()
    card = {"method": "online", "card": "4242424242424242"}
    await crash_after_commit(first, ledger, ann, hold, card)
    await first.stop()

    second = await rig.start_orders()
    try:
        rig.clock.advance(INTENT_GRACE_MS)
        [order] = (await second.service.reconcile()).placed
        # The card number was never stored, so nothing was charged: the buyer pays again.
        assert (order.status, order.payment_method, order.placed_at) == ("created", "online",
                                                                         None)
        assert await second.service.payments_of(ann, order.id) == []
        await second.service.pay(ann, order.id, card)
        await second.payments.drain()
        assert (await second.service.get_order(ann, order.id)).status == "paid"
    finally:
        await second.stop()


async def test_upkeep_loop_recovers_orders_and_reports_sales_without_one(rig: Rig) -> None:
    ann = buyer(1)
    hold = await rig.hold(ann.user_id)
    side, ledger = await rig.start_crashing()
    await crash_after_commit(side, ledger, ann, hold)
    side.service.ledger = InventoryLedger(rig.inventory)
    # A unit sold behind the order module's back (no intent at all), recorded as committed.
    orphan_buyer = buyer(2)
    orphan = await rig.hold(orphan_buyer.user_id)
    committed = await InventoryLedger(rig.inventory).commit(orphan, orphan_buyer.user_id)
    # The hand-off consumer records the stream's "committed" entry in the same store.
    await side.store.record_handoff(
        [HandoffRecord(rig.sale_id, "1-1", "committed", committed)], rig.clock())

    metrics = Metrics()
    pushes: list[tuple[str, Any, str]] = []

    async def emit(event: str, data: Any, room: str) -> None:
        pushes.append((event, data, room))

    upkeep = OrderUpkeep(side.service, emit, metrics, interval_s=0.02)
    rig.clock.advance(INTENT_GRACE_MS)
    upkeep.start()
    try:
        for _ in range(1500):  # bounds failure only
            if pushes and upkeep.unrecorded:
                break
            await asyncio.sleep(0.02)
        [(event, data, room)] = pushes
        assert (event, room, data["status"]) == ("order", f"user:{ann.user_id}", "confirmed")
        assert upkeep.unrecorded == {orphan}
        assert "liveroom_orders_unrecorded_sales 1" in metrics.render()
        # The buyer of the orphan checks out after all: the unit has its order, the alarm clears.
        await side.service.checkout(orphan_buyer, checkout_body(orphan))
        for _ in range(1500):
            if not upkeep.unrecorded:
                break
            await asyncio.sleep(0.02)
        assert upkeep.unrecorded == frozenset()
        assert "liveroom_orders_unrecorded_sales 0" in metrics.render()
    finally:
        await upkeep.close()
        await side.stop()


async def test_server_start_settles_a_checkout_interrupted_before_the_restart(
    rig: Rig, redis_url: str
) -> None:
    ann = buyer(1)
    hold = await rig.hold(ann.user_id)
    side, ledger = await rig.start_crashing()
    await crash_after_commit(side, ledger, ann, hold)
    await side.stop()

    # The rig's clock stands long before the server's: the crash is old news at startup.
    async with live_server(redis_url, rig.data_dir) as server:
        token = server.token("viewer", "Ann", user_id=ann.user_id)
        status, body = await server.request("GET", "/api/orders", token)
        assert status == 200
        [order] = body["orders"]
        assert (order["reservation"], order["status"], order["total_cents"]) == (
            hold, "confirmed", PRICE)
        status, again = await server.request("POST", "/api/orders", token, checkout_body(hold))
        assert (status, again["order"]["id"]) == (201, order["id"])
        async with server.http.get(server.url + "/metrics") as response:
            assert ('liveroom_orders_unrecorded_sales{node="test-node"} 0'
                    in await response.text())


async def test_upkeep_cancels_an_unpaid_online_order_and_its_unit_goes_back_on_sale(
    rig: Rig
) -> None:
    ann = buyer(1)
    hold = await rig.hold(ann.user_id)
    side = await rig.start_orders()
    pushes: list[tuple[str, Any, str]] = []

    async def emit(event: str, data: Any, room: str) -> None:
        pushes.append((event, data, room))

    upkeep = OrderUpkeep(side.service, emit, Metrics())
    try:
        declined = {"method": "online", "card": "4000000000000002"}
        order = await side.service.checkout(ann, checkout_body(hold, declined))
        await side.payments.drain()
        assert await rig.sale_counts() == (19, 0, 1)
        rig.clock.advance(PAYMENT_TIMEOUT_MS - 1)
        await upkeep.run_once()
        assert pushes == []
        rig.clock.advance(1)
        await upkeep.run_once()
        [(event, data, room)] = pushes
        assert (event, room, data["id"], data["status"]) == (
            "order", f"user:{ann.user_id}", order.id, "cancelled")
        assert await rig.sale_counts() == (20, 0, 0), "the unit is back on sale in Redis"
        assert (await rig.inventory.get_reservation(hold)).state == "restocked"
    finally:
        await side.stop()
