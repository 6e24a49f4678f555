"""The figures anchors and admins watch: GMV, orders, buyers, conversion, repurchase rate."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Literal

from ._core import SYSTEM, OrderCore
from ._models import DAY_MS, Actor, AnalyticsReport, Figures, Order
from .exceptions import InvalidInput, NotAllowed

__all__ = ["DEFAULT_REPURCHASE_WINDOW_MS", "Analytics"]

DEFAULT_REPURCHASE_WINDOW_MS = 30 * DAY_MS


class Analytics:
    def __init__(self, core: OrderCore) -> None:
        self._core = core

    async def analytics(
        self,
        actor: Actor,
        *,
        viewers: Mapping[str, int],
        room_id: str | None = None,
        anchor_id: str | None = None,
        brand: str | None = None,
        window_ms: int = DEFAULT_REPURCHASE_WINDOW_MS,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> AnalyticsReport:
        """Figures per room, anchor and brand. Admins see everything; an anchor sees figures
        computed from their own orders only; everyone else is refused."""
        if actor.role == "anchor":
            if anchor_id is not None and anchor_id != actor.user_id:
                raise NotAllowed("see another anchor's figures")
            scope_anchor: str | None = actor.user_id
        elif actor.is_admin:
            scope_anchor = anchor_id
        else:
            raise NotAllowed("see analytics")
        if not isinstance(window_ms, int) or window_ms <= 0:
            raise InvalidInput("window_ms must be a positive integer")
        orders = [
            o for o in await self._core.store.orders_for_analytics(scope_anchor)
            if o.status != "cancelled"
            and o.placed_at is not None
            and (since_ms is None or o.placed_at >= since_ms)
            and (until_ms is None or o.placed_at < until_ms)
            and (room_id is None or o.room_id == room_id)
            and (brand is None or o.brand == brand)
        ]
        return AnalyticsReport(
            rooms=_figures("room", orders, lambda o: o.room_id, viewers, window_ms),
            anchors=_figures("anchor", orders, lambda o: o.anchor_id, viewers, window_ms),
            brands=_figures("brand", orders, lambda o: o.brand, viewers, window_ms),
        )

    async def room_figures(
        self, room_id: str, viewers: int | None,
        window_ms: int = DEFAULT_REPURCHASE_WINDOW_MS,
    ) -> Figures:
        """One room's live figures, for the edge to push to its anchor (``figures`` event)."""
        report = await self.analytics(
            SYSTEM, viewers={room_id: viewers} if viewers is not None else {},
            room_id=room_id, window_ms=window_ms,
        )
        if report.rooms:
            return report.rooms[0]
        return Figures("room", room_id, 0, 0, 0, 0, viewers, 0.0 if viewers else None, 0, None)


def _figures(
    scope: Literal["room", "anchor", "brand"],
    orders: list[Order],
    key_of: Callable[[Order], str],
    viewers: Mapping[str, int],
    window_ms: int,
) -> tuple[Figures, ...]:
    groups: dict[str, list[Order]] = defaultdict(list)
    for order in orders:
        groups[key_of(order)].append(order)
    out = []
    for key in sorted(groups):
        group = groups[key]
        gmv = sum(o.total_cents for o in group)
        by_buyer: dict[str, list[int]] = defaultdict(list)
        for o in group:
            assert o.placed_at is not None
            by_buyer[o.buyer_id].append(o.placed_at)
        repeat = sum(
            1
            for times in by_buyer.values()
            if _has_repeat(sorted(times), window_ms)
        )
        rooms = {o.room_id for o in group}
        room_viewers: int | None = (
            sum(viewers[r] for r in rooms) if all(r in viewers for r in rooms) else None
        )
        buyers = len(by_buyer)
        out.append(
            Figures(
                scope=scope,
                key=key,
                gmv_cents=gmv,
                orders=len(group),
                buyers=buyers,
                average_order_value_cents=gmv // len(group),
                viewers=room_viewers,
                conversion=buyers / room_viewers if room_viewers else None,
                repeat_buyers=repeat,
                repurchase_rate=repeat / buyers,
            )
        )
    return tuple(out)


def _has_repeat(times: list[int], window_ms: int) -> bool:
    """A later order within ``window_ms`` of an earlier one (times sorted)."""
    return any(later - earlier <= window_ms for earlier, later in itertools.pairwise(times))
