"""What ``GET /api/rooms/{id}/replay`` says: the room's recorded broadcasts as one VOD, with the
flash sales run during the show as chapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._recorder import Recorder
from .exceptions import NoReplay

__all__ = ["ReplayDesk", "SaleMoment"]


@dataclass(frozen=True, slots=True)
class SaleMoment:
    sale_id: str
    product_id: str
    title: str
    starts_at: int


class ReplayDesk:
    """``sales_of(room_id)`` gives the room's sales (any order); ``room_exists`` raises the
    catalog's unknown-room error for a room that never was."""

    def __init__(self, recorder: Recorder,
                 room_exists: Callable[[str], Awaitable[object]],
                 sales_of: Callable[[str], Awaitable[list[SaleMoment]]]) -> None:
        self._recorder = recorder
        self._room_exists = room_exists
        self._sales_of = sales_of

    async def describe(self, room_id: str) -> dict[str, Any]:
        await self._room_exists(room_id)
        replay = self._recorder.replay(room_id)
        if replay is None:
            raise NoReplay(room_id)
        found: list[tuple[int, SaleMoment]] = []
        for sale in await self._sales_of(room_id):
            at = replay.offset_of(sale.starts_at)
            if at is not None:
                found.append((at, sale))
        found.sort(key=lambda pair: pair[0])
        chapters = [{"at_ms": at, "kind": "sale", "title": sale.title, "sale": sale.sale_id,
                     "product": sale.product_id} for at, sale in found]
        first = replay.segments[0]
        last = replay.segments[-1]
        return {
            "room": room_id,
            "playlist": f"/replay/{room_id}/index.m3u8",
            "duration_ms": replay.duration_ms,
            "started_at": first.start_ms,
            "ended_at": last.start_ms + last.duration_ms,
            "chapters": chapters,
        }
