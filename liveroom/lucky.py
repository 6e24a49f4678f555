"""Lucky bags (福袋): a room's anchor gives a product away, drawn among the viewers who entered,
by a draw anyone can recompute (docs/verification.md, "Lucky draws").

At announcement the server picks a random seed and publishes a commitment: SHA-256 of the seed,
in a statement signed with the platform's Ed25519 key (the certificates' key) together with the
draw's rules. Entries are taken until the draw time, once per account (Lua: the window check
and the entry are one step). At the draw time the first process to close the bag (Lua, once
among every process) draws the winners with ``liveroom.draw.draw_winners`` from the seed and
the sorted entries, publishes seed, entries and winners in a second signed statement, and gives
each winner a hold of the prize at 0 cents in a free sale of its own: the winner checks it out
like any flash-sale hold (``checkout``). The draw is a pure function of what is stored, and
Ed25519 signatures are deterministic, so a process finishing a draw that another process
closed and crashed on publishes the very same statement.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis

from inventory import InventoryService, SaleSpec

from . import keys
from .catalog import Catalog, Room, text_of
from .draw import SEED_BYTES, commitment_of, draw_winners, entries_sha256, sorted_entries
from .exceptions import (
    Banned,
    Forbidden,
    InvalidInput,
    LiveroomError,
    NotFound,
    VerificationRequired,
)
from .follows import FollowService
from .identity import User
from .loops import PeriodicLoop
from .payload import ID_PATTERN, Payload
from .rooms import bans_in_force, is_guest
from .watch import WatchTime

__all__ = [
    "COMMITMENT_FORMAT",
    "DRAW_FORMAT",
    "AlreadyEntered",
    "LuckyBag",
    "LuckyClosed",
    "LuckyDesk",
    "LuckyLoop",
    "NotFollower",
    "NotWatchedEnough",
    "UnknownLuckyBag",
    "WrongPassphrase",
]

log = logging.getLogger("liveroom.lucky")
Emit = Callable[[str, Any, str], Awaitable[None]]
Sign = Callable[[dict[str, Any]], dict[str, Any]]

COMMITMENT_FORMAT = "liveroom.lucky.commitment.v1"
DRAW_FORMAT = "liveroom.lucky.draw.v1"
CONDITION_KINDS = ("passphrase", "watched", "follower")
MIN_DRAW_IN_S, MAX_DRAW_IN_S = 60, 1800
MAX_WINNERS = 1000
MAX_UNITS_EACH = 100
MAX_WATCH_MINUTES = 240
MAX_PASSPHRASE = 64
# A winner has this long to check the prize out (give an address) before it goes back.
PRIZE_HOLD_MS = 24 * 3600 * 1000
# The prize sale outlives its holds by this much; it is ended as soon as the holds are made.
_PRIZE_SALE_MARGIN_MS = 60_000


class UnknownLuckyBag(NotFound):
    code = "unknown_lucky_bag"

    def __init__(self, bag_id: str) -> None:
        super().__init__(f"no lucky bag {bag_id[:64]!r}")
        self.bag_id = bag_id


class AlreadyEntered(LiveroomError):
    code = "already_entered"
    http_status = 409

    def __init__(self, bag_id: str, entries: int) -> None:
        super().__init__("you have already entered this lucky bag")
        self.bag_id = bag_id
        self.entries = entries


class LuckyClosed(LiveroomError):
    code = "lucky_closed"
    http_status = 409

    def __init__(self, bag_id: str) -> None:
        super().__init__("this lucky bag takes no more entries: its draw time has come")
        self.bag_id = bag_id


class WrongPassphrase(Forbidden):
    code = "wrong_passphrase"

    def __init__(self, bag_id: str) -> None:
        super().__init__("that is not this lucky bag's passphrase")
        self.bag_id = bag_id


class NotFollower(Forbidden):
    code = "not_follower"

    def __init__(self, anchor_id: str) -> None:
        super().__init__("only followers of the anchor can enter this lucky bag: follow first")
        self.anchor_id = anchor_id


class NotWatchedEnough(Forbidden):
    code = "not_watched_enough"

    def __init__(self, watched_ms: int, needed_ms: int) -> None:
        super().__init__(f"watch the room for {needed_ms // 60_000} minutes to enter (you have "
                         f"watched {watched_ms // 60_000} min {watched_ms // 1000 % 60} s)")
        self.watched_ms = watched_ms
        self.needed_ms = needed_ms


def _normal_passphrase(text: str) -> str:
    """Passphrases match whatever the case and the spacing (typed on phones, in a hurry)."""
    return " ".join(text.split()).casefold()


def _condition(payload: Payload) -> dict[str, Any]:
    raw = payload.raw("condition")
    if not isinstance(raw, dict):
        raise InvalidInput("condition must be an object: {\"kind\": \"passphrase\"|\"watched\"|"
                           "\"follower\", ...}")
    spec = Payload(raw)
    kind = spec.raw("kind")
    if kind not in CONDITION_KINDS:
        raise InvalidInput("condition.kind must be passphrase, watched or follower")
    if kind == "passphrase":
        text = spec.text("passphrase", max_chars=MAX_PASSPHRASE)
        return {"kind": kind, "passphrase": text}
    if kind == "watched":
        return {"kind": kind, "minutes": spec.integer("minutes", minimum=1,
                                                      maximum=MAX_WATCH_MINUTES)}
    return {"kind": kind}


@dataclass(frozen=True, slots=True)
class LuckyBag:
    id: str
    room_id: str
    anchor_id: str
    product_id: str
    title: str
    winners: int
    units_each: int
    condition: dict[str, Any]
    status: str  # open | drawing | drawn
    announced_at: int
    draw_at: int
    seed: bytes
    commitment: dict[str, Any]
    draw: dict[str, Any] | None
    prize_sale: str | None
    # winner id -> their prize hold: {"id", "qty", "price_cents", "expires_at"}
    prizes: dict[str, dict[str, Any]]

    @property
    def public_condition(self) -> dict[str, Any]:
        """The condition as published: a passphrase is said in the stream, not given away."""
        return {k: v for k, v in self.condition.items() if k != "passphrase"}


class LuckyDesk:
    """Lucky bags: announcing, entering, drawing (once, on any process), and their pushes."""

    def __init__(self, redis: aioredis.Redis, catalog: Catalog,
                 follows: FollowService, watch: WatchTime, inventory: InventoryService,
                 sign: Sign, now_ms: Callable[[], int], emit: Emit) -> None:
        self._redis = redis
        self._catalog = catalog
        self._follows = follows
        self._watch = watch
        self._inventory = inventory
        self._sign = sign
        self._now_ms = now_ms
        self._emit = emit
        self._dirty: set[str] = set()
        lua = resources.files("liveroom").joinpath("lua")
        self._enter = redis.register_script(lua.joinpath("lucky_enter.lua").read_text("utf-8"))
        self._close = redis.register_script(lua.joinpath("lucky_close.lua").read_text("utf-8"))

    # announcing ------------------------------------------------------------------------------

    async def create(self, anchor: User, room_id: str, payload: Payload) -> LuckyBag:
        product_id = payload.ident("product_id")
        winners = payload.integer("winners", minimum=1, maximum=MAX_WINNERS)
        units_each = payload.integer("units_each", minimum=1, maximum=MAX_UNITS_EACH,
                                     required=False, default=1)
        draw_in_s = payload.integer("draw_in_s", minimum=MIN_DRAW_IN_S, maximum=MAX_DRAW_IN_S)
        condition = _condition(payload)
        room = await self._catalog.owned_room(anchor, room_id)
        product = await self._catalog.get_product(product_id)
        if product.anchor_id != room.anchor_id:
            raise Forbidden("a lucky bag can only give away the anchor's own product")
        now = self._now_ms()
        bag_id = "lb_" + secrets.token_urlsafe(9)[:12]
        seed = secrets.token_bytes(SEED_BYTES)
        public_condition = {k: v for k, v in condition.items() if k != "passphrase"}
        commitment = self._sign({
            "format": COMMITMENT_FORMAT, "lucky_bag": bag_id, "room": room.id,
            "anchor": room.anchor_id, "product": product.id, "title": product.title,
            "winners": winners, "units_each": units_each, "condition": public_condition,
            "announced_at": now, "draw_at": now + draw_in_s * 1000,
            "seed_sha256": commitment_of(seed),
        })
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.lucky_bag(bag_id), mapping={
                "id": bag_id, "room": room.id, "anchor": room.anchor_id, "product": product.id,
                "title": product.title, "winners": winners, "units_each": units_each,
                "condition": orjson.dumps(condition), "status": "open", "announced_at": now,
                "draw_at": commitment["draw_at"], "seed": seed.hex(),
                "commitment": orjson.dumps(commitment),
            })
            pipe.zadd(keys.room_lucky_bags(room.id), {bag_id: now})
            pipe.zadd(keys.LUCKY_DUE, {bag_id: commitment["draw_at"]})
            await pipe.execute()
        bag = await self.get(bag_id)
        await self._push(bag, force=True)
        return bag

    async def get(self, bag_id: str) -> LuckyBag:
        if not isinstance(bag_id, str) or not ID_PATTERN.match(bag_id):
            raise UnknownLuckyBag(str(bag_id))
        raw = await self._redis.hgetall(keys.lucky_bag(bag_id))
        if not raw:
            raise UnknownLuckyBag(bag_id)
        m = {text_of(k): text_of(v) for k, v in raw.items()}
        return LuckyBag(
            id=m["id"], room_id=m["room"], anchor_id=m["anchor"], product_id=m["product"],
            title=m["title"], winners=int(m["winners"]), units_each=int(m["units_each"]),
            condition=orjson.loads(m["condition"]), status=m["status"],
            announced_at=int(m["announced_at"]), draw_at=int(m["draw_at"]),
            seed=bytes.fromhex(m["seed"]), commitment=orjson.loads(m["commitment"]),
            draw=orjson.loads(m["draw"]) if m.get("draw") else None,
            prize_sale=m.get("prize_sale") or None,
            prizes=orjson.loads(m["prizes"]) if m.get("prizes") else {},
        )

    async def entries_count(self, bag_id: str) -> int:
        return int(await self._redis.hlen(keys.lucky_entries(bag_id)))

    async def view(self, bag: LuckyBag, *, full: bool = False,
                   viewer: User | None = None) -> dict[str, Any]:
        """The bag as clients see it. ``full`` adds the signed draw statement with every entry
        (``GET``; pushes carry the winners, the seed and the entries' digest only)."""
        view: dict[str, Any] = {
            "id": bag.id, "room": bag.room_id, "anchor": bag.anchor_id,
            "product": bag.product_id, "title": bag.title, "winners_count": bag.winners,
            "units_each": bag.units_each, "condition": bag.public_condition,
            "status": bag.status, "entries": await self.entries_count(bag.id),
            "announced_at": bag.announced_at, "draw_at": bag.draw_at,
            "commitment": bag.commitment, "seed": None, "entries_sha256": None,
            "winners": None, "server_time": self._now_ms(),
        }
        if bag.draw is not None:
            names = await self._names(bag.id, bag.draw["winners"])
            view.update(seed=bag.draw["seed"], entries_sha256=bag.draw["entries_sha256"],
                        winners=[{"id": w, "name": names.get(w, "")}
                                 for w in bag.draw["winners"]])
            if full:
                view["draw"] = bag.draw
        elif full:
            view["draw"] = None
        if viewer is not None:
            entered = await self._redis.hexists(keys.lucky_entries(bag.id), viewer.id)
            prize = bag.prizes.get(viewer.id)
            view["you"] = {"entered": bool(entered), "won": prize is not None,
                           "reservation": None if prize is None else prize["id"],
                           "prize": prize}
        return view

    async def _names(self, bag_id: str, users: list[str]) -> dict[str, str]:
        if not users:
            return {}
        names = await self._redis.hmget(keys.lucky_entries(bag_id), users)
        return {user: text_of(name) for user, name in zip(users, names, strict=True)
                if name is not None}

    async def room_state(self, room: Room) -> dict[str, Any]:
        """The ``lucky`` field of the room state: the room's newest lucky bag."""
        newest = await self._redis.zrevrange(keys.room_lucky_bags(room.id), 0, 0)
        if not newest:
            return {"lucky": None}
        try:
            return {"lucky": await self.view(await self.get(text_of(newest[0])))}
        except UnknownLuckyBag:
            return {"lucky": None}

    # entering --------------------------------------------------------------------------------

    async def enter(self, user: User, bag_id: str, passphrase: str | None) -> int:
        """Enter ``user`` once; the number of entries. Refused (and nothing changes) for a
        guest, the anchor, a banned user, a second entry, after the draw time, or when the
        condition is not met."""
        bag = await self.get(bag_id)
        if is_guest(user):
            # A guest session costs nothing to make; an account is one person (and a winner
            # checks out with it).
            raise VerificationRequired("enter a lucky bag")
        if user.id == bag.anchor_id:
            raise Forbidden("the anchor cannot enter their own lucky bag")
        if not ID_PATTERN.match(user.id):
            raise InvalidInput("this account's id cannot enter a draw")
        if bag.status != "open" or self._now_ms() >= bag.draw_at:
            raise LuckyClosed(bag.id)
        # Accounts only (no guests), so the room's bans of users are the ones that apply.
        if user.id in await bans_in_force(self._redis, bag.room_id, self._now_ms()):
            raise Banned(bag.room_id)
        if await self._redis.hexists(keys.lucky_entries(bag.id), user.id):
            raise AlreadyEntered(bag.id, await self.entries_count(bag.id))
        await self._check_condition(bag, user, passphrase)
        outcome, count = await self._enter(
            keys=[keys.lucky_bag(bag.id), keys.lucky_entries(bag.id)],
            args=[self._now_ms(), user.id, user.name])
        outcome = text_of(outcome)
        if outcome == "closed":
            raise LuckyClosed(bag.id)
        if outcome == "already_entered":
            raise AlreadyEntered(bag.id, int(count))
        if outcome == "unknown":
            raise UnknownLuckyBag(bag.id)
        self._dirty.add(bag.id)
        return int(count)

    async def _check_condition(self, bag: LuckyBag, user: User, passphrase: str | None) -> None:
        kind = bag.condition["kind"]
        if kind == "passphrase":
            said = passphrase or ""
            if _normal_passphrase(said) != _normal_passphrase(bag.condition["passphrase"]):
                raise WrongPassphrase(bag.id)
        elif kind == "follower":
            if not await self._follows.is_following(user.id, bag.anchor_id):
                raise NotFollower(bag.anchor_id)
        elif kind == "watched":
            needed = int(bag.condition["minutes"]) * 60_000
            watched = await self._watch.watched_ms(bag.room_id, user.id)
            if watched < needed:
                raise NotWatchedEnough(watched, needed)

    # drawing ---------------------------------------------------------------------------------

    async def finish_due(self) -> list[str]:
        """Draw every bag whose time has come; the ids this call finished."""
        due = await self._redis.zrangebyscore(keys.LUCKY_DUE, "-inf", self._now_ms(),
                                              start=0, num=50)
        finished = []
        for raw in due:
            bag_id = text_of(raw)
            try:
                if await self.finish(bag_id):
                    finished.append(bag_id)
            except Exception:
                log.exception("the draw of lucky bag %s failed; retrying", bag_id)
        return finished

    async def finish(self, bag_id: str) -> bool:
        """Close the bag if its time has come, draw, publish and give the prizes. Any number
        of processes may call it at once: one closes the bag, and each step after is the same
        whoever runs it. True if this call published the draw."""
        closed = text_of(await self._close(keys=[keys.lucky_bag(bag_id)],
                                           args=[self._now_ms()]))
        if closed == "unknown":
            await self._redis.zrem(keys.LUCKY_DUE, bag_id)
            return False
        if closed in ("not_due", "drawn"):
            if closed == "drawn":
                await self._redis.zrem(keys.LUCKY_DUE, bag_id)
            return False
        bag = await self.get(bag_id)
        closed_at = int(text_of(await self._redis.hget(keys.lucky_bag(bag_id), "closed_at")))
        entrants = [text_of(u) for u in await self._redis.hkeys(keys.lucky_entries(bag_id))]
        # Sorting, drawing and signing a big bag's entries takes a while (docs/performance.md):
        # in a thread, so the process's sockets are served meanwhile.
        draw = await asyncio.to_thread(self._draw_statement, bag, entrants, closed_at)
        winners: list[str] = draw["winners"]
        prizes = await self._give_prizes(bag, winners)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.lucky_bag(bag_id), mapping={
                "draw": orjson.dumps(draw), "prizes": orjson.dumps(prizes), "status": "drawn"})
            pipe.expire(keys.lucky_bag(bag_id), keys.LUCKY_RETENTION_S)
            pipe.expire(keys.lucky_entries(bag_id), keys.LUCKY_RETENTION_S)
            pipe.zrem(keys.LUCKY_DUE, bag_id)
            await pipe.execute()
        drawn = await self.get(bag_id)
        await self._push(drawn, force=False)
        return True

    def _draw_statement(self, bag: LuckyBag, entrants: list[str],
                        closed_at: int) -> dict[str, Any]:
        entries = sorted_entries(entrants)
        return self._sign({
            "format": DRAW_FORMAT, "lucky_bag": bag.id,
            "seed_sha256": bag.commitment["seed_sha256"], "seed": bag.seed.hex(),
            "entries": entries, "entries_sha256": entries_sha256(entries),
            "winners": draw_winners(bag.seed, entries, bag.winners), "closed_at": closed_at,
        })

    async def _give_prizes(self, bag: LuckyBag,
                           winners: list[str]) -> dict[str, dict[str, Any]]:
        """A hold of the prize for each winner, at 0 cents, in a free sale of the bag's own
        that takes no other buy (it is ended once the holds are made). Each hold is bought
        with the request id of the bag, so a retry finds the hold already made."""
        if not winners:
            return {}
        sale_id = bag.prize_sale
        if sale_id is None:
            product = await self._catalog.get_product(bag.product_id)
            now = self._now_ms()
            sale = await self._inventory.create_sale(SaleSpec(
                room_id=bag.room_id, product_id=bag.product_id, anchor_id=bag.anchor_id,
                title=product.title, category=product.category, brand=product.brand,
                stock=len(winners) * bag.units_each, price_cents=0,
                per_user_limit=bag.units_each, starts_at_ms=now,
                ends_at_ms=now + PRIZE_HOLD_MS + _PRIZE_SALE_MARGIN_MS, hold_ms=PRIZE_HOLD_MS,
            ), free=True)
            if await self._redis.hsetnx(keys.lucky_bag(bag.id), "prize_sale", sale.id):
                sale_id = sale.id
            else:  # another process made the prize sale first
                await self._inventory.end_sale(sale.id, "duplicate")
                sale_id = text_of(await self._redis.hget(keys.lucky_bag(bag.id), "prize_sale"))
        prizes = {}
        for winner in winners:
            result = await self._inventory.buy(sale_id, winner, bag.units_each,
                                               f"lucky-{bag.id}")
            if result.reservation is None:
                log.error("lucky bag %s: no prize hold for %s (%s)", bag.id, winner,
                          result.status)
                continue
            prizes[winner] = result.reservation.to_public()
        await self._inventory.end_sale(sale_id, "lucky_draw")
        return prizes

    # pushes ----------------------------------------------------------------------------------

    async def push_changed(self) -> None:
        """Push ``lucky`` for every bag whose entries changed since the last call."""
        dirty, self._dirty = self._dirty, set()
        for bag_id in sorted(dirty):
            await self._push(await self.get(bag_id), force=False)

    async def _push(self, bag: LuckyBag, *, force: bool) -> None:
        """Push the bag to its room once per change, whichever process gets here first."""
        view = await self.view(bag)
        signature = f"{bag.status}:{view['entries']}"
        previous = await self._redis.set(keys.lucky_pushed(bag.id), signature, get=True,
                                         ex=keys.LUCKY_RETENTION_S)
        if force or previous is None or text_of(previous) != signature:
            await self._emit("lucky", view, bag.room_id)


class LuckyLoop(PeriodicLoop):
    """Owner of the loop that pushes entry counts (coalesced: at most one ``lucky`` per bag
    per interval) and draws the bags whose time has come."""

    name = "lucky-loop"

    def __init__(self, desk: LuckyDesk, interval_s: float = 0.5) -> None:
        super().__init__(interval_s)
        self.desk = desk

    async def tick(self) -> None:
        await self.desk.push_changed()
        await self.desk.finish_due()
