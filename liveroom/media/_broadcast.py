"""One room's broadcast: the anchor's peer connection and the viewers it fans out to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCPeerConnection

from ._aiortc import send_picture_loss
from ._frames import EncodedFrame, make_frame
from ._health import StreamMeter
from ._tracks import ForwardingTrack

__all__ = ["Broadcast", "FrameTap", "KeyframeThrottle", "Viewer"]

logger = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class KeyframeThrottle:
    """At most one keyframe request per ``interval_ms``; a request inside the interval is
    deferred to its end, never dropped (a viewer waiting for its first frame must get one)."""

    def __init__(
        self,
        send: Callable[[], Awaitable[int]],
        *,
        interval_ms: int,
        now_ms: Callable[[], int],
        spawn: Spawn,
    ) -> None:
        self._send = send
        self._interval_ms = interval_ms
        self._now_ms = now_ms
        self._spawn = spawn
        self._last_ms: int | None = None
        self._deferred: asyncio.TimerHandle | None = None
        self.requests_sent = 0

    def request(self) -> None:
        if self._deferred is not None:
            return
        now = self._now_ms()
        wait_ms = 0 if self._last_ms is None else self._last_ms + self._interval_ms - now
        if wait_ms <= 0:
            self._fire()
        else:
            self._deferred = asyncio.get_running_loop().call_later(wait_ms / 1000, self._fire)

    def _fire(self) -> None:
        self._deferred = None
        self._last_ms = self._now_ms()
        self.requests_sent += 1
        self._spawn(self._send_quietly())

    async def _send_quietly(self) -> None:
        # A broadcaster that is gone is handled by its connection-state handler.
        with contextlib.suppress(ConnectionError):
            await self._send()

    def close(self) -> None:
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None


class FrameTap(Protocol):
    """Something else that takes a broadcast's frames (the LL-HLS packager): ``on_frame`` runs
    on the event loop for every frame (keep it cheap: queue the work), ``on_end`` once when the
    broadcast ends, ``replaced`` when a new publish of the same room took its place."""

    def on_frame(self, frame: EncodedFrame) -> None: ...

    def on_end(self, replaced: bool) -> None: ...


@dataclass(eq=False)
class Viewer:
    viewer_id: str
    pc: RTCPeerConnection
    tracks: dict[str, ForwardingTrack] = field(default_factory=dict)
    # Closes the viewer if its peer connection has not connected by then (MediaService).
    connect_deadline: asyncio.TimerHandle | None = None

    def cancel_deadline(self) -> None:
        if self.connect_deadline is not None:
            self.connect_deadline.cancel()
            self.connect_deadline = None


class Broadcast:
    def __init__(
        self,
        room_id: str,
        publisher_id: str,
        pc: RTCPeerConnection,
        *,
        codecs: dict[str, Any],
        video_receiver: Any | None,
        now_ms: Callable[[], int],
        spawn: Spawn,
        keyframe_interval_ms: int,
        health_window_ms: int,
    ) -> None:
        self.room_id = room_id
        self.publisher_id = publisher_id
        self.pc = pc
        # kind -> the codec the broadcaster negotiated; every viewer's sender is pinned to it.
        self.codecs = codecs
        self.viewers: dict[str, Viewer] = {}
        self.started_ms = now_ms()
        self.frames_rejected = 0
        self._now_ms = now_ms
        self._tracks: dict[str, list[ForwardingTrack]] = {kind: [] for kind in codecs}
        self._meter = StreamMeter(health_window_ms)
        self._video_receiver = video_receiver
        self.keyframes = KeyframeThrottle(
            self._send_pli, interval_ms=keyframe_interval_ms, now_ms=now_ms, spawn=spawn
        )
        self.on_first_frame: Callable[[], None] | None = None
        self.taps: list[FrameTap] = []

    @property
    def last_frame_ms(self) -> int | None:
        return self._meter.last_ms

    def on_frame(self, kind: str, codec: Any, timestamp: int, data: bytes) -> None:
        """Tap sink: runs on the event loop for every frame the jitter buffer completes."""
        now = self._now_ms()
        first = self._meter.last_ms is None
        self._meter.record(now, len(data), kind == "video")
        pinned = self.codecs.get(kind)
        if pinned is None or codec.mimeType.lower() != pinned.mimeType.lower():
            # Viewers were negotiated for the pinned codec; anything else would not decode.
            self.frames_rejected += 1
            return
        frame = make_frame(kind, codec.mimeType, codec.clockRate, timestamp, data, now)
        for track in self._tracks[kind]:
            track.push(frame)
        for tap in self.taps:
            try:
                tap.on_frame(frame)
            except Exception:
                logger.exception("room %s: a frame tap failed", self.room_id)
        if first and self.on_first_frame is not None:
            self.on_first_frame()

    def request_keyframe(self) -> None:
        if self._video_receiver is not None:
            self.keyframes.request()

    async def _send_pli(self) -> int:
        if self._video_receiver is None:
            return 0
        return await send_picture_loss(self._video_receiver)

    def attach(self, track: ForwardingTrack) -> None:
        self._tracks[track.kind].append(track)

    def detach(self, track: ForwardingTrack) -> None:
        tracks = self._tracks.get(track.kind, [])
        if track in tracks:
            tracks.remove(track)

    def rates(self) -> tuple[float, float]:
        return self._meter.rates(self._now_ms())

    def close(self, replaced: bool = False) -> None:
        self.keyframes.close()
        taps, self.taps = self.taps, []
        for tap in taps:
            try:
                tap.on_end(replaced)
            except Exception:
                logger.exception("room %s: a frame tap failed to end", self.room_id)
