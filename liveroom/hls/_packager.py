"""One LL-HLS packager per live room, in the process that owns the room's broadcast.

``HlsPackagers`` listens to the relay's changes: when a room starts broadcasting H.264 it taps
the broadcast's frames into a new ``RoomPackager``, whose task segments them and writes the
output to Redis (``HlsStore``). When the broadcast ends the packager flushes the open segment;
if the room's anchor published again (``replaced``) the next packager resumes the numbering
after a discontinuity, otherwise the playlist is removed. A packager whose process died leaves
its model in Redis for ``keys.STREAM_TTL_S``; the next publish resumes it the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..media import EncodedFrame, MediaService, NotLive
from ._playlist import Playlist
from ._recorder import RecordedSegment, Recorder
from ._segmenter import InitOut, Output, Segmenter, SegmentOut
from ._store import HlsStore
from ._transcode import Vp8ToH264

__all__ = ["HlsConfig", "HlsPackagers", "RoomPackager"]

log = logging.getLogger("liveroom.hls")
H264 = "video/h264"
VP8 = "video/vp8"
PACKAGED = frozenset({H264, VP8})
OPUS = "audio/opus"


@dataclass(frozen=True, slots=True)
class HlsConfig:
    part_target_ms: int = 300
    segment_min_ms: int = 800
    target_duration_s: int = 2
    window: int = 6
    # Frames waiting for the packager's task; beyond it frames are dropped (and counted).
    queue_frames: int = 600

    def new_playlist(self) -> Playlist:
        return Playlist(secrets.token_hex(4), part_target_ms=self.part_target_ms,
                        target_duration_s=self.target_duration_s, window=self.window)

    def segmenter(self, playlist: Playlist, audio: bool = False) -> Segmenter:
        # The part target is declared a little above the cut point: a part ends at the first
        # frame at or after part_target_ms, so it may run a frame over.
        return Segmenter(playlist, part_target_ms=self.part_target_ms,
                         segment_min_ms=self.segment_min_ms,
                         segment_max_ms=(self.target_duration_s * 1000) + 499, audio=audio)


_END = object()


class RoomPackager:
    """The ``FrameTap`` of one broadcast; its task does the muxing and the writes."""

    def __init__(self, room_id: str, store: HlsStore, config: HlsConfig,
                 request_keyframe: Callable[[], None],
                 previous: asyncio.Task[None] | None, *, audio: bool = False,
                 recorder: Recorder | None = None,
                 should_record: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self.room_id = room_id
        self._recorder = recorder
        self._should_record = should_record
        self.recording = False
        # The broadcast sends Opus: packaged as AAC next to the video.
        self.audio = audio
        self._store = store
        self._config = config
        self._request_keyframe = request_keyframe
        self._previous = previous
        # Bounded by on_frame, not by the queue: the end must always get in.
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self.frames_dropped = 0
        self.replaced = False
        # Made on the first VP8 frame: one decode and one H.264 encode for the room.
        self.transcoder: Vp8ToH264 | None = None
        self._last_rtp: int | None = None
        self._unwrapped = 0
        self.task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            self._run(), name=f"hls packager {room_id}")

    # FrameTap
    def on_frame(self, frame: EncodedFrame) -> None:
        if frame.kind == "audio":
            if not self.audio or frame.mime_type.lower() != OPUS:
                return
        elif frame.mime_type.lower() not in PACKAGED:
            return
        if self._queue.qsize() >= self._config.queue_frames:
            self.frames_dropped += 1
            return
        self._queue.put_nowait(frame)

    def on_end(self, replaced: bool) -> None:
        self.replaced = replaced
        self._queue.put_nowait(_END)

    async def _run(self) -> None:
        if self._previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._previous
        if self._recorder is not None and self._should_record is not None:
            try:
                self.recording = await self._should_record(self.room_id)
            except Exception:
                log.warning("room %s: cannot tell whether to record; not recording",
                            self.room_id, exc_info=True)
        playlist = await self._resume()
        segmenter = self._config.segmenter(playlist, self.audio)
        while True:
            item = await self._queue.get()
            if item is _END:
                await self._write(playlist, segmenter.finish())
                if not self.replaced:
                    await self._store.remove(self.room_id)
                    if self.recording and self._recorder is not None:
                        await self._recorder.finish(self.room_id)
                return
            assert isinstance(item, EncodedFrame)
            try:
                if item.kind == "audio":
                    outputs = segmenter.push_audio(bytes(item.packet), item.received_ms)
                elif item.mime_type.lower() == VP8:
                    outputs = await self._transcode(item, segmenter)
                else:
                    outputs = segmenter.push(bytes(item.packet), int(item.packet.pts or 0),
                                             item.keyframe, item.received_ms)
            except Exception:
                log.exception("room %s: a frame did not mux; waiting for a keyframe",
                              self.room_id)
                outputs = segmenter.finish()
                playlist.discontinue(new_init=True)
                segmenter = self._config.segmenter(playlist, self.audio)
            if item.kind != "video":
                pass
            elif self.transcoder is None:
                if segmenter.wants_keyframe:
                    self._request_keyframe()
            elif self.transcoder.needs_source_keyframe:
                self._request_keyframe()
            await self._write(playlist, outputs)

    async def _transcode(self, frame: EncodedFrame, segmenter: Segmenter) -> list[Output]:
        if self.transcoder is None:
            self.transcoder = Vp8ToH264()
        rtp = int(frame.packet.pts or 0)
        if self._last_rtp is not None:
            delta = (rtp - self._last_rtp) & 0xFFFFFFFF
            self._unwrapped += 0 if delta >= 0x80000000 else delta
        self._last_rtp = rtp
        units = await asyncio.to_thread(self.transcoder.push, bytes(frame.packet),
                                        self._unwrapped, segmenter.keyframe_due)
        outputs: list[Output] = []
        for data, pts, keyframe in units:
            outputs += segmenter.push(data, pts & 0xFFFFFFFF, keyframe, frame.received_ms)
        return outputs

    async def _resume(self) -> Playlist:
        try:
            state = await self._store.load(self.room_id)
        except Exception:
            log.warning("room %s: cannot read the previous playlist", self.room_id,
                        exc_info=True)
            state = None
        if state is None:
            return self._config.new_playlist()
        config = self._config
        playlist = Playlist.from_json(state, part_target_ms=config.part_target_ms,
                                      target_duration_s=config.target_duration_s,
                                      window=config.window)
        outputs: list[Output] = []
        segment = playlist.open_segment
        if segment is not None:
            # Its parts are in Redis: close it from them, so no number is left dangling.
            chunks = []
            for index in range(len(segment.parts)):
                chunk = await self._store.part_bytes(self.room_id, playlist.stream_id,
                                                     segment.msn, index)
                chunks.append(chunk or b"")
            closed = playlist.end_segment()
            if closed is not None:
                outputs.append(SegmentOut(closed.msn, b"".join(chunks)))
        playlist.discontinue(new_init=True)
        log.info("room %s: resuming LL-HLS at segment %d after a discontinuity",
                 self.room_id, playlist.next_msn)
        await self._write(playlist, outputs)
        return playlist

    async def _write(self, playlist: Playlist, outputs: list[Output]) -> None:
        if not outputs:
            return
        try:
            await self._store.write(self.room_id, playlist, outputs)
        except Exception:
            # The next part's write carries the playlist again; this part is lost to players.
            log.warning("room %s: LL-HLS write failed", self.room_id, exc_info=True)
        if self.recording:
            await self._record(playlist, outputs)

    async def _record(self, playlist: Playlist, outputs: list[Output]) -> None:
        recorder = self._recorder
        assert recorder is not None
        try:
            for out in outputs:
                if isinstance(out, InitOut):
                    await recorder.init(self.room_id, playlist.names.init(out.gen), out.data)
                elif isinstance(out, SegmentOut):
                    segment = playlist.segment(out.msn)
                    if segment is None or segment.duration_ms is None:
                        continue
                    await recorder.segment(self.room_id, RecordedSegment(
                        playlist.stream_id, segment.msn, segment.gen, segment.start_ms,
                        segment.duration_ms), out.data)
        except OSError:
            # A full disk costs the replay this segment, never the live stream.
            log.warning("room %s: recording failed", self.room_id, exc_info=True)


class HlsPackagers:
    """Owner of every room's packager in this process (registered with the Lifecycle)."""

    def __init__(self, media: MediaService, store: HlsStore,
                 config: HlsConfig | None = None, *, recorder: Recorder | None = None,
                 should_record: Callable[[str], Awaitable[bool]] | None = None) -> None:
        self._media = media
        self._store = store
        self._recorder = recorder
        self._should_record = should_record
        self._config = config or HlsConfig()
        self._packagers: dict[str, RoomPackager] = {}
        self._finishing: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    def packager(self, room_id: str) -> RoomPackager | None:
        return self._packagers.get(room_id)

    def changed(self, room_id: str) -> None:
        """The relay's ``on_change``: a broadcast started, first sent media, or ended."""
        if self._closed or room_id in self._packagers:
            return
        health = self._media.health(room_id)
        if health["codec"] is None:
            return
        audio = str(health["audio_codec"] or "").lower() == OPUS
        packager = RoomPackager(room_id, self._store, self._config,
                                lambda: self._keyframe(room_id),
                                self._finishing.get(room_id), audio=audio,
                                recorder=self._recorder, should_record=self._should_record)
        codec = self._media.tap(room_id, _Tap(self, packager))
        if codec is None or codec.lower() not in PACKAGED:
            packager.on_end(False)
            log.info("room %s: no LL-HLS (the anchor sends %s)", room_id, codec)
        elif codec.lower() == VP8:
            log.info("room %s: LL-HLS transcodes the anchor's VP8 to H.264", room_id)
        self._packagers[room_id] = packager

    def _ended(self, packager: RoomPackager) -> None:
        if self._packagers.get(packager.room_id) is packager:
            del self._packagers[packager.room_id]
        self._finishing[packager.room_id] = packager.task
        packager.task.add_done_callback(lambda task: self._done(packager.room_id, task))

    def _done(self, room_id: str, task: asyncio.Task[None]) -> None:
        if self._finishing.get(room_id) is task:
            del self._finishing[room_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("room %s: LL-HLS packager failed", room_id, exc_info=task.exception())

    def _keyframe(self, room_id: str) -> None:
        with contextlib.suppress(NotLive):
            self._media.request_keyframe(room_id)

    async def close(self) -> None:
        self._closed = True
        tasks = [packager.task for packager in self._packagers.values()]
        tasks += list(self._finishing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._packagers.clear()


class _Tap:
    def __init__(self, owner: HlsPackagers, packager: RoomPackager) -> None:
        self._owner = owner
        self._packager = packager

    def on_frame(self, frame: EncodedFrame) -> None:
        self._packager.on_frame(frame)

    def on_end(self, replaced: bool) -> None:
        self._packager.on_end(replaced)
        self._owner._ended(self._packager)
