"""The figures anchors and admins watch: GMV, orders, buyers, conversion, repurchase rate.

The sums are the database's (``OrderStore.figures``: indexed, one query per grouping), so their
cost follows the orders of the room or anchor asked about, not the whole order history."""

from __future__ import annotations

from collections.abc import Mapping

from ._core import OrderCore
from ._models import DAY_MS, Actor, AnalyticsReport, Figures
from ._store import FigureQuery, FigureRow, FigureScope
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
        def query(group: FigureScope) -> FigureQuery:
            return FigureQuery(group, window_ms, room_id=room_id, anchor_id=scope_anchor,
                               brand=brand, since_ms=since_ms, until_ms=until_ms)

        store = self._core.store
        return AnalyticsReport(
            rooms=_figures("room", await store.figures(query("room")), viewers),
            anchors=_figures("anchor", await store.figures(query("anchor")), viewers),
            brands=_figures("brand", await store.figures(query("brand")), viewers),
        )

    async def room_figures(
        self, room_id: str, viewers: int | None,
        window_ms: int = DEFAULT_REPURCHASE_WINDOW_MS,
    ) -> Figures:
        """One room's live figures, for the edge to push to its anchor (``figures`` event)."""
        if not isinstance(window_ms, int) or window_ms <= 0:
            raise InvalidInput("window_ms must be a positive integer")
        rows = await self._core.store.figures(FigureQuery("room", window_ms, room_id=room_id))
        found = _figures("room", rows, {room_id: viewers} if viewers is not None else {})
        if found:
            return found[0]
        return Figures("room", room_id, 0, 0, 0, 0, viewers, 0.0 if viewers else None, 0, None)


def _figures(
    scope: FigureScope, rows: list[FigureRow], viewers: Mapping[str, int]
) -> tuple[Figures, ...]:
    out = []
    for row in rows:
        room_viewers: int | None = (
            sum(viewers[r] for r in row.rooms) if all(r in viewers for r in row.rooms)
            else None
        )
        out.append(
            Figures(
                scope=scope,
                key=row.key,
                gmv_cents=row.gmv_cents,
                orders=row.orders,
                buyers=row.buyers,
                average_order_value_cents=row.gmv_cents // row.orders,
                viewers=room_viewers,
                conversion=row.buyers / room_viewers if room_viewers else None,
                repeat_buyers=row.repeat_buyers,
                repurchase_rate=row.repeat_buyers / row.buyers,
                coupon_cost_cents=row.coupon_cost_cents,
            )
        )
    return tuple(out)
