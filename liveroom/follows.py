"""Followers of anchors: follow and unfollow (idempotent), counts pushed live to the anchor's
rooms and to open landing pages, the push to followers when the anchor goes live, and the
follower sets the anchor's figures are made from (who follows, who began during a show)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from . import keys
from .catalog import Catalog, Room, text_of
from .exceptions import Forbidden, InvalidInput, UnknownAnchor, UnknownRoom, VerificationRequired
from .identity import User
from .loops import PeriodicLoop
from .rooms import is_guest

__all__ = ["LANDING_ROOM", "CannotFollowSelf", "FollowService", "FollowerPusher",
           "landing_room_of"]

Emit = Callable[[str, Any, str], Awaitable[None]]
# The Socket.IO room of every open landing page, and of one user's landing pages.
LANDING_ROOM = "landing"
# Followers told of a go-live per Redis read.
_LIVE_PUSH_CHUNK = 1000
MAX_LISTED = 1000


def landing_room_of(user_id: str) -> str:
    return f"landing:{user_id}"


class CannotFollowSelf(InvalidInput):
    code = "cannot_follow_self"

    def __init__(self) -> None:
        super().__init__("an anchor cannot follow themself")


@dataclass(frozen=True, slots=True)
class FollowState:
    anchor_id: str
    following: bool
    followers: int

    def public(self) -> dict[str, Any]:
        return {"anchor": self.anchor_id, "following": self.following,
                "followers": self.followers}


class FollowService:
    def __init__(self, redis: aioredis.Redis, catalog: Catalog, now_ms: Callable[[], int],
                 emit: Emit, changed: Callable[[str], None] = lambda _: None,
                 went_live: Callable[[Room], None] = lambda _: None) -> None:
        """``changed(anchor_id)`` is told of every follower count that may have moved, and
        ``went_live(room)`` of every room opened: the ``FollowerPusher`` sends the pushes, so
        opening a room does not wait for every follower to be told."""
        self._redis = redis
        self._catalog = catalog
        self._now_ms = now_ms
        self._emit = emit
        self._changed = changed
        self._went_live = went_live

    async def _check(self, user: User, anchor_id: str) -> None:
        if is_guest(user):
            # A guest session costs nothing to make: followers are accounts.
            raise VerificationRequired("follow an anchor")
        if user.id == anchor_id:
            raise CannotFollowSelf()
        if not await self._catalog.anchor_known(anchor_id):
            raise UnknownAnchor(anchor_id)

    async def follow(self, user: User, anchor_id: str) -> FollowState:
        """Follow ``anchor_id``; following again keeps the first date. A follow made while one
        of the anchor's rooms is live counts as gained during that show."""
        await self._check(user, anchor_id)
        now = self._now_ms()
        live = [room.id for room in await self.live_rooms_of(anchor_id)]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(keys.anchor_followers(anchor_id), {user.id: now}, nx=True)
            pipe.zadd(keys.user_following(user.id), {anchor_id: now}, nx=True)
            pipe.zcard(keys.anchor_followers(anchor_id))
            added, _, count = await pipe.execute()
        if added:
            async with self._redis.pipeline(transaction=False) as pipe:
                for room_id in live:
                    pipe.sadd(keys.room_new_followers(room_id), user.id)
                await pipe.execute()
            self._changed(anchor_id)
        return FollowState(anchor_id, True, int(count))

    async def unfollow(self, user: User, anchor_id: str) -> FollowState:
        """Stop following; unfollowing someone not followed changes nothing."""
        await self._check(user, anchor_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(keys.anchor_followers(anchor_id), user.id)
            pipe.zrem(keys.user_following(user.id), anchor_id)
            pipe.zcard(keys.anchor_followers(anchor_id))
            removed, _, count = await pipe.execute()
        if removed:
            self._changed(anchor_id)
        return FollowState(anchor_id, False, int(count))

    async def count(self, anchor_id: str) -> int:
        return int(await self._redis.zcard(keys.anchor_followers(anchor_id)))

    async def is_following(self, user_id: str, anchor_id: str) -> bool:
        return await self._redis.zscore(keys.anchor_followers(anchor_id), user_id) is not None

    async def follower_ids(self, anchor_id: str) -> dict[str, int]:
        """Every follower of the anchor -> since when (ms): for the anchor's figures
        (repurchase rate of followers against other buyers)."""
        raw: Any = await self._redis.zrange(
            keys.anchor_followers(anchor_id), 0, -1, withscores=True)
        return {text_of(user): int(since) for user, since in raw}

    async def gained_during(self, room_id: str) -> set[str]:
        """Who began following the room's anchor while the room was live."""
        return {text_of(user) for user in await self._redis.smembers(
            keys.room_new_followers(room_id))}

    async def profile(self, anchor_id: str, viewer: User | None) -> dict[str, Any]:
        """``GET /api/anchors/{id}``: name, follower count, live rooms, and whether the caller
        follows."""
        if not await self._catalog.anchor_known(anchor_id):
            raise UnknownAnchor(anchor_id)
        rooms = await self.live_rooms_of(anchor_id)
        following = None if viewer is None else await self.is_following(viewer.id, anchor_id)
        return {"id": anchor_id, "name": await self._catalog.anchor_name(anchor_id),
                "followers": await self.count(anchor_id), "following": following,
                "live_rooms": [{"id": room.id, "title": room.title} for room in rooms]}

    async def figures(self, anchor: User, anchor_id: str, room_id: str | None) -> dict[str, Any]:
        """The anchor's follower figures (the anchor or an admin): the count, the newest
        followers, and with ``room_id`` how many began following during that show and how many
        of them still follow."""
        if anchor.id != anchor_id and not anchor.is_admin:
            raise Forbidden("only the anchor (or an admin) sees their followers")
        if not await self._catalog.anchor_known(anchor_id):
            raise UnknownAnchor(anchor_id)
        newest: Any = await self._redis.zrevrange(
            keys.anchor_followers(anchor_id), 0, MAX_LISTED - 1, withscores=True)
        answer: dict[str, Any] = {
            "anchor": anchor_id, "followers": await self.count(anchor_id),
            "newest": [{"user": text_of(user), "since": int(since)} for user, since in newest],
        }
        if room_id is not None:
            room = await self._catalog.get_room(room_id)
            if room.anchor_id != anchor_id:
                raise UnknownRoom(room_id)
            gained = sorted(await self.gained_during(room_id))
            still = 0
            if gained:
                scores = await self._redis.zmscore(keys.anchor_followers(anchor_id), gained)
                still = sum(score is not None for score in scores)
            answer["room"] = {"id": room_id, "gained": len(gained), "still_following": still}
        return answer

    # rooms and pushes ------------------------------------------------------------------------

    async def room_opened(self, room: Room) -> None:
        """The anchor went live: remember the room; its followers are told next
        (``announce_live``)."""
        await self._redis.zadd(keys.anchor_rooms(room.anchor_id), {room.id: room.created_at})
        self._went_live(room)

    async def announce_live(self, room: Room) -> None:
        """Push ``live`` to the landing pages of every follower of the room's anchor (one emit
        per follower, to their own Socket.IO room: nobody else hears whom they follow)."""
        news = {"anchor": room.anchor_id, "anchor_name": room.anchor_name, "room": room.id,
                "title": room.title}
        start = 0
        while True:
            chunk = await self._redis.zrange(keys.anchor_followers(room.anchor_id), start,
                                             start + _LIVE_PUSH_CHUNK - 1)
            for user in chunk:
                await self._emit("live", news, landing_room_of(text_of(user)))
            if len(chunk) < _LIVE_PUSH_CHUNK:
                break
            start += _LIVE_PUSH_CHUNK

    async def live_rooms_of(self, anchor_id: str) -> list[Room]:
        rooms = []
        for raw in await self._redis.zrevrange(keys.anchor_rooms(anchor_id), 0, 19):
            try:
                room = await self._catalog.get_room(text_of(raw))
            except UnknownRoom:
                continue
            if room.live:
                rooms.append(room)
        return rooms

    async def room_state(self, room: Room) -> dict[str, Any]:
        """The ``followers`` field of the room state: the anchor's follower count."""
        return {"followers": await self.count(room.anchor_id)}

    async def push_count(self, anchor_id: str) -> None:
        news = {"anchor": anchor_id, "count": await self.count(anchor_id)}
        for room in await self.live_rooms_of(anchor_id):
            await self._emit("followers", news, room.id)
        await self._emit("followers", news, LANDING_ROOM)


class FollowerPusher(PeriodicLoop):
    """Owner of the loop that pushes ``followers`` counts (follows only mark an anchor; each
    marked anchor's count is pushed at most once per interval) and tells followers of the
    rooms opened since the last turn (``live``)."""

    name = "follower-pusher"

    def __init__(self, follows: FollowService, interval_s: float = 0.5) -> None:
        super().__init__(interval_s)
        self.follows = follows
        self._dirty: set[str] = set()
        self._opened: list[Room] = []

    def changed(self, anchor_id: str) -> None:
        self._dirty.add(anchor_id)

    def went_live(self, room: Room) -> None:
        self._opened.append(room)

    async def tick(self) -> None:
        opened, self._opened = self._opened, []
        for room in opened:
            await self.follows.announce_live(room)
        dirty, self._dirty = self._dirty, set()
        for anchor_id in sorted(dirty):
            await self.follows.push_count(anchor_id)
