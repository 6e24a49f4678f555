"""What the caller may do to an order now, and until when: the ``actions`` of the order object,
so no page copies a rule.

Each action is offered when the check its request runs (``check_*`` of the parts) passes on the
order as it is now, so the list and the requests cannot disagree; ``until`` is the last
millisecond the check passes by the clock (a window from delivery, the warranty end, the
payment deadline), None when no clock closes it. A certification is asked as of the listing: if
it lapses before the request, the request is refused with ``certification_required``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._aftersales import AfterSales
from ._core import OrderCore
from ._lifecycle import Lifecycle
from ._models import Actor, Order
from ._payments import Payments
from .exceptions import OrderError

__all__ = ["Action", "ActionName", "OrderActions"]

ActionName = Literal[
    # the buyer's
    "pay", "cancel", "complete", "return", "refund_no_return", "counterfeit", "warranty",
    "buyback",
    # the seller's (the order's anchor, an admin), with "cancel"
    "ship", "deliver", "return_received",
]


@dataclass(frozen=True, slots=True)
class Action:
    """One action the caller may take now: ``until`` is the last epoch millisecond it is
    allowed (None: no clock closes it); ``extra`` what a page shows with it (a counterfeit
    claim's ``compensation_cents``)."""

    name: ActionName
    until: int | None = None
    extra: Mapping[str, int] = field(default_factory=dict)

    def to_public(self) -> dict[str, Any]:
        return {"name": self.name, "until": self.until, **self.extra}


Check = Callable[[], Awaitable[int | None] | int | None]


class OrderActions:
    def __init__(self, core: OrderCore, payments: Payments, lifecycle: Lifecycle,
                 after_sales: AfterSales) -> None:
        self._core = core
        self._payments = payments
        self._lifecycle = lifecycle
        self._after_sales = after_sales

    async def of(self, actor: Actor, order: Order) -> list[Action]:
        """The buyer's actions if ``actor`` is the order's buyer; else the seller's if they are
        its anchor or an admin; else none."""
        if actor.user_id == order.buyer_id:
            return await self.for_buyer(order)
        if actor.is_admin or actor.user_id == order.anchor_id:
            return await self.for_seller(order)
        return []

    async def for_buyer(self, order: Order) -> list[Action]:
        now = self._core.now_ms()
        after_sales = self._after_sales
        offered = [
            await _offer("pay", lambda: self._payments.check_pay(order, now)),
            await _offer("cancel", lambda: self._lifecycle.check_cancel(order)),
            await _offer("complete", lambda: self._lifecycle.check_complete(order)),
            await _offer("return", lambda: after_sales.check_return(order, now)),
            await _offer("refund_no_return",
                         lambda: after_sales.check_refund_no_return(order, now)),
        ]
        counterfeit = await _offer("counterfeit",
                                   lambda: after_sales.check_counterfeit(order, now),
                                   compensation_cents=after_sales.compensation_cents(order))
        if counterfeit is not None and not await after_sales.counterfeit_claim_filed(order):
            offered.append(counterfeit)
        offered += [
            await _offer("warranty", lambda: after_sales.check_warranty(order, now)),
            await _offer("buyback", lambda: after_sales.check_buyback(order)),
        ]
        return [action for action in offered if action is not None]

    async def for_seller(self, order: Order) -> list[Action]:
        offered = [
            await _offer("ship", lambda: self._lifecycle.check_ship(order)),
            await _offer("deliver", lambda: self._lifecycle.check_deliver(order)),
            await _offer("return_received",
                         lambda: self._after_sales.check_receive_return(order)),
            await _offer("cancel", lambda: self._lifecycle.check_cancel(order)),
        ]
        return [action for action in offered if action is not None]


async def _offer(name: ActionName, check: Check, **extra: int) -> Action | None:
    """``name`` until what ``check`` answers, or None if it refuses."""
    try:
        answer = check()
        until = await answer if isinstance(answer, Awaitable) else answer
    except OrderError:
        return None
    return Action(name, until, extra)
