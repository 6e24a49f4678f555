"""Watch time, measured by the server: how long each user was present in a room.

Every process credits the users its own sockets hold in each room, every ``interval_s``
(``WatchMeter``): a user seen again within ``max_gap_ms`` of the last sighting gets that gap
added. Presence is what is measured, not attention: a muted tab still counts. A user who leaves
loses the time since their last sighting, and the first sighting after a join credits nothing,
so the measure errs on the short side by at most one interval per visit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from importlib import resources

import redis.asyncio as aioredis

from . import keys
from .loops import PeriodicLoop

__all__ = ["WATCH_INTERVAL_S", "WatchMeter", "WatchTime"]

WATCH_INTERVAL_S = 10.0
# A sighting further than this from the previous one starts a new visit (the user left, or
# every process holding them stopped): the time in between is not credited.
MAX_GAP_MS = 30_000
# Users credited per script call (each call is one step of Redis, which buys wait behind).
CREDIT_SLICE = 500

# (room id, user id) of each socket this process holds in a room.
Present = Callable[[], Iterable[tuple[str, str]]]


class WatchTime:
    def __init__(self, redis: aioredis.Redis, now_ms: Callable[[], int],
                 max_gap_ms: int = MAX_GAP_MS) -> None:
        self._redis = redis
        self._now_ms = now_ms
        self._max_gap_ms = max_gap_ms
        self._credit = redis.register_script(
            resources.files("liveroom").joinpath("lua/watch_credit.lua").read_text("utf-8"))

    async def seen(self, present: Iterable[tuple[str, str]]) -> None:
        """Credit every (room, user) seen now; a user with several sockets counts once."""
        by_room: dict[str, set[str]] = defaultdict(set)
        for room_id, user_id in present:
            by_room[room_id].add(user_id)
        now = self._now_ms()
        for room_id, users in by_room.items():
            ordered = sorted(users)
            # In slices: one script call for a 10,000-member room held Redis, and every buy
            # batch queued behind it, for as long as it took.
            for start in range(0, len(ordered), CREDIT_SLICE):
                await self._credit(
                    keys=[keys.room_watch_seen(room_id), keys.room_watched(room_id)],
                    args=[now, self._max_gap_ms, keys.WATCH_RETENTION_MS,
                          *ordered[start:start + CREDIT_SLICE]])

    async def watched_ms(self, room_id: str, user_id: str) -> int:
        raw = await self._redis.hget(keys.room_watched(room_id), user_id)
        return 0 if raw is None else int(raw)


class WatchMeter(PeriodicLoop):
    """Owner of the loop that credits this process's sockets with their watch time."""

    name = "watch-meter"

    def __init__(self, watch: WatchTime, present: Present,
                 interval_s: float = WATCH_INTERVAL_S) -> None:
        super().__init__(interval_s)
        self.watch = watch
        self._present = present

    async def tick(self) -> None:
        await self.watch.seen(self._present())
