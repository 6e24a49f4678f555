from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from orders import DAY_MS, Actor, Figures

from .conftest import ADMIN, DECLINED_CARD, GOOD_CARD, World, online

ANCHOR_1 = Actor("u_anchor00001", "anchor")
ANCHOR_2 = Actor("u_anchor00002", "anchor")
ROOMS = {"r_roomAAAAAA": ANCHOR_1, "r_roomBBBBBB": ANCHOR_2}
VIEWERS = {"r_roomAAAAAA": 10, "r_roomBBBBBB": 4}
WINDOW = 30 * DAY_MS


@dataclass
class Row:
    room: str
    anchor: str
    brand: str
    buyer: str
    total: int
    placed_at: int
    counts: bool


async def _dataset(world: World) -> list[Row]:
    """(day, room, brand, buyer, unit price, qty, what happens) — placed orders count, even if
    later returned; cancelled and never-paid ones do not."""
    plan = [
        (0, "r_roomAAAAAA", "Acme", "u_buyer000001", 10_000, 1, "cod"),
        (1, "r_roomAAAAAA", "Zen", "u_buyer000001", 2_550, 2, "online"),
        (0, "r_roomAAAAAA", "Acme", "u_buyer000002", 7_777, 1, "cod"),
        (40, "r_roomAAAAAA", "Acme", "u_buyer000002", 1_234, 3, "cod"),
        (2, "r_roomAAAAAA", "Acme", "u_buyer000003", 50_000, 1, "returned"),
        (3, "r_roomBBBBBB", "Acme", "u_buyer000003", 9_999, 1, "cod"),
        (3, "r_roomBBBBBB", "Acme", "u_buyer000004", 60_000, 1, "cancelled"),
        (4, "r_roomBBBBBB", "Zen", "u_buyer000004", 45_000, 1, "declined"),
        (5, "r_roomBBBBBB", "Zen", "u_buyer000005", 3_000, 1, "online"),
    ]
    start = world.clock()
    rows = []
    for day, room, brand, buyer_id, price, qty, fate in sorted(plan):
        world.clock.now = start + day * DAY_MS
        anchor = ROOMS[room]
        buyer = Actor(buyer_id, "viewer")
        held = world.ledger.hold(buyer_id, room=room, anchor=anchor.user_id, brand=brand,
                                 price_cents=price, qty=qty, sale=f"s_{room[2:]}")
        payment = online(GOOD_CARD) if fate == "online" else "cod"
        if fate == "declined":
            payment = online(DECLINED_CARD)
        order = await world.checkout(buyer, held, payment)
        await world.payments.drain()
        if fate == "cancelled":
            await world.service.cancel(buyer, order.id)
        if fate == "returned":
            await world.service.ship(anchor, order.id)
            await world.service.deliver(anchor, order.id)
            await world.service.request_return(buyer, order.id)
            await world.service.receive_return(anchor, order.id)
        rows.append(Row(room, anchor.user_id, brand, buyer_id, price * qty, world.clock(),
                        fate not in ("cancelled", "declined")))
    return rows


def _expected(rows: list[Row], key: str) -> dict[str, dict[str, object]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        if row.counts:
            groups[getattr(row, key)].append(row)
    out: dict[str, dict[str, object]] = {}
    for name, group in groups.items():
        buyers = {r.buyer for r in group}
        repeaters = set()
        for buyer in buyers:
            times = sorted(r.placed_at for r in group if r.buyer == buyer)
            if any(times[i + 1] - times[i] <= WINDOW for i in range(len(times) - 1)):
                repeaters.add(buyer)
        gmv = sum(r.total for r in group)
        viewers = sum(VIEWERS[room] for room in {r.room for r in group})
        out[name] = {
            "gmv_cents": gmv,
            "orders": len(group),
            "buyers": len(buyers),
            "average_order_value_cents": gmv // len(group),
            "viewers": viewers,
            "conversion": len(buyers) / viewers,
            "repeat_buyers": len(repeaters),
            "repurchase_rate": len(repeaters) / len(buyers),
            # No coupon in this data set (tests/orders/test_coupons.py has the coupon cost).
            "coupon_cost_cents": 0,
        }
    return out


def _actual(figures: tuple[Figures, ...]) -> dict[str, dict[str, object]]:
    out = {}
    for f in figures:
        public = f.to_public()
        key = public.pop("key")
        out[key] = {k: v for k, v in public.items() if k != "scope"}
    return out


async def test_figures_per_room_anchor_and_brand(world: World) -> None:
    rows = await _dataset(world)
    report = await world.service.analytics(ADMIN, viewers=VIEWERS, window_ms=WINDOW)
    assert _actual(report.rooms) == _expected(rows, "room")
    assert _actual(report.anchors) == _expected(rows, "anchor")
    assert _actual(report.brands) == _expected(rows, "brand")
    # Sanity of the hand-made data: both kinds of exclusions and a repeat buyer are present.
    assert any(not r.counts for r in rows)
    assert any(f.repeat_buyers for f in report.rooms)
    assert _actual(report.rooms)["r_roomAAAAAA"]["gmv_cents"] == sum(
        r.total for r in rows if r.room == "r_roomAAAAAA"
    )


async def test_anchor_sees_only_their_own_figures(world: World) -> None:
    rows = await _dataset(world)
    mine = [r for r in rows if r.anchor == ANCHOR_2.user_id]
    report = await world.service.analytics(ANCHOR_2, viewers=VIEWERS, window_ms=WINDOW)
    assert _actual(report.rooms) == _expected(mine, "room")
    assert _actual(report.brands) == _expected(mine, "brand")
    assert [f.key for f in report.anchors] == [ANCHOR_2.user_id]


async def test_filters_and_unknown_viewers(world: World) -> None:
    rows = await _dataset(world)
    report = await world.service.analytics(ADMIN, viewers={}, brand="Zen", window_ms=WINDOW)
    zen = [r for r in rows if r.brand == "Zen" and r.counts]
    assert [f.key for f in report.brands] == ["Zen"]
    assert report.brands[0].gmv_cents == sum(r.total for r in zen)
    assert report.brands[0].conversion is None  # no viewer counts given
    first_week = await world.service.analytics(
        ADMIN, viewers=VIEWERS, since_ms=rows[0].placed_at, until_ms=rows[0].placed_at + 7 * DAY_MS
    )
    assert sum(f.orders for f in first_week.rooms) == sum(
        1 for r in rows if r.counts and r.placed_at < rows[0].placed_at + 7 * DAY_MS
    )


async def test_room_figures_and_change_notifications(world: World) -> None:
    rows = await _dataset(world)
    room = "r_roomBBBBBB"
    figures = await world.service.room_figures(room, VIEWERS[room], window_ms=WINDOW)
    assert figures.to_public() == {"scope": "room", "key": room,
                                   **_expected(rows, "room")[room]}
    empty = await world.service.room_figures("r_nobodyhere", 3)
    assert (empty.gmv_cents, empty.orders, empty.conversion) == (0, 0, 0.0)
    # Every placed order and the cancellation of a placed order told the edge to push figures.
    placed = sum(1 for r in rows if r.counts) + 1  # + the cancelled one when it was placed
    cancelled = 1
    assert len(world.figure_changes) == placed + cancelled
    assert set(world.figure_changes) == {(r, a.user_id) for r, a in ROOMS.items()}
