"""What ``GET /api/rooms/{id}/replay`` says: the room's recorded broadcasts as one VOD, with the
products pinned and the flash sales run during the show as chapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._recorder import Recorder
from .exceptions import NoReplay

__all__ = ["PinMoment", "ReplayDesk", "SaleMoment"]


@dataclass(frozen=True, slots=True)
class SaleMoment:
    sale_id: str
    product_id: str
    title: str
    starts_at: int


@dataclass(frozen=True, slots=True)
class PinMoment:
    product_id: str
    title: str
    pinned_at: int


class ReplayDesk:
    """``sales_of(room_id)`` gives the room's sales (any order), ``pins_of(room_id)`` its pins
    (in the order they were made); ``room_exists`` raises the catalog's unknown-room error for
    a room that never was."""

    def __init__(self, recorder: Recorder,
                 room_exists: Callable[[str], Awaitable[object]],
                 sales_of: Callable[[str], Awaitable[list[SaleMoment]]],
                 pins_of: Callable[[str], Awaitable[list[PinMoment]]]) -> None:
        self._recorder = recorder
        self._room_exists = room_exists
        self._sales_of = sales_of
        self._pins_of = pins_of

    async def describe(self, room_id: str) -> dict[str, Any]:
        await self._room_exists(room_id)
        replay = self._recorder.replay(room_id)
        if replay is None:
            raise NoReplay(room_id)
        chapters: list[dict[str, Any]] = []
        for sale in await self._sales_of(room_id):
            at = replay.offset_of(sale.starts_at)
            if at is not None:
                chapters.append({"at_ms": at, "kind": "sale", "title": sale.title,
                                 "sale": sale.sale_id, "product": sale.product_id})
        pins: list[dict[str, Any]] = []
        shown = None
        for pin in await self._pins_of(room_id):
            repeated = pin.product_id == shown
            shown = pin.product_id
            at = replay.offset_of(pin.pinned_at)
            if repeated or at is None:
                continue  # pinned again while pinned, or while nothing was recorded
            chapter = {"at_ms": at, "kind": "pin", "title": pin.title,
                       "product": pin.product_id}
            if pins and pins[-1]["at_ms"] == at:
                pins[-1] = chapter  # pins before the recording: the one shown when it began
            else:
                pins.append(chapter)
        # Stable: a pin and a sale at the same moment keep the pin first.
        chapters = sorted(pins + chapters, key=lambda chapter: int(chapter["at_ms"]))
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
