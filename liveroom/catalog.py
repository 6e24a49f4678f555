"""Rooms and products, stored in Redis so every server process sees the same catalog."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from . import keys
from .exceptions import Forbidden, InvalidInput, RoomEnded, UnknownProduct, UnknownRoom
from .identity import Role, User
from .payload import Payload

__all__ = ["Catalog", "Product", "Room"]

TITLE_MAX = 120
BRAND_MAX = 60
CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_PRICE_CENTS = 100_000_000_00  # one hundred million in major units

# (product id, anchor id, category) of each product -> its badges by product id, read in one
# trip to the certificate store however many products are asked for.
BadgeSubject = tuple[str, str, str]
BadgeLookup = Callable[[Sequence[BadgeSubject]], Awaitable[dict[str, list[dict[str, Any]]]]]


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(8).replace("-", "x").replace("_", "y")[:10]


def text_of(value: object) -> str:
    """A Redis reply (bytes with the default client) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _s(raw: Mapping[Any, Any], key: str, default: str = "") -> str:
    value = raw.get(key.encode())
    return text_of(value) if value is not None else default


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    anchor_id: str
    title: str
    category: str
    brand: str
    price_cents: int
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "anchor_id": self.anchor_id,
            "title": self.title,
            "category": self.category,
            "brand": self.brand,
            "price_cents": self.price_cents,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Room:
    id: str
    title: str
    anchor_id: str
    anchor_name: str
    status: str  # live | ended
    created_at: int
    pinned_product: str | None
    slow_mode_s: int
    # Whether its broadcasts are recorded for the replay (liveroom/hls/).
    record: bool = True

    @property
    def live(self) -> bool:
        return self.status == "live"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "anchor": {"id": self.anchor_id, "name": self.anchor_name},
            "status": self.status,
            "created_at": self.created_at,
            "pinned_product": self.pinned_product,
            "slow_mode_s": self.slow_mode_s,
            "record": self.record,
        }


def parse_product_fields(payload: Payload) -> tuple[str, str, int, str]:
    title = payload.text("title", max_chars=TITLE_MAX)
    category = payload.text("category", max_chars=40).lower()
    if not CATEGORY_PATTERN.match(category):
        raise InvalidInput("category must be lowercase letters, digits and _ (e.g. jewelry)")
    price = payload.integer("price_cents", minimum=1, maximum=MAX_PRICE_CENTS)
    brand = payload.text("brand", max_chars=BRAND_MAX, required=False) or "unbranded"
    return title, category, price, brand


class Catalog:
    def __init__(self, redis: aioredis.Redis, now_ms: Callable[[], int],
                 badge_lookup: BadgeLookup | None = None) -> None:
        """``badge_lookup`` gives products their trust badges (the certificate store); without
        one, products show none."""
        self._redis = redis
        self._now_ms = now_ms
        self._badge_lookup = badge_lookup

    # rooms -----------------------------------------------------------------------------------

    async def create_room(self, anchor: User, title: str, record: bool = True) -> Room:
        if anchor.role not in (Role.ANCHOR, Role.ADMIN):
            raise Forbidden("only anchors can create rooms")
        room = Room(
            id=_new_id("r_"), title=title, anchor_id=anchor.id, anchor_name=anchor.name,
            status="live", created_at=self._now_ms(), pinned_product=None, slow_mode_s=0,
            record=record,
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.room_meta(room.id), mapping={
                "id": room.id, "title": room.title, "anchor_id": room.anchor_id,
                "anchor_name": room.anchor_name, "status": room.status,
                "created_at": room.created_at, "pinned_product": "", "slow_mode_s": 0,
                "record": int(room.record),
            })
            pipe.zadd(keys.LIVE_ROOMS, {room.id: room.created_at})
            self._register_anchor(pipe, anchor, room.created_at)
            await pipe.execute()
        return room

    async def get_room(self, room_id: str) -> Room:
        raw = await self._redis.hgetall(keys.room_meta(room_id))
        if not raw:
            raise UnknownRoom(room_id)
        return Room(
            id=_s(raw, "id"), title=_s(raw, "title"), anchor_id=_s(raw, "anchor_id"),
            anchor_name=_s(raw, "anchor_name"), status=_s(raw, "status"),
            created_at=int(_s(raw, "created_at", "0")),
            pinned_product=_s(raw, "pinned_product") or None,
            slow_mode_s=int(_s(raw, "slow_mode_s", "0")),
            record=_s(raw, "record", "1") != "0",
        )

    async def live_rooms(self, limit: int = 100) -> list[Room]:
        ids = await self._redis.zrevrange(keys.LIVE_ROOMS, 0, limit - 1)
        rooms = []
        for raw_id in ids:
            try:
                rooms.append(await self.get_room(text_of(raw_id)))
            except UnknownRoom:
                continue
        return [room for room in rooms if room.live]

    async def owned_room(self, user: User, room_id: str, *, must_be_live: bool = True) -> Room:
        """The room, if ``user`` may act on it as its anchor (or is an admin)."""
        room = await self.get_room(room_id)
        if room.anchor_id != user.id and not user.is_admin:
            raise Forbidden("only this room's anchor can do that")
        if must_be_live and not room.live:
            raise RoomEnded(room_id)
        return room

    async def end_room(self, user: User, room_id: str) -> Room:
        room = await self.owned_room(user, room_id, must_be_live=False)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.room_meta(room_id), "status", "ended")
            pipe.zrem(keys.LIVE_ROOMS, room_id)
            await pipe.execute()
        return await self.get_room(room.id)

    async def set_slow_mode(self, room_id: str, seconds: int) -> None:
        await self._redis.hset(keys.room_meta(room_id), "slow_mode_s", seconds)

    async def pin(self, user: User, room_id: str, product_id: str) -> tuple[Room, Product]:
        room = await self.owned_room(user, room_id)
        product = await self.get_product(product_id)
        if product.anchor_id != room.anchor_id:
            raise Forbidden("an anchor can pin only their own products")
        pin = orjson.dumps({"product": product_id, "at": self._now_ms()})
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.room_meta(room_id), "pinned_product", product_id)
            pipe.sadd(keys.product_rooms(product_id), room_id)
            pipe.rpush(keys.room_pins(room_id), pin)
            pipe.ltrim(keys.room_pins(room_id), -keys.ROOM_PINS_KEPT, -1)
            await pipe.execute()
        return await self.get_room(room_id), product

    async def pins(self, room_id: str) -> list[tuple[str, int]]:
        """The room's pins in order: (product id, when in ms)."""
        found = []
        for raw in await self._redis.lrange(keys.room_pins(room_id), 0, -1):
            try:
                pin = orjson.loads(raw)
                found.append((str(pin["product"]), int(pin["at"])))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
        return found

    async def rooms_showing(self, product_id: str) -> list[str]:
        members = await self._redis.smembers(keys.product_rooms(product_id))
        return sorted(text_of(m) for m in members)

    async def note_product_in_room(self, product_id: str, room_id: str) -> None:
        await self._redis.sadd(keys.product_rooms(product_id), room_id)

    # products --------------------------------------------------------------------------------

    async def create_product(self, anchor: User, payload: Payload) -> Product:
        if anchor.role not in (Role.ANCHOR, Role.ADMIN):
            raise Forbidden("only anchors can create products")
        title, category, price, brand = parse_product_fields(payload)
        product = Product(
            id=_new_id("p_"), anchor_id=anchor.id, title=title, category=category,
            brand=brand, price_cents=price, created_at=self._now_ms(),
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            fields: Mapping[Any, Any] = product.public()
            pipe.hset(keys.product(product.id), mapping=fields)
            pipe.zadd(keys.anchor_products(anchor.id), {product.id: product.created_at})
            self._register_anchor(pipe, anchor, product.created_at)
            await pipe.execute()
        return product

    async def get_product(self, product_id: str) -> Product:
        raw = await self._redis.hgetall(keys.product(product_id))
        if not raw:
            raise UnknownProduct(product_id)
        return Product(
            id=_s(raw, "id"), anchor_id=_s(raw, "anchor_id"), title=_s(raw, "title"),
            category=_s(raw, "category"), brand=_s(raw, "brand"),
            price_cents=int(_s(raw, "price_cents", "0")),
            created_at=int(_s(raw, "created_at", "0")),
        )

    # anchors ---------------------------------------------------------------------------------

    @staticmethod
    def _register_anchor(pipe: aioredis.client.Pipeline, anchor: User, now: int) -> None:
        profile = keys.anchor_profile(anchor.id)
        pipe.hset(profile, mapping={"id": anchor.id, "name": anchor.name})
        pipe.hsetnx(profile, "since", now)

    async def anchor_known(self, anchor_id: str) -> bool:
        """Whether ``anchor_id`` is an anchor that exists: an account that created a room or a
        product (an anchor, or an admin hosting a room). Tokens alone do not make one: anyone
        holding the signing secret can mint an anchor token for any id."""
        if not isinstance(anchor_id, str) or not anchor_id:
            return False
        if await self._redis.exists(keys.anchor_profile(anchor_id)):
            return True
        # Anchors whose products predate the registry are known by their product list.
        return bool(await self._redis.exists(keys.anchor_products(anchor_id)))

    async def anchor_name(self, anchor_id: str) -> str | None:
        """The display name the anchor last created a room or product under, if known."""
        name = await self._redis.hget(keys.anchor_profile(anchor_id), "name")
        return None if name is None else text_of(name)

    async def products_of(self, anchor_id: str) -> list[Product]:
        ids = await self._redis.zrange(keys.anchor_products(anchor_id), 0, -1)
        return [await self.get_product(text_of(raw)) for raw in ids]

    async def product_view(self, product: Product) -> dict[str, Any]:
        """Product data as clients see it: with its live trust badges."""
        view = product.public()
        view["badges"] = await self.badges(product)
        return view

    async def badges(self, product: Product) -> list[dict[str, Any]]:
        """The product's trust badges as they are now (the ``badges`` list of every view)."""
        found = await self.badges_of([(product.id, product.anchor_id, product.category)])
        return found.get(product.id, [])

    async def badges_of(self, subjects: Sequence[BadgeSubject]) -> dict[str, list[dict[str, Any]]]:
        """``badges`` of many products at once, by product id."""
        if self._badge_lookup is None or not subjects:
            return {}
        return await self._badge_lookup(subjects)
