"""The track each viewer's sender reads: a bounded queue of shared encoded frames."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ._frames import EncodedFrame

__all__ = ["ForwardingTrack"]


class ForwardingTrack(MediaStreamTrack):
    """Hands the broadcaster's encoded frames to one viewer's ``RTCRtpSender``.

    ``recv()`` returns ``av.Packet`` objects, so the sender packetizes them without encoding.
    The queue never grows past ``capacity``: a viewer whose sender falls behind loses frames,
    never memory. Video is only useful from a keyframe on, so a video track starts by waiting
    for one, and after an overflow it drops the backlog and waits (and asks) for the next one.
    Audio frames are independent, so audio just drops the oldest frame.
    """

    def __init__(
        self,
        kind: str,
        *,
        capacity: int,
        request_keyframe: Callable[[], None],
        on_stop: Callable[[ForwardingTrack], None],
        keyframe_retry_s: float = 1.0,
    ) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.kind = kind
        self._capacity = capacity
        self._request_keyframe = request_keyframe
        self._on_stop = on_stop
        self._keyframe_retry_s = keyframe_retry_s
        self._frames: deque[EncodedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._awaiting_keyframe = kind == "video"
        self._reading = False
        self.frames_forwarded = 0
        self.frames_dropped = 0

    @property
    def queued(self) -> int:
        return len(self._frames)

    @property
    def awaiting_keyframe(self) -> bool:
        return self._awaiting_keyframe

    def push(self, frame: EncodedFrame) -> None:
        if self.readyState != "live":
            return
        if self._awaiting_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                return
            self._awaiting_keyframe = False
        if len(self._frames) >= self._capacity:
            if self.kind == "video":
                self.frames_dropped += len(self._frames)
                self._frames.clear()
                if not frame.keyframe:
                    self.frames_dropped += 1
                    self._awaiting_keyframe = True
                    self._request_keyframe()
                    return
            else:
                self._frames.popleft()
                self.frames_dropped += 1
        self._frames.append(frame)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def recv(self) -> av.Packet[Any]:
        if not self._reading:
            # The sender starts reading once DTLS is up: the moment a keyframe is useful.
            self._reading = True
            if self._awaiting_keyframe:
                self._request_keyframe()
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            timeout = self._keyframe_retry_s if self._awaiting_keyframe else None
            try:
                await asyncio.wait_for(self._waiter, timeout)
            except TimeoutError:
                # The PLI or the keyframe itself may have been lost: ask again.
                if self._awaiting_keyframe:
                    self._request_keyframe()
            finally:
                self._waiter = None
        frame = self._frames.popleft()
        self.frames_forwarded += 1
        return frame.packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._frames.clear()
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)
            self._on_stop(self)
