"""``serve --demo``: a demo anchor with a live room and three products a newcomer can click."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from .catalog import text_of
from .clock import now_ms
from .identity import Role, User
from .payload import Payload
from .settings import Settings

if TYPE_CHECKING:
    from inventory import Auction, Sale

    from .app import Services

__all__ = ["DEMO_ANCHOR", "DEMO_INSPECTOR", "seed_demo"]

DEMO_ANCHOR = User(id="u_demo_anchor", name="Demo Anchor", role=Role.ANCHOR)
DEMO_INSPECTOR = User(id="u_demo_inspector", name="Demo Inspector", role=Role.INSPECTOR)
DEMO_ADMIN = User(id="u_demo_admin", name="Demo Admin", role=Role.ADMIN)
DEMO_ROOM_KEY = "demo:room"
DEMO_PRODUCTS = (
    {"title": "Hetian jade bangle", "category": "jewelry", "brand": "Hetian Studio",
     "price_cents": 129_900},
    {"title": "iPhone 13 128 GB, second-hand", "category": "phone_used", "brand": "Apple",
     "price_cents": 249_900},
    {"title": "Lavender essential oil 30 ml", "category": "essential_oil", "brand": "Provence Co",
     "price_cents": 5_900},
)


async def _certify(services: Services, jewelry_id: str, phone_id: str) -> None:
    """The demo's trust badges: a vault appraisal, a phone inspection, an oil certification."""
    issue = services.certificates.issue
    inspector = (DEMO_INSPECTOR.id, DEMO_INSPECTOR.role.value)
    await issue(*inspector, "vault", product_id=jewelry_id, details={
        "material": "Hetian nephrite jade", "weight_mg": 48_200, "grade": "A (top white)",
        "appraiser": "Platform vault, Guangzhou desk 3",
        "photo_sha256": [hashlib.sha256(b"demo bangle front").hexdigest(),
                         hashlib.sha256(b"demo bangle side").hexdigest()]})
    await issue(*inspector, "inspection", product_id=phone_id, details={
        "model": "iPhone 13, 128 GB, midnight", "imei": "490154203237518",
        "battery_health_pct": 89, "screen_condition": "light_wear",
        "body_condition": "light_wear",
        "components": {"screen": "original", "battery": "original", "camera": "original",
                       "face_id": "original"},
        "tests": {"calls": "pass", "wifi": "pass", "camera": "pass", "face_id": "pass",
                  "speaker": "pass"},
        "buyback_price_cents": 180_000})
    now = now_ms()
    await issue(*inspector, "refund_no_return", anchor_id=DEMO_ANCHOR.id,
                category="essential_oil",
                details={"valid_from": now, "valid_until": now + 365 * 24 * 3600 * 1000})


DEMO_SALE = {"stock": 20, "price_cents": 99_900, "per_user_limit": 1, "starts_in_s": 30,
             "duration_s": 3600, "hold_s": 300}


async def _flash_sale(services: Services, room_id: str) -> Sale:
    """A flash sale of the pinned jade bangle with a short countdown, unless one is running."""
    for sale in await services.sales.room_sales(room_id, limit=1):
        if sale.status != "ended":
            return sale
    room = await services.catalog.get_room(room_id)
    assert room.pinned_product is not None
    return await services.sales.create(
        DEMO_ANCHOR, room_id, Payload({"product_id": room.pinned_product, **DEMO_SALE}))


DEMO_LUCKY = {"winners": 3, "draw_in_s": 1800,
              "condition": {"kind": "passphrase", "passphrase": "jade luck"}}


async def _lucky_bag(services: Services, room_id: str) -> str:
    """A lucky bag of the essential oil (passphrase "jade luck"), unless one is open."""
    state = await services.lucky.room_state(await services.catalog.get_room(room_id))
    if state["lucky"] is not None and state["lucky"]["status"] == "open":
        return str(state["lucky"]["id"])
    oil = next(p for p in await services.catalog.products_of(DEMO_ANCHOR.id)
               if p.category == "essential_oil")
    bag = await services.lucky.create(DEMO_ANCHOR, room_id,
                                      Payload({"product_id": oil.id, **DEMO_LUCKY}))
    return bag.id
DEMO_AUCTION = {"start_cents": 50_000, "duration_s": 600, "extend_s": 15, "hold_s": 300}


async def _auction(services: Services, room_id: str) -> Auction:
    """A ten-minute live auction of a product that is not the flash sale's, unless one runs."""
    for auction in await services.auction_desk.room_auctions(room_id, limit=1):
        if auction.state.status != "ended":
            return auction
    room = await services.catalog.get_room(room_id)
    lots = [p for p in await services.catalog.products_of(room.anchor_id)
            if p.id != room.pinned_product]
    return await services.auction_desk.create(
        DEMO_ANCHOR, room_id, Payload({"product_id": lots[0].id, **DEMO_AUCTION}))


# The demo's coupon drop: 5.00 off any order of 10.00 or more, 200 coupons, valid 2 hours.
DEMO_COUPONS = {"count": 200, "off_cents": 500, "min_spend_cents": 1_000, "valid_s": 7_200}


async def _coupon_drop(services: Services, room_id: str) -> str:
    """A drop of coupons a newcomer can grab and use on the flash sale, unless one is live."""
    state = await services.coupons.room_state(await services.catalog.get_room(room_id))
    if state["coupon"] is not None and state["coupon"]["status"] == "live":
        return str(state["coupon"]["id"])
    drop = await services.coupons.create(DEMO_ANCHOR, room_id, Payload(DEMO_COUPONS))
    return drop.id


async def seed_demo(services: Services, settings: Settings, say: Callable[[str], None]) -> str:
    """Create the demo room once (kept across restarts); print the URLs and tokens."""
    redis = services.redis
    existing = await redis.get(DEMO_ROOM_KEY)
    room_id = text_of(existing) if existing else None
    if room_id is not None:
        room = await services.catalog.get_room(room_id)
        if not room.live:
            room_id = None
    if room_id is None:
        room = await services.catalog.create_room(DEMO_ANCHOR, "Demo live sale: jade, phones, oils")
        products = [await services.catalog.create_product(DEMO_ANCHOR, Payload(spec))
                    for spec in DEMO_PRODUCTS]
        await services.catalog.pin(DEMO_ANCHOR, room.id, products[0].id)
        for product in products:
            await services.catalog.note_product_in_room(product.id, room.id)
        await _certify(services, products[0].id, products[1].id)
        await redis.set(DEMO_ROOM_KEY, room.id)
        await services.follows.room_opened(room)
        room_id = room.id
    sale = await _flash_sale(services, room_id)
    lucky = await _lucky_bag(services, room_id)
    auction = await _auction(services, room_id)
    drop = await _coupon_drop(services, room_id)
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    day = 24 * 3600
    tokens = {user.role.value: services.signer.issue(user, day)
              for user in (DEMO_ANCHOR, DEMO_INSPECTOR, DEMO_ADMIN)}
    say("")
    say(f"liveroom demo data is ready (tokens valid 24 h, issued at {now_ms()}):")
    say(f"  viewer room:    {base}/r/{room_id}  (flash sale {sale.id}: {sale.title}, "
        f"{sale.status}, opens {max(0, (sale.starts_at - now_ms()) // 1000)} s from now)")
    say(f"  lucky bag:      {lucky} (passphrase \"jade luck\", drawn 30 min after it opened)")
    say(f"  live auction:   {auction.title}, bid in the viewer room; it ends "
        f"{max(0, (auction.state.ends_at - now_ms()) // 1000)} s from now (start another "
        "in the studio)")
    say(f"  coupon drop:    {drop}: 5.00 off an order of 10.00 or more; grab one in the viewer "
        "room, it is applied at checkout (drop more in the studio)")
    say(f"  anchor studio:  {base}/studio/{room_id}#token={tokens['anchor']}")
    say(f"  inspector desk: {base}/inspect#token={tokens['inspector']}")
    say(f"  anchor token:    {tokens['anchor']}")
    say(f"  inspector token: {tokens['inspector']}")
    say(f"  admin token:     {tokens['admin']}")
    say("")
    return room_id
