"""MediaService: the anchor's WebRTC ingest and the encoded fan-out to viewers."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import OperationError

from ._aiortc import (
    check_aiortc_version,
    install_encoded_frame_tap,
    negotiated_codec,
    on_keyframe_request,
)
from ._broadcast import Broadcast, FrameTap, Viewer
from ._tracks import ForwardingTrack
from .exceptions import (
    InvalidOffer,
    MediaClosed,
    NotBroadcasting,
    NotLive,
    SeatsFull,
    UnsupportedCodec,
)

__all__ = ["MediaService"]

logger = logging.getLogger(__name__)

_FORWARDABLE_VIDEO = frozenset({"video/vp8", "video/h264"})
_MAX_SDP_CHARS = 64 * 1024
_MEDIA_LINE = re.compile(r"^m=(audio|video) ", re.MULTILINE)


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _validate_offer(sdp: object, type_: object) -> str:
    if type_ != "offer":
        raise InvalidOffer(f'type must be "offer", got {type_!r}')
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidOffer("sdp must be a non-empty string")
    if len(sdp) > _MAX_SDP_CHARS:
        raise InvalidOffer(f"sdp longer than {_MAX_SDP_CHARS} characters")
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidOffer("sdp does not start with v=0")
    return sdp


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _codec_preferences(kind: str, codec: Any) -> list[Any]:
    """Capabilities that pin a viewer's sender to exactly the broadcaster's codec (+ RTX)."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    mime = codec.mimeType.lower()
    same_mime = [c for c in capabilities if c.mimeType.lower() == mime]
    exact = [c for c in same_mime if c.parameters == codec.parameters]
    chosen = exact[:1] or same_mime[:1]
    rtx = [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]
    return chosen + rtx[:1]


class MediaService:
    """Owns every peer connection and background task of the relay in this process.

    ``on_change(room_id)`` is called (synchronously, keep it cheap) when a room's broadcast
    starts, first receives media, or ends, so the caller can push ``health(room_id)`` into the
    room state.
    """

    def __init__(
        self,
        ice_servers: Sequence[RTCIceServer] | Callable[[], Sequence[RTCIceServer]] = (),
        *,
        now_ms: Callable[[], int] = _wall_clock_ms,
        on_change: Callable[[str], None] | None = None,
        keyframe_interval_ms: int = 300,
        video_queue_frames: int = 60,
        audio_queue_frames: int = 50,
        health_window_ms: int = 2000,
        stale_after_ms: int = 3000,
        connect_timeout_s: float = 15.0,
        seats: int | None = None,
    ) -> None:
        check_aiortc_version()
        # An explicit (possibly empty) list: aiortc falls back to Google's STUN server on None.
        # A callable is asked for each new peer connection (short-lived TURN credentials).
        self._ice_servers: Callable[[], Sequence[RTCIceServer]]
        if callable(ice_servers):
            self._ice_servers = ice_servers
        else:
            fixed = tuple(ice_servers)
            self._ice_servers = lambda: fixed
        self._now_ms = now_ms
        self._on_change = on_change
        self._keyframe_interval_ms = keyframe_interval_ms
        self._video_queue_frames = video_queue_frames
        self._audio_queue_frames = audio_queue_frames
        self._health_window_ms = health_window_ms
        self._stale_after_ms = stale_after_ms
        # A viewer's peer connection that has not connected this long after its answer (ICE
        # never completed) is closed: each holds UDP ports and tasks until ICE gives up.
        self._connect_timeout_s = connect_timeout_s
        self.viewers_timed_out = 0
        # WebRTC viewers per broadcast; None: no limit.
        self._seats = seats
        self._broadcasts: dict[str, Broadcast] = {}
        self._pcs: set[RTCPeerConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    async def publish(
        self, room_id: str, publisher_id: str, sdp: str, type_: str
    ) -> tuple[str, str]:
        """Accept the anchor's offer; returns ``(answer_sdp, "answer")``.

        Replaces the room's current broadcast, whose viewers are disconnected (they watch
        again once ``health(room_id)["live"]`` is back).
        """
        self._assert_open()
        offer = _validate_offer(sdp, type_)
        pc = self._new_pc()
        try:
            await self._set_offer(pc, offer)
            codecs: dict[str, Any] = {}
            receivers: dict[str, Any] = {}
            for transceiver in pc.getTransceivers():
                if transceiver.kind in codecs or transceiver.receiver.track is None:
                    continue
                codec = negotiated_codec(transceiver)
                if codec is None:
                    continue
                if transceiver.kind == "video" and codec.mimeType.lower() not in _FORWARDABLE_VIDEO:
                    continue
                codecs[transceiver.kind] = codec
                receivers[transceiver.kind] = transceiver.receiver
            if not codecs:
                raise NotBroadcasting(room_id, "it sends neither VP8/H.264 video nor audio")
            broadcast = Broadcast(
                room_id,
                publisher_id,
                pc,
                codecs=codecs,
                video_receiver=receivers.get("video"),
                now_ms=self._now_ms,
                spawn=self._spawn,
                keyframe_interval_ms=self._keyframe_interval_ms,
                health_window_ms=self._health_window_ms,
            )
            for kind, receiver in receivers.items():
                install_encoded_frame_tap(receiver, partial(broadcast.on_frame, kind))
            answer = await self._answer(pc)
            self._assert_open()
        except BaseException:
            await self._close_pc(pc)
            raise
        broadcast.on_first_frame = partial(self._notify, room_id)
        pc.on("connectionstatechange", partial(self._publisher_state_changed, broadcast))
        previous = self._broadcasts.get(room_id)
        self._broadcasts[room_id] = broadcast
        if previous is not None:
            await self._end(previous, replaced=True)
        logger.info(
            "room %s: broadcast from %s with %s",
            room_id,
            publisher_id,
            {kind: codec.mimeType for kind, codec in codecs.items()},
        )
        self._notify(room_id)
        return answer

    async def watch(self, room_id: str, viewer_id: str, sdp: str, type_: str) -> tuple[str, str]:
        """Accept a viewer's (recvonly) offer; returns ``(answer_sdp, "answer")``.

        The same ``viewer_id`` watching again replaces its previous connection.
        """
        self._assert_open()
        offer = _validate_offer(sdp, type_)
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None:
            raise NotLive(room_id)
        if (self._seats is not None and viewer_id not in broadcast.viewers
                and len(broadcast.viewers) >= self._seats):
            raise SeatsFull(room_id, self._seats)
        offered_kinds = set(_MEDIA_LINE.findall(offer))
        kinds = [kind for kind in broadcast.codecs if kind in offered_kinds]
        if not kinds:
            raise InvalidOffer(
                f"the offer receives none of {sorted(broadcast.codecs)}, what room {room_id} sends"
            )
        pc = self._new_pc()
        viewer = Viewer(viewer_id, pc)
        try:
            transceivers = []
            for kind in kinds:
                codec = broadcast.codecs[kind]
                track = ForwardingTrack(
                    kind,
                    capacity=(
                        self._video_queue_frames if kind == "video" else self._audio_queue_frames
                    ),
                    request_keyframe=broadcast.request_keyframe,
                    on_stop=broadcast.detach,
                )
                transceiver = pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(_codec_preferences(kind, codec))
                if kind == "video":
                    on_keyframe_request(transceiver.sender, broadcast.request_keyframe)
                viewer.tracks[kind] = track
                transceivers.append(transceiver)
            try:
                await self._set_offer(pc, offer)
            except OperationError as exc:
                message = _describe(exc)
                for kind, codec in broadcast.codecs.items():
                    if f" {kind} " in message:
                        raise UnsupportedCodec(room_id, codec.mimeType) from exc
                raise InvalidOffer(message) from exc
            if any(transceiver.mid is None for transceiver in transceivers):
                raise InvalidOffer("the offer has no usable audio or video section")
            if self._broadcasts.get(room_id) is not broadcast:
                raise NotLive(room_id)
            for track in viewer.tracks.values():
                broadcast.attach(track)
            answer = await self._answer(pc)
            self._assert_open()
            if self._broadcasts.get(room_id) is not broadcast:
                raise NotLive(room_id)
        except BaseException:
            self._stop_tracks(viewer)
            await self._close_pc(pc)
            raise
        previous = broadcast.viewers.get(viewer_id)
        broadcast.viewers[viewer_id] = viewer
        pc.on("connectionstatechange", partial(self._viewer_state_changed, broadcast, viewer))
        if pc.connectionState != "connected":
            viewer.connect_deadline = asyncio.get_running_loop().call_later(
                self._connect_timeout_s, self._viewer_deadline_passed, broadcast, viewer)
        if previous is not None:
            await self._close_viewer(broadcast, previous)
        return answer

    async def stop(self, room_id: str) -> bool:
        """End the room's broadcast and close every peer connection of it at once."""
        broadcast = self._broadcasts.pop(room_id, None)
        if broadcast is None:
            return False
        await self._end(broadcast)
        self._notify(room_id)
        return True

    async def close_peer(self, peer_id: str) -> int:
        """A socket went away: close its broadcast(s) and viewer connections. Returns how many
        peer connections were closed."""
        closed = 0
        for room_id, broadcast in list(self._broadcasts.items()):
            if broadcast.publisher_id == peer_id:
                closed += 1 + len(broadcast.viewers)
                await self.stop(room_id)
                continue
            viewer = broadcast.viewers.get(peer_id)
            if viewer is not None:
                closed += 1
                await self._close_viewer(broadcast, viewer)
        return closed

    async def close_viewer(self, room_id: str, viewer_id: str) -> bool:
        """The viewer left the room (or was banned from it): close its connection to this
        room's broadcast at once, leaving any other room it watches alone. Returns whether
        there was one."""
        broadcast = self._broadcasts.get(room_id)
        viewer = None if broadcast is None else broadcast.viewers.get(viewer_id)
        if broadcast is None or viewer is None:
            return False
        await self._close_viewer(broadcast, viewer)
        return True

    def request_keyframe(self, room_id: str) -> None:
        """Ask the broadcaster for a keyframe (throttled; requests inside the interval are
        coalesced into one at its end)."""
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None:
            raise NotLive(room_id)
        broadcast.request_keyframe()

    def tap(self, room_id: str, tap: FrameTap) -> str | None:
        """Hand every frame of the room's current broadcast to ``tap`` too, until it ends
        (``tap.on_end``). Returns the broadcast's video codec (``video/H264``...), None when
        it sends no video. Raises ``NotLive`` when there is no broadcast."""
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None:
            raise NotLive(room_id)
        broadcast.taps.append(tap)
        video = broadcast.codecs.get("video")
        return None if video is None else str(video.mimeType)

    def health(self, room_id: str) -> dict[str, Any]:
        """``{live, bitrate_kbps, fps, viewers, seats, codec, audio_codec, since_ms}``
        (``seats``: WebRTC viewers allowed, None for no limit).

        ``live`` means a broadcast is published and media reached the relay within
        ``stale_after_ms``; rates are measured over the last ``health_window_ms``.
        """
        broadcast = self._broadcasts.get(room_id)
        if broadcast is None:
            return {
                "live": False,
                "bitrate_kbps": 0,
                "fps": 0.0,
                "viewers": 0,
                "seats": self._seats,
                "codec": None,
                "audio_codec": None,
                "since_ms": None,
            }
        now = self._now_ms()
        last = broadcast.last_frame_ms
        kbps, fps = broadcast.rates()
        video = broadcast.codecs.get("video")
        audio = broadcast.codecs.get("audio")
        return {
            "live": last is not None and now - last <= self._stale_after_ms,
            "bitrate_kbps": round(kbps),
            "fps": round(fps, 1),
            "viewers": len(broadcast.viewers),
            "seats": self._seats,
            "codec": video.mimeType if video is not None else None,
            "audio_codec": audio.mimeType if audio is not None else None,
            "since_ms": broadcast.started_ms,
        }

    def viewer_ids(self, room_id: str) -> list[str]:
        broadcast = self._broadcasts.get(room_id)
        return [] if broadcast is None else list(broadcast.viewers)

    @property
    def ice_servers(self) -> tuple[RTCIceServer, ...]:
        """The ICE servers a new peer connection of the relay uses (none by default)."""
        return tuple(self._ice_servers())

    @property
    def peer_connection_count(self) -> int:
        return len(self._pcs)

    async def close(self) -> None:
        """Close every broadcast, peer connection and background task."""
        self._closed = True
        for room_id in list(self._broadcasts):
            await self.stop(room_id)
        for pc in list(self._pcs):
            await self._close_pc(pc)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals --------------------------------------------------------------------------

    def _assert_open(self) -> None:
        if self._closed:
            raise MediaClosed()

    def _new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self._ice_servers())))
        self._pcs.add(pc)
        return pc

    async def _set_offer(self, pc: RTCPeerConnection, sdp: str) -> None:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except OperationError:
            raise
        except Exception as exc:  # aiortc's parser raises ValueError, KeyError, IndexError...
            raise InvalidOffer(_describe(exc)) from exc

    async def _answer(self, pc: RTCPeerConnection) -> tuple[str, str]:
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise InvalidOffer(f"cannot answer: {_describe(exc)}") from exc
        description = pc.localDescription
        return str(description.sdp), str(description.type)

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        finally:
            self._pcs.discard(pc)

    def _stop_tracks(self, viewer: Viewer) -> None:
        for track in viewer.tracks.values():
            track.stop()

    async def _close_viewer(self, broadcast: Broadcast, viewer: Viewer) -> None:
        if broadcast.viewers.get(viewer.viewer_id) is viewer:
            del broadcast.viewers[viewer.viewer_id]
        viewer.cancel_deadline()
        self._stop_tracks(viewer)
        await self._close_pc(viewer.pc)

    async def _end(self, broadcast: Broadcast, replaced: bool = False) -> None:
        broadcast.close(replaced)
        viewers = list(broadcast.viewers.values())
        broadcast.viewers.clear()
        for viewer in viewers:
            viewer.cancel_deadline()
            self._stop_tracks(viewer)
        await asyncio.gather(
            self._close_pc(broadcast.pc), *(self._close_pc(viewer.pc) for viewer in viewers)
        )
        logger.info("room %s: broadcast ended, %d viewers closed", broadcast.room_id, len(viewers))

    def _publisher_state_changed(self, broadcast: Broadcast) -> None:
        if (
            broadcast.pc.connectionState in ("failed", "closed")
            and self._broadcasts.get(broadcast.room_id) is broadcast
        ):
            self._spawn(self.stop(broadcast.room_id))

    def _viewer_state_changed(self, broadcast: Broadcast, viewer: Viewer) -> None:
        state = viewer.pc.connectionState
        if state == "connected":
            viewer.cancel_deadline()
        elif state in ("failed", "closed") and broadcast.viewers.get(viewer.viewer_id) is viewer:
            self._spawn(self._close_viewer(broadcast, viewer))

    def _viewer_deadline_passed(self, broadcast: Broadcast, viewer: Viewer) -> None:
        viewer.connect_deadline = None
        if (
            viewer.pc.connectionState != "connected"
            and broadcast.viewers.get(viewer.viewer_id) is viewer
        ):
            self.viewers_timed_out += 1
            logger.info(
                "room %s: viewer %s not connected within %g s; closed",
                broadcast.room_id, viewer.viewer_id, self._connect_timeout_s,
            )
            self._spawn(self._close_viewer(broadcast, viewer))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media task failed", exc_info=task.exception())

    def _notify(self, room_id: str) -> None:
        if self._on_change is not None:
            try:
                self._on_change(room_id)
            except Exception:
                logger.exception("media on_change callback failed for room %s", room_id)
