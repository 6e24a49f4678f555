"""Media relay benchmark: viewers per core at 640x480, 30 fps, ~1 Mbps VP8 (+ Opus).

Three kinds of process, so the relay's CPU is measured alone:
  relay       MediaService (or, with --reencode, aiortc's MediaRelay, which encodes per viewer)
              behind a one-line-JSON signaling socket on 127.0.0.1;
  broadcaster one aiortc peer publishing a PRE-ENCODED 640x480 30 fps ~1 Mbps VP8 + Opus stream,
              looped from memory: no encoder runs during the benchmark;
  viewers     N aiortc peers spread over --viewer-procs processes. By default (--viewer-mode rtp)
              they count complete video frames straight from the decrypted RTP (contiguous
              sequence numbers up to the marker bit), skipping aiortc's parser, jitter buffer and
              decoder; --viewer-mode frames counts frames out of aiortc's jitter buffer instead.

The relay is pinned to --relay-cpu and every client to --client-cpus, so the relay's CPU% is a
share of its own core. The stream is encoded once with PyAV into a cached temporary .webm file.

Usage: python -m benchmarks.bench_media --viewers 40 80 120 [--reencode 2 4] [--seconds 10]
       [--warmup 5] [--viewer-procs 4] [--viewer-mode rtp|frames] [--relay-cpu 0]
       [--client-cpus 1] [--nice -10] [--stream FILE.webm] [--ingest-rcvbuf BYTES]
Prints one JSON line per run and a markdown table; docs/media.md records the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Any

from loadtests import _procstats as procstats

MIN_FPS = 29.0

WIDTH, HEIGHT, FPS = 640, 480, 30
VIDEO_BITRATE = 1_000_000
AUDIO_BITRATE = 32_000
KEYFRAME_INTERVAL = 60  # frames: with packets pre-encoded a PLI cannot force one
STREAM_SECONDS = 20
MAX_LAG_S = 0.2  # the broadcaster never catches up more than this after a stall
_STREAM_VERSION = 1  # bump when the generated content changes, to invalidate the cache


def process_cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used; the benchmark's processes must all still run."""
    used = procstats.cpu_seconds(pid)
    if used is None:
        raise RuntimeError(f"process {pid} exited during the benchmark")
    return used


def cpu_busy_ticks() -> dict[int, tuple[int, int]]:
    """cpu index -> (busy ticks, total ticks) from /proc/stat, for every core."""
    result: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *values = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]
            result[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return result


def udp_receive_buffer_errors() -> int:
    """System-wide count of UDP datagrams dropped because a socket's receive buffer was full."""
    with open("/proc/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def udp_drops_by_process(pids: Sequence[int]) -> list[int]:
    """For each pid, datagrams its UDP sockets dropped (``drops`` in /proc/net/udp{,6})."""
    drops_by_inode: dict[str, int] = {}
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                drops_by_inode[fields[9]] = int(fields[12])
    result = []
    for pid in pids:
        total = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                total += drops_by_inode.get(target[8:-1], 0)
        result.append(total)
    return result


def _place(cpus: Sequence[int], nice: int) -> None:
    """Pin the calling process to ``cpus`` and set its nice value."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


# -- the pre-encoded stream -------------------------------------------------------------------


@dataclass(frozen=True)
class StreamInfo:
    path: str
    seconds: float
    video_frames: int
    video_fps: float
    video_kbps: float
    keyframes: int
    audio_packets: int
    audio_kbps: float


def _texture(width: int, height: int, seed: int) -> bytes:
    """Smooth shapes plus fine detail and grain: something a VP8 encoder must really work for."""
    rnd = random.Random(seed)
    pixels = bytearray(width * height)
    for y in range(height):
        for x in range(width):
            value = (
                128
                + 55 * math.sin(x / 23 + y / 37)
                + 35 * math.sin(x / 7.0) * math.cos(y / 11.0)
                + rnd.randint(-12, 12)
            )
            pixels[y * width + x] = max(0, min(255, int(value)))
    return bytes(pixels)


def _bounce(step: int, span: int, speed: int) -> int:
    position = (step * speed) % (2 * span)
    return position if position < span else 2 * span - position


def encode_stream(path: str, seconds: int = STREAM_SECONDS) -> None:
    """Write a 640x480 30 fps VP8 (~1 Mbps, keyframe every 2 s) + Opus .webm to ``path``.

    The picture is a textured background panning diagonally with a bright square moving across
    it, so P-frames carry real motion, like a camera pan, not a static or noise-only picture.
    """
    import av

    pad_x, pad_y = 256, 192
    texture_w, texture_h = WIDTH + pad_x, HEIGHT + pad_y
    luma = _texture(texture_w, texture_h, seed=7)
    chroma_w, chroma_h = texture_w // 2, texture_h // 2
    chroma_u = bytes(
        max(0, min(255, int(128 + 40 * math.sin(x / 19 + y / 13))))
        for y in range(chroma_h)
        for x in range(chroma_w)
    )
    chroma_v = bytes(
        max(0, min(255, int(128 + 40 * math.cos(x / 17 - y / 29))))
        for y in range(chroma_h)
        for x in range(chroma_w)
    )
    tone = b"".join(
        int(8000 * math.sin(2 * math.pi * 440 * k / 48_000)).to_bytes(2, "little", signed=True)
        for k in range(48_000)
    )

    partial = path + ".part"
    output = av.open(partial, "w", format="webm")
    video = output.add_stream("libvpx", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.bit_rate = VIDEO_BITRATE
    video.codec_context.gop_size = KEYFRAME_INTERVAL
    video.options = {"deadline": "good", "cpu-used": "4", "lag-in-frames": "0"}
    audio = output.add_stream("libopus", rate=48_000)
    audio.layout = "mono"
    audio.bit_rate = AUDIO_BITRATE

    audio_samples = 0
    square = 96
    for index in range(FPS * seconds):
        ox, oy = _bounce(index, pad_x, 3), _bounce(index, pad_y, 2)
        rows = [
            luma[(oy + y) * texture_w + ox : (oy + y) * texture_w + ox + WIDTH]
            for y in range(HEIGHT)
        ]
        sx, sy = _bounce(index, WIDTH - square, 7), _bounce(index, HEIGHT - square, 5)
        for y in range(sy, sy + square):
            rows[y] = rows[y][:sx] + b"\xf0" * square + rows[y][sx + square :]
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(b"".join(rows))
        cx, cy = ox // 2, oy // 2
        for plane, source in ((frame.planes[1], chroma_u), (frame.planes[2], chroma_v)):
            plane.update(
                b"".join(
                    source[(cy + y) * chroma_w + cx : (cy + y) * chroma_w + cx + WIDTH // 2]
                    for y in range(HEIGHT // 2)
                )
            )
        frame.pts, frame.time_base = index, Fraction(1, FPS)
        for packet in video.encode(frame):
            output.mux(packet)
        while audio_samples < (index + 1) * 48_000 // FPS:
            chunk = av.AudioFrame(format="s16", layout="mono", samples=960)
            offset = (audio_samples % 48_000) * 2
            chunk.planes[0].update(tone[offset : offset + 960 * 2])
            chunk.sample_rate, chunk.pts = 48_000, audio_samples
            chunk.time_base = Fraction(1, 48_000)
            for packet in audio.encode(chunk):
                output.mux(packet)
            audio_samples += 960
    for stream in (video, audio):
        for packet in stream.encode():
            output.mux(packet)
    output.close()
    os.replace(partial, path)


def inspect_stream(path: str) -> StreamInfo:
    """Measure what the file really holds: frame rate, bitrates, keyframes."""
    import av

    video_frames = video_bytes = keyframes = audio_packets = audio_bytes = 0
    last_video_pts = 0.0
    with av.open(path) as container:
        for packet in container.demux():
            if not packet.size or packet.pts is None:
                continue
            if packet.stream.type == "video":
                video_frames += 1
                video_bytes += packet.size
                keyframes += int(packet.is_keyframe)
                last_video_pts = float(packet.pts * packet.time_base)
            elif packet.stream.type == "audio":
                audio_packets += 1
                audio_bytes += packet.size
    seconds = video_frames / FPS
    return StreamInfo(
        path=path,
        seconds=seconds,
        video_frames=video_frames,
        video_fps=round((video_frames - 1) / last_video_pts, 2) if last_video_pts else 0.0,
        video_kbps=round(video_bytes * 8 / 1000 / seconds, 1),
        keyframes=keyframes,
        audio_packets=audio_packets,
        audio_kbps=round(audio_bytes * 8 / 1000 / seconds, 1),
    )


def prepare_stream(path: str | None) -> StreamInfo:
    if path is None:
        path = os.path.join(
            tempfile.gettempdir(),
            f"liveroom-bench-{WIDTH}x{HEIGHT}-{FPS}fps-"
            f"{VIDEO_BITRATE // 1000}k-v{_STREAM_VERSION}.webm",
        )
    if not os.path.exists(path):
        started = time.monotonic()
        encode_stream(path)
        print(f"# encoded {path} once in {time.monotonic() - started:.1f} s", flush=True)
    return inspect_stream(path)


# -- relay ------------------------------------------------------------------------------------


def _grow_receive_buffers(pc: Any, size: int) -> None:
    import socket

    from liveroom.media._aiortc import udp_sockets

    for sock in udp_sockets(pc):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


async def _relay_main(conn: Connection, reencode: bool, ingest_rcvbuf: int) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    from liveroom.media import MediaService
    from liveroom.media._aiortc import hold_video_bitrate

    # Hundreds of viewers connect at once on a busy machine: the 15 s limit on a viewer's ICE
    # (meant for peers that never finish it) must not cut slow ones out of the measurement.
    service = MediaService(ice_servers=[], connect_timeout_s=3600.0)
    source_tracks: dict[str, Any] = {}
    relay = MediaRelay()
    pcs: list[Any] = []

    async def reencode_publish(sdp: str) -> tuple[str, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)

        @pc.on("track")
        def on_track(track: Any) -> None:
            source_tracks[track.kind] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp, pc.localDescription.type

    async def reencode_watch(sdp: str) -> tuple[str, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        for kind in ("video", "audio"):
            # one decode of the source (MediaRelay), then one encode per viewer
            pc.addTrack(relay.subscribe(source_tracks[kind], buffered=False))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        # Re-encoding viewers get the same ~1 Mbps as forwarded ones (aiortc would start each
        # encoder at its default bitrate and follow the viewer's REMB).
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "video":
                hold_video_bitrate(transceiver, VIDEO_BITRATE)
        return pc.localDescription.sdp, pc.localDescription.type

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        if request["op"] == "publish":
            if reencode:
                sdp, type_ = await reencode_publish(request["sdp"])
            else:
                sdp, type_ = await service.publish("r_bench", "anchor", request["sdp"], "offer")
                if ingest_rcvbuf:
                    _grow_receive_buffers(service._broadcasts["r_bench"].pc, ingest_rcvbuf)
        else:
            if reencode:
                sdp, type_ = await reencode_watch(request["sdp"])
            else:
                sdp, type_ = await service.watch("r_bench", request["id"], request["sdp"], "offer")
        writer.write(json.dumps({"sdp": sdp, "type": type_}).encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    conn.send(server.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "health":
            health = dict(service.health("r_bench"))
            broadcast = service._broadcasts.get("r_bench")
            if broadcast is not None:
                # cumulative since each viewer joined: frames skipped while waiting for a
                # keyframe (at start, or after its queue overflowed) and PLIs sent upstream
                tracks = [t for v in broadcast.viewers.values() for t in v.tracks.values()]
                health["relay_dropped"] = sum(t.frames_dropped for t in tracks)
                health["keyframe_requests"] = broadcast.keyframes.requests_sent
            conn.send(health)
        elif command == "stop":
            break
    server.close()
    for pc in pcs:
        await pc.close()
    await service.close()


def relay_process(
    conn: Connection, reencode: bool, ingest_rcvbuf: int, cpus: list[int], nice: int
) -> None:
    _place(cpus, nice)
    asyncio.run(_relay_main(conn, reencode, ingest_rcvbuf))


async def _signal(port: int, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    answer: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    return answer


# -- broadcaster ------------------------------------------------------------------------------


async def _broadcaster_main(port: int, stream_path: str, conn: Connection) -> None:
    import av
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamTrack

    # aiortc's MediaPlayer(path, decode=False) hands the same demuxed av.Packets to the sender,
    # but its loop=True is unusable here (aiortc 1.16): after the first pass the pts restart at
    # 0 and its pacing, anchored to the first pass, stops waiting, so it floods thousands of
    # frames per second. So the packets are demuxed once into memory and replayed with pts that
    # keep increasing and a wall-clock pace, exactly as a live encoder would deliver them.
    packets: dict[str, list[tuple[int, bytes]]] = {"video": [], "audio": []}
    with av.open(stream_path) as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None:
                ms = int(packet.pts * packet.time_base * 1000)
                packets[packet.stream.type].append((ms, bytes(packet)))
    first_ms = min(packets["video"][0][0], packets["audio"][0][0])
    loop_ms = len(packets["video"]) * 1000 // FPS
    started: list[float] = []
    video_sent = [0]

    class LoopingPacketTrack(MediaStreamTrack):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind
            self._items = packets[kind]
            self._index = 0

        async def recv(self) -> av.Packet[Any]:
            loops, position = divmod(self._index, len(self._items))
            ms, data = self._items[position]
            pts = ms - first_ms + loops * loop_ms
            loop = asyncio.get_running_loop()
            if not started:
                started.append(loop.time())
            delay = started[0] + pts / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -MAX_LAG_S:
                # A live encoder that was starved drops the time it lost, it does not send a
                # burst of stale frames: shift the timeline instead of catching up.
                started[0] -= delay
            self._index += 1
            if self.kind == "video":
                video_sent[0] += 1
            packet = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = Fraction(1, 1000)
            return packet

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind, mime in (("video", "video/VP8"), ("audio", "audio/opus")):
        transceiver = pc.addTransceiver(LoopingPacketTrack(kind), direction="sendonly")
        codecs = RTCRtpSender.getCapabilities(kind).codecs
        transceiver.setCodecPreferences(
            [c for c in codecs if c.mimeType.lower() in (mime.lower(), f"{kind}/rtx")]
        )
    await pc.setLocalDescription(await pc.createOffer())
    answer = await _signal(port, {"op": "publish", "sdp": pc.localDescription.sdp})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, conn.recv) == "sample":
        conn.send(video_sent[0])
    await pc.close()


def broadcaster_process(
    port: int, stream_path: str, conn: Connection, cpus: list[int], nice: int
) -> None:
    _place(cpus, nice)
    asyncio.run(_broadcaster_main(port, stream_path, conn))


# -- viewers ----------------------------------------------------------------------------------


class RtpFrameCounter:
    """Counts complete video frames from decrypted RTP: a frame counts when its marker packet
    arrives and every packet since the previous frame's last one arrived, in order (no gap in
    sequence numbers, one RTP timestamp). Audio packets are counted as they come."""

    def __init__(self, video_payload_types: set[int]) -> None:
        self._video_payload_types = video_payload_types
        self.video_frames = 0
        self.audio_packets = 0
        self.broken_frames = 0
        self._expected_seq: int | None = None
        self._timestamp: int | None = None
        self._frame_intact = False

    def on_rtp(self, data: bytes) -> None:
        if len(data) < 12:
            return
        payload_type = data[1] & 0x7F
        if payload_type not in self._video_payload_types:
            self.audio_packets += 1
            return
        seq = (data[2] << 8) | data[3]
        timestamp = int.from_bytes(data[4:8], "big")
        in_order = seq == self._expected_seq
        if timestamp != self._timestamp:
            # first packet of a new frame: intact so far only if nothing was lost before it
            self._timestamp = timestamp
            self._frame_intact = in_order or self._expected_seq is None
        elif not in_order:
            self._frame_intact = False
        self._expected_seq = (seq + 1) & 0xFFFF
        if data[1] & 0x80:
            if self._frame_intact:
                self.video_frames += 1
            else:
                self.broken_frames += 1
            self._frame_intact = True


async def _viewers_main(port: int, first: int, count: int, mode: str, conn: Connection) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from liveroom.media._aiortc import (
        install_encoded_frame_tap,
        negotiated_codec,
        receive_rtp_with,
    )

    counters: list[RtpFrameCounter] = []
    frames = [0] * count
    pcs = []

    for index in range(count):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await _signal(
            port, {"op": "watch", "id": f"u_{first + index}", "sdp": pc.localDescription.sdp}
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        if mode == "rtp":
            codec = negotiated_codec(video)
            assert codec is not None
            counter = RtpFrameCounter({codec.payloadType})
            counters.append(counter)

            async def handle_rtp_data(
                data: bytes, arrival_time_ms: int, counter: RtpFrameCounter = counter
            ) -> None:
                counter.on_rtp(data)

            # Replaces RTP parsing, routing, jitter buffering and decoding for this peer;
            # SRTP is still decrypted.
            receive_rtp_with(pc, handle_rtp_data)
        else:

            def count_frame(codec: Any, timestamp: int, data: bytes, index: int = index) -> None:
                frames[index] += 1

            install_encoded_frame_tap(video.receiver, count_frame)
        pcs.append(pc)
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "sample":
            if mode == "rtp":
                conn.send([(c.video_frames, c.audio_packets, c.broken_frames) for c in counters])
            else:
                conn.send([(n, 0, 0) for n in frames])
        elif command == "stop":
            break
    for pc in pcs:
        await pc.close()


def viewers_process(
    port: int, first: int, count: int, mode: str, conn: Connection, cpus: list[int], nice: int
) -> None:
    _place(cpus, nice)
    asyncio.run(_viewers_main(port, first, count, mode, conn))


# -- driver -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    relay_cpus: list[int]
    client_cpus: list[int]
    nice: int
    ingest_rcvbuf: int = 0


def run(
    viewers: int,
    seconds: float,
    warmup: float,
    reencode: bool,
    viewer_procs: int,
    mode: str,
    stream: StreamInfo,
    placement: Placement,
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    relay_conn, relay_child = ctx.Pipe()
    relay = ctx.Process(
        target=relay_process,
        args=(relay_child, reencode, placement.ingest_rcvbuf, placement.relay_cpus, placement.nice),
    )
    relay.start()
    port = relay_conn.recv()
    print(f"# relay pid {relay.pid}", flush=True)  # for py-spy
    bcast_conn, bcast_child = ctx.Pipe()
    broadcaster = ctx.Process(
        target=broadcaster_process,
        args=(port, stream.path, bcast_child, placement.client_cpus, placement.nice),
    )
    broadcaster.start()
    time.sleep(3)  # connected and sending
    groups = []
    per_proc = -(-viewers // viewer_procs)
    for first in range(0, viewers, per_proc):
        conn, child = ctx.Pipe()
        n = min(per_proc, viewers - first)
        proc = ctx.Process(
            target=viewers_process,
            args=(port, first, n, mode, child, placement.client_cpus, placement.nice),
        )
        proc.start()
        groups.append((proc, conn))
    for _, conn in groups:
        assert conn.recv() == "ready"
    time.sleep(warmup)  # ICE, DTLS, first keyframe (one every 2 s in the stream)

    def sample() -> list[tuple[int, int, int]]:
        counts: list[tuple[int, int, int]] = []
        for _, conn in groups:
            conn.send("sample")
            counts.extend(tuple(c) for c in conn.recv())
        return counts

    assert relay.pid is not None
    assert broadcaster.pid is not None
    client_pids = [broadcaster.pid, *(p.pid for p, _ in groups if p.pid is not None)]
    relay_cpu_start = process_cpu_s(relay.pid)
    client_cpu_start = sum(process_cpu_s(pid) for pid in client_pids)
    cores_start, load_start = cpu_busy_ticks(), os.getloadavg()[0]
    udp_drops_start = udp_receive_buffer_errors()
    broadcaster_cpu_start = process_cpu_s(broadcaster.pid)
    socket_drops_start = udp_drops_by_process([relay.pid, *client_pids])
    bcast_conn.send("sample")
    wall_start, counts_start, sent_start = time.monotonic(), sample(), bcast_conn.recv()
    time.sleep(seconds)
    relay_cpu_end = process_cpu_s(relay.pid)
    client_cpu_end = sum(process_cpu_s(pid) for pid in client_pids)
    cores_end = cpu_busy_ticks()
    udp_drops = udp_receive_buffer_errors() - udp_drops_start
    broadcaster_cpu = process_cpu_s(broadcaster.pid) - broadcaster_cpu_start
    socket_drops = [
        b - a
        for a, b in zip(
            socket_drops_start, udp_drops_by_process([relay.pid, *client_pids]), strict=True
        )
    ]
    bcast_conn.send("sample")
    wall_end, counts_end, sent_end = time.monotonic(), sample(), bcast_conn.recv()
    wall = wall_end - wall_start
    fps = [(b[0] - a[0]) / wall for a, b in zip(counts_start, counts_end, strict=True)]
    audio_pps = [(b[1] - a[1]) / wall for a, b in zip(counts_start, counts_end, strict=True)]
    broken = sum(b[2] - a[2] for a, b in zip(counts_start, counts_end, strict=True))
    relay_conn.send("health")
    health = relay_conn.recv()
    for proc, conn in groups:
        conn.send("stop")
        proc.join(15)
    bcast_conn.send("stop")
    broadcaster.join(15)
    relay_conn.send("stop")
    relay.join(15)
    for proc in [relay, broadcaster, *(p for p, _ in groups)]:
        if proc.is_alive():
            proc.kill()
    relay_share = (relay_cpu_end - relay_cpu_start) / wall
    core_busy = {
        cpu: round(
            100
            * (cores_end[cpu][0] - cores_start[cpu][0])
            / max(1, cores_end[cpu][1] - cores_start[cpu][1]),
            1,
        )
        for cpu in cores_end
    }
    return {
        "mode": "reencode (MediaRelay)" if reencode else "forward (MediaService)",
        "viewer_mode": mode,
        "viewers": viewers,
        "viewer_procs": len(groups),
        "relay_cpu_pct": round(relay_share * 100, 1),
        "cpu_pct_per_viewer": round(relay_share * 100 / viewers, 3),
        "viewers_per_core": round(viewers / relay_share) if relay_share else None,
        "broadcaster_cpu_pct": round(broadcaster_cpu / wall * 100, 1),
        "udp_rcvbuf_drops": udp_drops,
        "socket_drops_relay_bcast_viewers": [
            socket_drops[0],
            socket_drops[1],
            sum(socket_drops[2:]),
        ],
        "clients_cpu_pct": round((client_cpu_end - client_cpu_start) / wall * 100, 1),
        "core_busy_pct": core_busy,
        "loadavg_1m": round(load_start, 2),
        # what the broadcaster sent in the same window: viewers can get no more than this
        "sent_fps": round((sent_end - sent_start) / wall, 1),
        "min_fps": round(min(fps), 1),
        "mean_fps": round(sum(fps) / len(fps), 1),
        "viewers_below_29fps": sum(1 for f in fps if f < MIN_FPS),
        "broken_frames": broken,
        "min_audio_pps": round(min(audio_pps), 1) if mode == "rtp" else None,
        "source_kbps": health.get("bitrate_kbps"),
        "source_fps": health.get("fps"),
        "relay_dropped_frames": health.get("relay_dropped"),
        "keyframe_requests": health.get("keyframe_requests"),
    }


def _table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| relay | viewers | relay CPU (its core) | CPU per viewer | viewers/core "
        "| sent fps | min / mean viewer fps | clients CPU | core busy % | source kbps / fps |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        busy = " / ".join(f"{v:.0f}" for _, v in sorted(r["core_busy_pct"].items()))
        lines.append(
            f"| {r['mode']} | {r['viewers']} | {r['relay_cpu_pct']} % "
            f"| {r['cpu_pct_per_viewer']:.2f} % | {r['viewers_per_core']} "
            f"| {r['sent_fps']} | {r['min_fps']} / {r['mean_fps']} "
            f"| {r['clients_cpu_pct']} % | {busy} "
            f"| {r['source_kbps']} / {r['source_fps']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--viewers", type=int, nargs="*", default=[20, 40])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--viewer-procs", type=int, default=2)
    parser.add_argument("--viewer-mode", choices=["rtp", "frames"], default="rtp")
    parser.add_argument(
        "--reencode",
        type=int,
        nargs="*",
        default=[],
        help="viewer counts to run through aiortc's re-encoding MediaRelay",
    )
    parser.add_argument("--relay-cpu", type=int, nargs="*", default=[0])
    parser.add_argument("--client-cpus", type=int, nargs="*", default=[1])
    parser.add_argument("--nice", type=int, default=0, help="nice value for every process")
    parser.add_argument("--ingest-rcvbuf", type=int, default=0, help="experiment: SO_RCVBUF")
    parser.add_argument("--stream", default=None, help="pre-encoded .webm (default: cached tmp)")
    args = parser.parse_args()

    stream = prepare_stream(args.stream)
    print(json.dumps({"stream": asdict(stream)}), flush=True)
    placement = Placement(args.relay_cpu, args.client_cpus, args.nice, args.ingest_rcvbuf)
    results = []
    runs = [(n, False) for n in args.viewers] + [(n, True) for n in args.reencode]
    for viewers, reencode in runs:
        result = run(
            viewers,
            args.seconds,
            args.warmup,
            reencode,
            args.viewer_procs,
            args.viewer_mode,
            stream,
            placement,
        )
        print(json.dumps(result), flush=True)
        results.append(result)
    print(_table(results))


if __name__ == "__main__":
    main()
