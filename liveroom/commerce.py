"""The adapters that let ``orders`` use the inventory and the certificates through its own
protocols, and the owner that pushes live ``figures`` to anchors."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import inventory
import orders
from orders import InspectionTerms, Order, OrderService, ReservationInfo
from orders.interfaces import ReservationState
from trustbadges import CertificateService

from .loops import PeriodicLoop
from .metrics import Gauge, Metrics
from .rooms import RoomService

__all__ = ["CertificationAdapter", "FiguresPusher", "InventoryLedger", "OrderUpkeep",
           "PaymentCallbacks", "RoomFigures", "push_order"]

log = logging.getLogger("liveroom.commerce")


# The inventory says "held" where orders says "reserved"; the other states share their names.
_STATES: dict[str, ReservationState] = {
    "held": "reserved", "committed": "committed", "released": "released",
    "expired": "expired", "restocked": "restocked",
}


def _info(reservation: inventory.Reservation) -> ReservationInfo:
    return ReservationInfo(
        id=reservation.id, sale_id=reservation.sale_id, room_id=reservation.room_id,
        product_id=reservation.product_id, anchor_id=reservation.anchor_id,
        user_id=reservation.user_id, qty=reservation.qty, price_cents=reservation.price_cents,
        title=reservation.title, category=reservation.category, brand=reservation.brand,
        expires_at=reservation.expires_at, state=_STATES[reservation.state],
    )


class InventoryLedger:
    """``orders.StockLedger`` over ``inventory.InventoryService``."""

    def __init__(self, service: inventory.InventoryService) -> None:
        self._service = service

    async def commit(self, reservation_id: str, user_id: str) -> ReservationInfo:
        try:
            return _info(await self._service.commit(reservation_id, user_id))
        except inventory.UnknownReservation:
            raise orders.UnknownReservation(reservation_id) from None
        except inventory.NotHolder:
            raise orders.NotReservationHolder(reservation_id) from None
        except (inventory.HoldExpired, inventory.HoldNotActive):
            raise orders.HoldExpired(reservation_id) from None

    async def restock(self, reservation_id: str) -> bool:
        try:
            return await self._service.restock(reservation_id)
        except inventory.UnknownReservation:
            raise orders.UnknownReservation(reservation_id) from None

    async def get_reservation(self, reservation_id: str) -> ReservationInfo:
        try:
            return _info(await self._service.get_reservation(reservation_id))
        except inventory.UnknownReservation:
            raise orders.UnknownReservation(reservation_id) from None

    async def release(self, reservation_id: str, user_id: str) -> None:
        try:
            await self._service.release(reservation_id, user_id)
        except (inventory.HoldNotActive, inventory.NotHolder):
            pass  # already sold or not theirs: nothing to give back
        except inventory.UnknownReservation:
            raise orders.UnknownReservation(reservation_id) from None

    async def per_person_limit(self, sale_id: str) -> int:
        return (await self._service.get_sale(sale_id)).per_user_limit


class CertificationAdapter:
    """``orders.CertificationPolicy`` over ``trustbadges.CertificateService``."""

    def __init__(self, certificates: CertificateService) -> None:
        self._certificates = certificates

    async def vault_certified(self, product_id: str) -> bool:
        return await self._certificates.vault_certified(product_id)

    async def refund_no_return_certified(self, anchor_id: str, category: str) -> bool:
        return await self._certificates.refund_no_return_certified(anchor_id, category)

    async def inspection(self, product_id: str) -> InspectionTerms | None:
        terms = await self._certificates.inspection_terms(product_id)
        if terms is None:
            return None
        return InspectionTerms(report_id=terms.certificate_id,
                               buyback_price_cents=terms.buyback_price_cents,
                               warranty_ends_at=terms.warranty_ends_at)


FiguresOf = Callable[[str], Awaitable[dict[str, Any]]]
Emit = Callable[[str, Any, str], Awaitable[None]]


async def push_order(emit: Emit, orders: OrderService, order: Order) -> None:
    """The ``order`` push: ``order`` changed, told to every socket of its buyer (the order
    object with the buyer's actions)."""
    await emit("order", await orders.buyer_view(order), f"user:{order.buyer_id}")


class RoomFigures:
    """A room's live order figures (GMV, orders, conversion...) as its anchor sees them: the
    orders' numbers over the room's unique viewers."""

    def __init__(self, orders: OrderService, rooms: RoomService) -> None:
        self._orders = orders
        self._rooms = rooms

    async def of(self, room_id: str) -> dict[str, Any]:
        viewers = (await self._rooms.unique_viewers([room_id]))[room_id]
        figures = await self._orders.room_figures(room_id, viewers)
        return {"room": room_id, **figures.to_public()}


class PaymentCallbacks:
    """Where the payment provider's callbacks land: the order is settled and its buyer told."""

    def __init__(self, orders: OrderService, emit: Emit) -> None:
        self._orders = orders
        self._emit = emit

    async def deliver(self, body: bytes, signature: str) -> Order:
        order = await self._orders.handle_payment_callback(body, signature)
        await push_order(self._emit, self._orders, order)
        return order


class FiguresPusher(PeriodicLoop):
    """Owner of the loop that pushes ``figures`` to a room's anchor after orders change;
    coalesced to one push per room per interval, however many checkouts land."""

    name = "figures-pusher"

    def __init__(self, figures_of: FiguresOf, emit: Emit, interval_s: float = 0.5) -> None:
        super().__init__(interval_s)
        self._figures_of = figures_of
        self._emit = emit
        self._dirty: dict[str, str] = {}

    def changed(self, room_id: str, anchor_id: str) -> None:
        self._dirty[room_id] = anchor_id

    async def tick(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for room_id, anchor_id in dirty.items():
            try:
                figures = await self._figures_of(room_id)
                await self._emit("figures", {"room": room_id, **figures}, f"user:{anchor_id}")
            except Exception:
                log.warning("figures push failed for %s", room_id, exc_info=True)


# Each check for sold units without an order looks back this far before the previous check, so
# a unit recorded while a check ran is not skipped.
UNRECORDED_OVERLAP_MS = 60_000


class OrderUpkeep(PeriodicLoop):
    """Owner of the orders' housekeeping loop, in the process that owns the hand-off consumer
    (one per server): settles checkouts a crash interrupted (``OrderService.reconcile``), applies
    the payment timeouts (``expire_unpaid``), retries interrupted restocks, and reports sold
    units that have no order. ``run_once()`` is also
    awaited at startup. Every pass is safe beside another process doing the same: each change
    is a compare-and-set in the order store."""

    name = "order-upkeep"

    def __init__(self, orders: OrderService, emit: Emit, metrics: Metrics,
                 interval_s: float = 10.0) -> None:
        super().__init__(interval_s)
        self._orders = orders
        self._emit = emit
        # The first check looks at every sold unit; later ones at what was recorded since.
        self._checked_since = 0
        self.unrecorded: frozenset[str] = frozenset()
        self._unrecorded_gauge = metrics.add(Gauge(
            "liveroom_orders_unrecorded_sales",
            "Reservations sold in the inventory that have no order (should stay 0)."))
        self._unrecorded_gauge.set(0)

    async def tick(self) -> None:
        await self.run_once()

    async def begin(self) -> None:
        """One pass now, then the loop: checkouts and restocks a crash interrupted are settled
        before buyers come back. A failing first pass is logged; the loop retries it."""
        try:
            await self.run_once()
        except Exception:
            log.exception("order upkeep at startup failed; the loop retries")
        self.start()

    async def run_once(self) -> None:
        started = self._orders.now_ms()
        settled = await self._orders.reconcile()
        for order in settled.placed:
            await self._tell_buyer(order)
        for order in await self._orders.expire_unpaid():
            await self._tell_buyer(order)
        await self._orders.resume_restocks()
        found = frozenset(await self._orders.unrecorded_sales(self._checked_since,
                                                              self.unrecorded))
        for reservation_id in sorted(found - self.unrecorded):
            log.error("reservation %s was sold but has no order", reservation_id)
        self.unrecorded = found
        self._unrecorded_gauge.set(len(found))
        self._checked_since = started - UNRECORDED_OVERLAP_MS

    async def _tell_buyer(self, order: Order) -> None:
        try:
            await push_order(self._emit, self._orders, order)
        except Exception:
            log.warning("order push failed for %s", order.id, exc_info=True)
