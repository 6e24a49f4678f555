"""``OrderService``: the orders domain's one entry point, composed of a part per job over one
shared core (``_core.py``: the store, the collaborators, the clock, the compare-and-set and
retry helpers):

- ``_checkout.py``   checkout and its crash recovery (``reconcile``)
- ``_payments.py``   charges, the provider's callbacks, payment timeouts
- ``_lifecycle.py``  cancel (and restock), ship, deliver, complete
- ``_aftersales.py`` returns, refund-no-return, counterfeit claims and decisions, warranty, buyback
- ``_analytics.py``  figures
- ``_actions.py``    what a caller may do to an order now (the order object's ``actions``)

The service's methods are the parts' own, bound at construction, so each is documented where it
is written; reading an order (with its history, claims, payments) is done here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, overload

from ._actions import Action, OrderActions
from ._aftersales import AfterSales
from ._analytics import Analytics
from ._checkout import INTENT_GRACE_MS, Checkout
from ._core import NO_COUPONS, FiguresListener, OrderCore, system_clock
from ._lifecycle import Lifecycle
from ._models import Actor, Claim, Order, OrderEvent, Payment, Payout
from ._payments import CHARGE_TIMEOUT_MS, PAYMENT_TIMEOUT_MS, Payments
from ._store import OrderStore
from .interfaces import CertificationPolicy, CouponWallet, PaymentProvider, StockLedger

__all__ = ["OrderService"]

_V = TypeVar("_V")


class _Shared(Generic[_V]):
    """An attribute of the service that is the shared core's: setting it on the service (a
    test moving the clock, swapping the inventory) reaches every part."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, service: None, owner: type) -> _Shared[_V]: ...
    @overload
    def __get__(self, service: OrderService, owner: type) -> _V: ...
    def __get__(self, service: OrderService | None, owner: type) -> _Shared[_V] | _V:
        if service is None:
            return self
        value: _V = getattr(service._core, self._name)
        return value

    def __set__(self, service: OrderService, value: _V) -> None:
        setattr(service._core, self._name, value)


class OrderService:
    store: _Shared[OrderStore] = _Shared()
    ledger: _Shared[StockLedger] = _Shared()
    certification: _Shared[CertificationPolicy] = _Shared()
    payments: _Shared[PaymentProvider] = _Shared()
    now_ms: _Shared[Callable[[], int]] = _Shared()
    on_figures_changed: _Shared[FiguresListener | None] = _Shared()
    intent_grace_ms: _Shared[int] = _Shared()
    payment_timeout_ms: _Shared[int] = _Shared()
    charge_timeout_ms: _Shared[int] = _Shared()
    coupons: _Shared[CouponWallet] = _Shared()

    def __init__(
        self,
        store: OrderStore,
        ledger: StockLedger,
        certification: CertificationPolicy,
        payments: PaymentProvider,
        payment_secret: bytes,
        *,
        now_ms: Callable[[], int] = system_clock,
        on_figures_changed: FiguresListener | None = None,
        intent_grace_ms: int = INTENT_GRACE_MS,
        payment_timeout_ms: int = PAYMENT_TIMEOUT_MS,
        charge_timeout_ms: int = CHARGE_TIMEOUT_MS,
        coupons: CouponWallet = NO_COUPONS,
    ) -> None:
        self._core = core = OrderCore(
            store, ledger, certification, payments, payment_secret, now_ms=now_ms,
            on_figures_changed=on_figures_changed, intent_grace_ms=intent_grace_ms,
            payment_timeout_ms=payment_timeout_ms, charge_timeout_ms=charge_timeout_ms,
            coupons=coupons,
        )
        lifecycle = Lifecycle(core)
        paying = Payments(core, lifecycle)
        checkout = Checkout(core, paying)
        after_sales = AfterSales(core)
        analytics = Analytics(core)
        self._actions = OrderActions(core, paying, lifecycle, after_sales)

        self.checkout = checkout.checkout
        self.reconcile = checkout.reconcile
        self.unrecorded_sales = checkout.unrecorded_sales

        self.pay = paying.pay
        self.handle_payment_callback = paying.handle_payment_callback
        self.expire_unpaid = paying.expire_unpaid

        self.cancel = lifecycle.cancel
        self.ship = lifecycle.ship
        self.deliver = lifecycle.deliver
        self.complete = lifecycle.complete
        self.resume_restocks = lifecycle.resume_restocks

        self.request_return = after_sales.request_return
        self.receive_return = after_sales.receive_return
        self.refund_no_return = after_sales.refund_no_return
        self.counterfeit_claim = after_sales.counterfeit_claim
        self.uphold_counterfeit = after_sales.uphold_counterfeit
        self.reject_counterfeit = after_sales.reject_counterfeit
        self.warranty_claim = after_sales.warranty_claim
        self.buyback_quote = after_sales.buyback_quote

        self.analytics = analytics.analytics
        self.room_figures = analytics.room_figures

    # -- reading ---------------------------------------------------------------------------

    async def get_order(self, actor: Actor, order_id: str) -> Order:
        return await self._core.visible(actor, order_id)

    async def order_detail(self, actor: Actor, order_id: str) -> dict[str, Any]:
        """The order object for ``actor`` (with its ``actions``) and its event history, claims,
        payments and payouts, for its viewers."""
        order = await self._core.visible(actor, order_id)
        store = self._core.store
        detail = await self.view(actor, order)
        detail["events"] = [e.to_public() for e in await store.events(order_id)]
        detail["claims"] = [c.to_public() for c in await store.claims(order_id)]
        detail["payments"] = [p.to_public() for p in await store.payments(order_id)]
        detail["payouts"] = [p.to_public() for p in await store.payouts(order_id)]
        return detail

    async def list_orders(self, actor: Actor) -> list[Order]:
        """The caller's own orders as a buyer, newest first."""
        return await self._core.store.list_orders_by_buyer(actor.user_id)

    async def history(self, actor: Actor, order_id: str) -> list[OrderEvent]:
        await self._core.visible(actor, order_id)
        return await self._core.store.events(order_id)

    async def claims(self, actor: Actor, order_id: str) -> list[Claim]:
        await self._core.visible(actor, order_id)
        return await self._core.store.claims(order_id)

    async def payments_of(self, actor: Actor, order_id: str) -> list[Payment]:
        await self._core.visible(actor, order_id)
        return await self._core.store.payments(order_id)

    async def payouts_of(self, actor: Actor, order_id: str) -> list[Payout]:
        await self._core.visible(actor, order_id)
        return await self._core.store.payouts(order_id)

    # -- the order object ------------------------------------------------------------------

    async def actions(self, actor: Actor, order: Order) -> list[Action]:
        """What ``actor`` may do to ``order`` now, and until when: the buyer's actions if they
        are its buyer, else the seller's if they are its anchor or an admin (docs/orders.md)."""
        return await self._actions.of(actor, order)

    async def view(self, actor: Actor, order: Order) -> dict[str, Any]:
        """The order object ``actor`` receives: ``order.to_public()`` with their ``actions``."""
        actions = await self._actions.of(actor, order)
        return {**order.to_public(), "actions": [a.to_public() for a in actions]}

    async def views(self, actor: Actor, orders: Iterable[Order]) -> list[dict[str, Any]]:
        return [await self.view(actor, order) for order in orders]

    async def buyer_view(self, order: Order) -> dict[str, Any]:
        """The order object its buyer receives (the ``order`` push), with the buyer's actions."""
        actions = await self._actions.for_buyer(order)
        return {**order.to_public(), "actions": [a.to_public() for a in actions]}
