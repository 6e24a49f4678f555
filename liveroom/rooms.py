"""Presence, chat and moderation of live rooms; all state in Redis so processes can share a room.

This module knows Redis, not Socket.IO: the edge calls it and broadcasts what it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from . import keys
from .catalog import Catalog, Room
from .exceptions import Banned, Forbidden, InvalidInput, Muted, RoomEnded, SlowMode
from .identity import User

__all__ = ["ChatMessage", "RoomService"]

MAX_MUTE_S = 7 * 24 * 3600
MAX_SLOW_MODE_S = 3600
StateExtra = Callable[[Room], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    room: str
    user: User
    text: str
    ts: int

    def public(self) -> dict[str, Any]:
        return {"room": self.room, "user": {"id": self.user.id, "name": self.user.name},
                "text": self.text, "ts": self.ts}


def _presence_member(sid: str, user_id: str) -> str:
    return f"{sid}|{user_id}"


class RoomService:
    def __init__(self, redis: aioredis.Redis, catalog: Catalog, now_ms: Callable[[], int],
                 chat_max_chars: int = 500) -> None:
        self._redis = redis
        self._catalog = catalog
        self._now_ms = now_ms
        self.chat_max_chars = chat_max_chars
        self._state_extras: list[StateExtra] = []

    def add_state_extra(self, extra: StateExtra) -> None:
        """Let another part (sales, media) add its fields to the room state given on join."""
        self._state_extras.append(extra)

    # presence --------------------------------------------------------------------------------

    async def join(self, user: User, room_id: str, sid: str) -> dict[str, Any]:
        room = await self._catalog.get_room(room_id)
        if not room.live:
            raise RoomEnded(room_id)
        if await self._redis.sismember(keys.room_banned(room_id), user.id):
            raise Banned(room_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.room_presence(room_id), {_presence_member(sid, user.id): self._now_ms()})
            pipe.pfadd(keys.room_unique_viewers(room_id), user.id)
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

    async def chat(self, user: User, room_id: str, text: str) -> ChatMessage:
        room = await self._catalog.get_room(room_id)
        if not room.live:
            raise RoomEnded(room_id)
        now = self._now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.sismember(keys.room_banned(room_id), user.id)
            pipe.hget(keys.room_muted(room_id), user.id)
            banned, muted_until = await pipe.execute()
        if banned:
            raise Banned(room_id)
        if muted_until is not None and int(muted_until) > now:
            raise Muted(room_id, int(muted_until))
        moderator = room.anchor_id == user.id or user.is_admin
        if room.slow_mode_s and not moderator:
            # SET NX PX is the atomic "may I speak" check across all processes.
            slow_key = keys.room_slow(room_id, user.id)
            allowed = await self._redis.set(slow_key, 1, nx=True, px=room.slow_mode_s * 1000)
            if not allowed:
                wait_ms = await self._redis.pttl(slow_key)
                raise SlowMode(room_id, max(int(wait_ms), 1))
        message = ChatMessage(room=room_id, user=user, text=text, ts=now)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.room_chat(room_id), orjson.dumps(message.public()))
            pipe.ltrim(keys.room_chat(room_id), 0, keys.CHAT_HISTORY_LEN - 1)
            await pipe.execute()
        return message

    # moderation ------------------------------------------------------------------------------

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

    async def ban(self, moderator: User, room_id: str, target_id: str) -> None:
        await self._moderated_room(moderator, room_id, target_id)
        await self._redis.sadd(keys.room_banned(room_id), target_id)

    async def unban(self, moderator: User, room_id: str, target_id: str) -> None:
        await self._moderated_room(moderator, room_id, target_id)
        await self._redis.srem(keys.room_banned(room_id), target_id)

    async def set_slow_mode(self, moderator: User, room_id: str, seconds: int) -> None:
        if not 0 <= seconds <= MAX_SLOW_MODE_S:
            raise InvalidInput(f"seconds must be between 0 and {MAX_SLOW_MODE_S}")
        await self._moderated_room(moderator, room_id, None)
        await self._catalog.set_slow_mode(room_id, seconds)
