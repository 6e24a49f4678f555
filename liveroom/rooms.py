"""Presence, chat and moderation of live rooms; all state in Redis so processes can share a room.

This module knows Redis, not Socket.IO: the edge calls it and broadcasts what it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from . import keys
from .addresses import ClientAddresses
from .catalog import Catalog, Room, text_of
from .exceptions import (
    Banned,
    Forbidden,
    InvalidInput,
    Muted,
    NameReserved,
    RateLimited,
    RoomEnded,
    SlowMode,
)
from .identity import Role, User, name_key

__all__ = ["BuyerBans", "ChatMessage", "RoomService", "bans_in_force", "is_guest", "role_in"]

MAX_MUTE_S = 7 * 24 * 3600
MAX_BAN_S = 365 * 24 * 3600
MAX_SLOW_MODE_S = 3600
# A banned guest's address stays banned this long when the ban itself has no end: an address
# is shared (a household, a carrier's NAT), so it cannot be barred for good.
GUEST_ADDRESS_BAN_MS = 24 * 3600 * 1000
CHAT_WINDOW_S = 10
StateExtra = Callable[[Room], Awaitable[dict[str, Any]]]


async def bans_in_force(redis: aioredis.Redis, room_id: str, now_ms: int) -> dict[str, int]:
    """The room's user bans in force at ``now_ms``: user id -> until ms (0: until unbanned)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.room_bans(room_id))
        pipe.smembers(keys.room_banned(room_id))
        current, legacy = await pipe.execute()
    bans = {text_of(user): int(until) for user, until in current.items()
            if int(until) == 0 or int(until) > now_ms}
    bans.update({text_of(user): 0 for user in legacy})
    return bans


class BuyerBans(Protocol):
    """Where a room's bans reach its flash sales, so a banned user cannot buy there."""

    async def ban_buyer(self, room_id: str, user_id: str, until_ms: int) -> None: ...
    async def unban_buyer(self, room_id: str, user_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class _AddressBan:
    """A banned guest's address: guest sessions made there since ``since_ms`` stay out of the
    room until ``until_ms``. Stored as ``until:since:user``."""

    until_ms: int
    since_ms: int
    user_id: str

    def encode(self) -> str:
        return f"{self.until_ms}:{self.since_ms}:{self.user_id}"

    @classmethod
    def decode(cls, raw: object) -> _AddressBan:
        until, since, user_id = text_of(raw).split(":", 2)
        return cls(int(until), int(since), user_id)


def is_guest(user: User) -> bool:
    """A viewer without an account: anyone can make another guest session at will."""
    return user.role is Role.VIEWER and not user.phone_verified


def role_in(room: Room, user: User) -> str:
    """How ``user`` is marked in ``room``: the room's own anchor, an admin (who moderates every
    room), an inspector, or a viewer. From the role, never the name."""
    if user.id == room.anchor_id:
        return "anchor"
    if user.role in (Role.ADMIN, Role.INSPECTOR):
        return user.role.value
    return "viewer"


@dataclass(frozen=True, slots=True)
class ChatMessage:
    room: str
    user: User
    # The speaker's role in this room (``role_in``), shown beside the name.
    role: str
    text: str
    ts: int

    def public(self) -> dict[str, Any]:
        return {"room": self.room,
                "user": {"id": self.user.id, "name": self.user.name, "role": self.role},
                "text": self.text, "ts": self.ts}


def _presence_member(sid: str, user_id: str) -> str:
    return f"{sid}|{user_id}"


class RoomService:
    def __init__(self, redis: aioredis.Redis, catalog: Catalog, now_ms: Callable[[], int],
                 chat_max_chars: int = 500, *, buyer_bans: BuyerBans | None = None,
                 addresses: ClientAddresses | None = None, chat_per_speaker: int = 10,
                 chat_per_address: int = 60, state_extras: Sequence[StateExtra] = ()) -> None:
        """``state_extras`` add their fields to the room state given on join (the room's sale,
        its media)."""
        self._redis = redis
        self._catalog = catalog
        self._now_ms = now_ms
        self.chat_max_chars = chat_max_chars
        self._buyer_bans = buyer_bans
        self._addresses = addresses if addresses is not None else ClientAddresses()
        # Registered once, run by EVALSHA (redis-py loads it again after a SCRIPT FLUSH).
        self._gcra = redis.register_script(
            resources.files("liveroom").joinpath("lua/gcra.lua").read_text(encoding="utf-8"))
        # Chat messages per CHAT_WINDOW_S, whatever the number of connections (0: no limit).
        self._chat_per_speaker = chat_per_speaker
        self._chat_per_address = chat_per_address
        self._state_extras = tuple(state_extras)

    # presence --------------------------------------------------------------------------------

    async def join(self, user: User, room_id: str, sid: str, address: str) -> dict[str, Any]:
        room = await self._catalog.get_room(room_id)
        if not room.live:
            raise RoomEnded(room_id)
        if await self.banned_until(room_id, user, address) is not None:
            raise Banned(room_id)
        if (user.role is Role.VIEWER and user.id != room.anchor_id
                and name_key(user.name) == name_key(room.anchor_name)):
            raise NameReserved(room_id, user.name)
        # A guest who signed in to buy is one viewer, not two: the account counts as the guest
        # session it came from (AccountService.remember_guest).
        person = user.id
        if user.phone_verified:
            person = text_of(await self._redis.get(keys.account_guest(user.id)) or user.id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.room_presence(room_id), {_presence_member(sid, user.id): self._now_ms()})
            pipe.pfadd(keys.room_unique_viewers(room_id), person)
            await pipe.execute()
        return await self.state(room)

    async def leave(self, user_id: str, room_id: str, sid: str) -> None:
        await self._redis.zrem(keys.room_presence(room_id), _presence_member(sid, user_id))

    async def refresh_presence(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Heartbeat for this process's sockets: (room_id, sid, user_id) triples."""
        now = self._now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            for room_id, sid, user_id in entries:
                pipe.zadd(keys.room_presence(room_id), {_presence_member(sid, user_id): now})
            await pipe.execute()

    async def viewer_counts(self, room_ids: Iterable[str]) -> dict[str, int]:
        ids = list(room_ids)
        if not ids:
            return {}
        floor = self._now_ms() - keys.PRESENCE_STALE_MS
        async with self._redis.pipeline(transaction=False) as pipe:
            for room_id in ids:
                pipe.zremrangebyscore(keys.room_presence(room_id), "-inf", floor)
                pipe.zcard(keys.room_presence(room_id))
            results = await pipe.execute()
        return {room_id: int(results[2 * i + 1]) for i, room_id in enumerate(ids)}

    async def claim_viewer_push(self, room_id: str, count: int) -> bool:
        """True if ``count`` differs from the last pushed count (this caller should push it)."""
        previous = await self._redis.set(keys.room_viewers_pushed(room_id), count, get=True)
        return previous is None or int(previous) != count

    async def unique_viewers(self, room_ids: Iterable[str]) -> dict[str, int]:
        ids = list(room_ids)
        async with self._redis.pipeline(transaction=False) as pipe:
            for room_id in ids:
                pipe.pfcount(keys.room_unique_viewers(room_id))
            counts = await pipe.execute()
        return {room_id: int(n) for room_id, n in zip(ids, counts, strict=True)}

    async def state(self, room: Room) -> dict[str, Any]:
        counts = await self.viewer_counts([room.id])
        raw_chat = await self._redis.lrange(keys.room_chat(room.id), 0, keys.CHAT_HISTORY_LEN - 1)
        state = room.public()
        state["viewers"] = counts[room.id]
        state["chat"] = [orjson.loads(item) for item in reversed(raw_chat)]
        state["pinned"] = None
        if room.pinned_product:
            product = await self._catalog.get_product(room.pinned_product)
            state["pinned"] = await self._catalog.product_view(product)
        for extra in self._state_extras:
            state.update(await extra(room))
        state["server_time"] = self._now_ms()
        return state

    # chat ------------------------------------------------------------------------------------

    async def chat(self, user: User, room_id: str, text: str, address: str) -> ChatMessage:
        room = await self._catalog.get_room(room_id)
        if not room.live:
            raise RoomEnded(room_id)
        now = self._now_ms()
        if await self.banned_until(room_id, user, address) is not None:
            raise Banned(room_id)
        muted_until = await self._redis.hget(keys.room_muted(room_id), user.id)
        if muted_until is not None and int(muted_until) > now:
            raise Muted(room_id, int(muted_until))
        moderator = room.anchor_id == user.id or user.is_admin
        if not moderator:
            await self._take_chat_budget(user.id, address, now)
        if room.slow_mode_s and not moderator:
            # SET NX PX is the atomic "may I speak" check across all processes, per account
            # (a guest session: new ones are rate limited per address, see SessionGate).
            slow_key = keys.room_slow(room_id, user.id)
            allowed = await self._redis.set(slow_key, 1, nx=True, px=room.slow_mode_s * 1000)
            if not allowed:
                wait_ms = await self._redis.pttl(slow_key)
                raise SlowMode(room_id, max(int(wait_ms), 1))
        message = ChatMessage(room=room_id, user=user, role=role_in(room, user), text=text,
                              ts=now)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.room_chat(room_id), orjson.dumps(message.public()))
            pipe.ltrim(keys.room_chat(room_id), 0, keys.CHAT_HISTORY_LEN - 1)
            await pipe.execute()
        return message

    async def _take_chat_budget(self, user_id: str, address: str, now: int) -> None:
        """Count one message against the address's and the user's budget (a burst of the
        limit, refilled evenly over CHAT_WINDOW_S), shared by every connection on every
        process; a message refused by either is not sent."""
        budgets = []
        if self._chat_per_address and not self._addresses.unlimited(address):
            budgets.append((keys.chat_budget(f"addr:{address}"), self._chat_per_address))
        if self._chat_per_speaker:
            budgets.append((keys.chat_budget(user_id), self._chat_per_speaker))
        for key, burst in budgets:
            wait_ms = int(await self._gcra(keys=[key], args=[
                now, CHAT_WINDOW_S * 1000 // burst, burst]))
            if wait_ms > 0:
                raise RateLimited("too many chat messages; wait a moment",
                                  retry_after_ms=wait_ms)

    # moderation ------------------------------------------------------------------------------

    async def banned_until(self, room_id: str, user: User, address: str) -> int | None:
        """When ``user`` (at ``address``) may come back to the room: None if not banned, 0 if
        banned until unbanned. A guest is also kept out by a ban of another guest session
        from the same address."""
        now = self._now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.room_bans(room_id), user.id)
            pipe.sismember(keys.room_banned(room_id), user.id)
            pipe.hget(keys.room_address_bans(room_id), address)
            until, legacy, by_address = await pipe.execute()
        if legacy:
            return 0
        if until is not None and (int(until) == 0 or int(until) > now):
            return int(until)
        if by_address is not None and is_guest(user):
            ban = _AddressBan.decode(by_address)
            # Guest sessions made before the ban are other people at that address (a family,
            # a carrier's NAT): the ban keeps out the sessions made after it, the evasions.
            if ban.until_ms > now and user.issued_at_s * 1000 + 1000 > ban.since_ms:
                return ban.until_ms
        return None

    async def _moderated_room(self, moderator: User, room_id: str, target_id: str | None) -> Room:
        room = await self._catalog.owned_room(moderator, room_id)
        if target_id is not None and target_id in (room.anchor_id, moderator.id):
            raise Forbidden("the anchor cannot be muted or banned in their own room")
        return room

    async def mute(self, moderator: User, room_id: str, target_id: str, duration_s: int) -> int:
        if not 1 <= duration_s <= MAX_MUTE_S:
            raise InvalidInput(f"duration_s must be between 1 and {MAX_MUTE_S}")
        await self._moderated_room(moderator, room_id, target_id)
        until = self._now_ms() + duration_s * 1000
        await self._redis.hset(keys.room_muted(room_id), target_id, until)
        return until

    async def unmute(self, moderator: User, room_id: str, target_id: str) -> None:
        await self._moderated_room(moderator, room_id, target_id)
        await self._redis.hdel(keys.room_muted(room_id), target_id)

    async def ban(self, moderator: User, room_id: str, target_id: str,
                  duration_s: int | None = None) -> int:
        """Ban the user from the room (for ``duration_s``, or until unbanned): no joining,
        chatting or buying in its sales. Returns the end in ms, 0 for none. The processes
        holding the user's connections then call ``ban_addresses`` for the guests among them."""
        if duration_s is not None and not 1 <= duration_s <= MAX_BAN_S:
            raise InvalidInput(f"duration_s must be between 1 and {MAX_BAN_S}")
        await self._moderated_room(moderator, room_id, target_id)
        until = 0 if duration_s is None else self._now_ms() + duration_s * 1000
        await self._redis.hset(keys.room_bans(room_id), target_id, until)
        if self._buyer_bans is not None:
            await self._buyer_bans.ban_buyer(room_id, target_id, until)
        return until

    async def ban_addresses(self, room_id: str, user_id: str, until_ms: int,
                            addresses: Sequence[str]) -> None:
        """Keep guests at ``addresses`` out of the room with the guest ``user_id``'s ban."""
        if not addresses:
            return
        now = self._now_ms()
        ban = _AddressBan(until_ms or now + GUEST_ADDRESS_BAN_MS, now, user_id)
        await self._redis.hset(keys.room_address_bans(room_id),
                               mapping={address: ban.encode() for address in addresses})

    async def unban(self, moderator: User, room_id: str, target_id: str) -> None:
        await self._moderated_room(moderator, room_id, target_id)
        address_bans = await self._redis.hgetall(keys.room_address_bans(room_id))
        theirs = [address for address, value in address_bans.items()
                  if _AddressBan.decode(value).user_id == target_id]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hdel(keys.room_bans(room_id), target_id)
            pipe.srem(keys.room_banned(room_id), target_id)
            if theirs:
                pipe.hdel(keys.room_address_bans(room_id), *theirs)
            await pipe.execute()
        if self._buyer_bans is not None:
            await self._buyer_bans.unban_buyer(room_id, target_id)


    async def set_slow_mode(self, moderator: User, room_id: str, seconds: int) -> None:
        if not 0 <= seconds <= MAX_SLOW_MODE_S:
            raise InvalidInput(f"seconds must be between 0 and {MAX_SLOW_MODE_S}")
        await self._moderated_room(moderator, room_id, None)
        await self._catalog.set_slow_mode(room_id, seconds)
