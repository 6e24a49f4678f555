"""In-memory implementations of orders' own interfaces (stock ledger, certificates) and a
fully wired OrderService on a real store: every test that uses ``world`` (or
``store_location``) runs twice, on a SQLite file and on a fresh PostgreSQL database, so neither
backend can drift from the other."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from orders import (
    Actor,
    HoldExpired,
    InspectionTerms,
    NotReservationHolder,
    Order,
    OrderService,
    OrderStore,
    PostgresOrderStore,
    ReservationInfo,
    SandboxPaymentProvider,
    SqliteOrderStore,
    UnknownReservation,
)
from tests.clock import Clock
from tests.rawdb import StoreLocation

SECRET = b"sandbox-test-secret"
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


@dataclass
class Sale:
    id: str
    stock: int
    live: bool = True
    per_user_limit: int = 1000


@dataclass
class MemoryLedger:
    """The inventory's contract in miniature: holds expire on the clock, commit and the sweeper
    exclude each other, restock gives a sold unit back while the sale is live."""

    clock: Clock
    sales: dict[str, Sale] = field(default_factory=dict)
    reservations: dict[str, ReservationInfo] = field(default_factory=dict)
    commits: int = 0
    commit_watchers: list[tuple[int, asyncio.Event]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def hold(
        self,
        user: str,
        *,
        sale: str = "s_sale000001",
        room: str = "r_room000001",
        anchor: str = "u_anchor00001",
        product: str = "p_prod000001",
        category: str = "clothing",
        brand: str = "Acme",
        price_cents: int = 12_900,
        qty: int = 1,
        ttl_ms: int = 60_000,
    ) -> ReservationInfo:
        sale_obj = self.sales.setdefault(sale, Sale(sale, stock=1000))
        assert sale_obj.stock >= qty
        sale_obj.stock -= qty
        info = ReservationInfo(
            id=f"{sale}.{next(self._seq)}", sale_id=sale, room_id=room, product_id=product,
            anchor_id=anchor, user_id=user, qty=qty, price_cents=price_cents, title="Item",
            category=category, brand=brand, expires_at=self.clock() + ttl_ms, state="reserved",
        )
        self.reservations[info.id] = info
        return info

    async def commit(self, reservation_id: str, user_id: str) -> ReservationInfo:
        await asyncio.sleep(0)  # let racing tasks interleave, as a network call would
        async with self.lock:
            info = self.reservations.get(reservation_id)
            if info is None:
                raise UnknownReservation(reservation_id)
            if info.user_id != user_id:
                raise NotReservationHolder(reservation_id)
            if info.state == "committed":
                return info
            if info.state != "reserved":
                raise HoldExpired(reservation_id)
            if self.clock() >= info.expires_at:
                self._expire(info)
                raise HoldExpired(reservation_id)
            # The atomic step takes a round trip, as a Lua script on Redis does.
            await asyncio.sleep(0)
            self.commits += 1
            for target, event in self.commit_watchers:
                if self.commits >= target:
                    event.set()
            info = replace(info, state="committed")
            self.reservations[reservation_id] = info
            return info

    async def wait_commits(self, target: int) -> None:
        event = asyncio.Event()
        self.commit_watchers.append((target, event))
        if self.commits >= target:
            event.set()
        await event.wait()

    def _expire(self, info: ReservationInfo) -> None:
        self.reservations[info.id] = replace(info, state="expired")
        self.sales[info.sale_id].stock += info.qty

    async def sweep(self) -> int:
        await asyncio.sleep(0)
        async with self.lock:
            due = [r for r in self.reservations.values()
                   if r.state == "reserved" and r.expires_at <= self.clock()]
            for info in due:
                self._expire(info)
            return len(due)

    async def restock(self, reservation_id: str) -> bool:
        async with self.lock:
            info = self.reservations[reservation_id]
            sale = self.sales[info.sale_id]
            if info.state == "restocked":
                return True
            if not sale.live:
                return False
            assert info.state == "committed"
            self.reservations[reservation_id] = replace(info, state="restocked")
            sale.stock += info.qty
            return True

    async def get_reservation(self, reservation_id: str) -> ReservationInfo:
        info = self.reservations.get(reservation_id)
        if info is None:
            raise UnknownReservation(reservation_id)
        return info

    async def release(self, reservation_id: str, user_id: str) -> None:
        async with self.lock:
            info = self.reservations.get(reservation_id)
            if info is None:
                raise UnknownReservation(reservation_id)
            if info.state == "reserved" and info.user_id == user_id:
                self.reservations[reservation_id] = replace(info, state="released")
                self.sales[info.sale_id].stock += info.qty

    async def per_person_limit(self, sale_id: str) -> int:
        return self.sales[sale_id].per_user_limit


@dataclass
class MemoryCertification:
    vault: set[str] = field(default_factory=set)
    refund_no_return: set[tuple[str, str]] = field(default_factory=set)
    inspections: dict[str, InspectionTerms] = field(default_factory=dict)

    async def vault_certified(self, product_id: str) -> bool:
        return product_id in self.vault

    async def refund_no_return_certified(self, anchor_id: str, category: str) -> bool:
        return (anchor_id, category) in self.refund_no_return

    async def inspection(self, product_id: str) -> InspectionTerms | None:
        return self.inspections.get(product_id)


@dataclass
class World:
    clock: Clock
    store: OrderStore
    ledger: MemoryLedger
    certs: MemoryCertification
    payments: SandboxPaymentProvider
    service: OrderService
    figure_changes: list[tuple[str, str]]

    async def checkout(
        self, buyer: Actor, reservation: ReservationInfo | str, payment: object = "cod"
    ) -> Order:
        rid = reservation if isinstance(reservation, str) else reservation.id
        return await self.service.checkout(buyer, body(rid, payment))

    def hold_payment_answers(self) -> asyncio.Event:
        """The provider's answers wait until the returned event is set: a test decides what
        happens while a charge is pending, however slow the store (the sandbox answers in 1 ms)."""
        answered, sink = asyncio.Event(), self.payments.sink
        assert sink is not None

        async def held_answer(body: bytes, signature: str) -> object:
            await answered.wait()
            return await sink(body, signature)

        self.payments.sink = held_answer
        return answered


def body(reservation: str, payment: object = "cod") -> dict[str, object]:
    return {
        "reservation": reservation,
        "address": {"name": "Li Wei", "phone": "+86 138 0013 8000", "line1": "1 Main St",
                    "city": "Linyi"},
        "payment": payment,
    }


def online(card: str = GOOD_CARD) -> dict[str, str]:
    return {"method": "online", "card": card}


BUYER = Actor("u_buyer000001", "viewer")
OTHER = Actor("u_other000001", "viewer")
ANCHOR = Actor("u_anchor00001", "anchor")
OTHER_ANCHOR = Actor("u_anchor00002", "anchor")
INSPECTOR = Actor("u_inspect0001", "inspector")
ADMIN = Actor("u_admin000001", "admin")


def new_store(where: StoreLocation) -> OrderStore:
    """A store on ``where``; two stores on one PostgreSQL URL are two nodes."""
    if isinstance(where, Path):
        return SqliteOrderStore.in_data_dir(where)
    return PostgresOrderStore(where, pool_size=4)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def store_location(request: pytest.FixtureRequest, data_dir: Path) -> StoreLocation:
    if request.param == "sqlite":
        return data_dir
    url: str = request.getfixturevalue("pg_url")
    return url


async def make_world(where: StoreLocation, clock: Clock | None = None,
                     ledger: MemoryLedger | None = None) -> World:
    """A wired service on a store at ``where``; with another world's clock and ledger, a
    second server (node) in front of the same inventory and database."""
    clock = Clock() if clock is None else clock
    store = new_store(where)
    await store.open()
    ledger = MemoryLedger(clock) if ledger is None else ledger
    certs = MemoryCertification()
    changes: list[tuple[str, str]] = []
    provider = SandboxPaymentProvider(SECRET, delay_s=0.001, now_ms=clock)
    service = OrderService(
        store, ledger, certs, provider, SECRET, now_ms=clock,
        on_figures_changed=lambda room, anchor: changes.append((room, anchor)),
    )
    provider.sink = service.handle_payment_callback
    return World(clock, store, ledger, certs, provider, service, changes)


@pytest.fixture
async def world(store_location: StoreLocation) -> AsyncIterator[World]:
    w = await make_world(store_location)
    yield w
    await w.payments.close()
    await w.store.close()
