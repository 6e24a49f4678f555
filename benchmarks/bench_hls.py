"""LL-HLS packager benchmark: CPU per room of the remux path (and, for comparison, of what a
VP8 → H.264 transcode per room would cost) at 640x480, 30 fps, ~1 Mbps.

Remux: a pre-encoded H.264 stream (libx264, encoded once before the clock starts, keyframe
every second as the packager asks for) goes frame by frame through the packager's own code:
``Segmenter.push`` (PyAV mp4 muxer, parts and segments), ``Playlist.render`` and
``HlsStore.write`` (one Redis transaction and one ControlBus message per part) against an
embedded redis-server. Frames are fed as fast as they go; the process's CPU time divided by the
stream's duration is the share of a core one room costs.

Remux with audio: the same, with a 440 Hz stereo Opus tone (20 ms frames) decoded and
encoded to AAC next to the video, as the packager does for a browser's microphone.

Transcode: the same picture encoded as VP8 (libvpx realtime) goes through the server's
``Vp8ToH264`` (PyAV VP8 decode, libx264 ``ultrafast``/``zerolatency`` at 1 Mbps, keyframes
where the segmenter wants them) and the segmenter: what a VP8-only publisher costs per room.

Usage: python -m benchmarks.bench_hls [--seconds 20] [--rounds 3]
Prints one JSON line per measurement; docs/performance.md records the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import struct
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import redis.asyncio as aioredis

from liveroom.bus import ControlBus
from liveroom.hls import HlsConfig, HlsStore, Vp8ToH264
from liveroom.redis_server import EmbeddedRedis

WIDTH, HEIGHT, FPS, BITRATE = 640, 480, 30, 1_000_000


def pictures(count: int) -> list[Any]:
    """A textured background panning, with noise so the encoder spends its bitrate."""
    rng = random.Random(7)
    texture = bytes(rng.randrange(256) for _ in range(WIDTH * 2 * 64))
    frames = []
    for index in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shift = (index * 5) % WIDTH
        rows = b"".join(texture[(r % 64) * WIDTH * 2 + shift:][:WIDTH] for r in range(HEIGHT))
        frame.planes[0].update(rows)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = index
        frame.time_base = Fraction(1, FPS)
        frames.append(frame)
    return frames


def encoder(codec: str, options: dict[str, str]) -> Any:
    context: Any = av.CodecContext.create(codec, "w")
    context.width, context.height = WIDTH, HEIGHT
    context.pix_fmt = "yuv420p"
    context.time_base = Fraction(1, FPS)
    context.bit_rate = BITRATE
    context.gop_size = FPS
    context.options = options
    return context


def encode(codec: str, frames: list[Any], options: dict[str, str]) -> list[tuple[bytes, bool]]:
    context = encoder(codec, options)
    packets = [p for frame in frames for p in context.encode(frame)]
    packets += context.encode(None)
    return [(bytes(p), bool(p.is_keyframe)) for p in packets]


X264 = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
        "x264-params": "repeat-headers=1:scenecut=0"}


def opus_tone(seconds: float) -> list[bytes]:
    """20 ms Opus frames of a 440 Hz stereo tone, as a browser's microphone sends them."""
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48_000, "stereo", "s16"
    encoder.time_base = Fraction(1, 48_000)
    packets: list[bytes] = []
    for index in range(int(seconds * 50)):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        samples = (int(8000 * math.sin(2 * math.pi * 440 * (index * 960 + n) / 48_000))
                   for n in range(960))
        frame.planes[0].update(b"".join(struct.pack("<hh", v, v) for v in samples))
        frame.sample_rate = 48_000
        frame.pts = index * 960
        frame.time_base = Fraction(1, 48_000)
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


async def remux(stream: list[tuple[bytes, bool]], redis_url: str,
                opus: list[bytes] | None = None) -> dict[str, Any]:
    redis = aioredis.Redis.from_url(redis_url)
    bus = ControlBus(redis)
    store = HlsStore(redis, bus)
    config = HlsConfig()
    playlist = config.new_playlist()
    segmenter = config.segmenter(playlist, audio=opus is not None)
    writes = 0
    sound = iter(opus or [])
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for index, (data, keyframe) in enumerate(stream):
        now = 1_750_000_000_000 + index * 33
        outputs = segmenter.push(data, index * 3000, keyframe, now)
        # 20 ms audio frames between 33 ms video frames: 5 for every 3.
        for _ in range((index + 1) * 5 // 3 - index * 5 // 3):
            packet = next(sound, None)
            if packet is not None:
                outputs += segmenter.push_audio(packet, now)
        if outputs:
            await store.write("bench", playlist, outputs)
            writes += 1
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    await redis.aclose()
    seconds = len(stream) / FPS
    kbps = sum(len(d) for d, _ in stream) * 8 / seconds / 1000
    return {"path": "remux" + (" + Opus->AAC" if opus else ""), "media_s": seconds,
            "kbps": round(kbps), "writes": writes,
            "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "core_pct": round(100 * cpu / seconds, 2)}


def transcode(vp8: list[tuple[bytes, bool]]) -> dict[str, Any]:
    """The server's transcode path without Redis: ``Vp8ToH264`` then the segmenter."""
    config = HlsConfig()
    playlist = config.new_playlist()
    segmenter = config.segmenter(playlist)
    transcoder = Vp8ToH264()
    cpu0 = time.process_time()
    out = 0
    for index, (data, _) in enumerate(vp8):
        for unit, pts, keyframe in transcoder.push(data, index * 3000, segmenter.keyframe_due):
            out += len(unit)
            segmenter.push(unit, pts, keyframe, 1_750_000_000_000 + index * 33)
    cpu = time.process_time() - cpu0
    seconds = len(vp8) / FPS
    return {"path": "transcode (Vp8ToH264 + segmenter)", "media_s": seconds,
            "kbps_out": round(out * 8 / seconds / 1000), "cpu_s": round(cpu, 3),
            "core_pct": round(100 * cpu / seconds, 2)}


async def main_async(args: argparse.Namespace) -> None:
    frames = pictures(int(args.seconds * FPS))
    h264 = encode("libx264", frames, {**X264, "x264-params": "repeat-headers=1:scenecut=0"})
    vp8 = encode("libvpx", frames, {"deadline": "realtime", "cpu-used": "8"})
    with tempfile.TemporaryDirectory(prefix="lr-bench-hls-") as tmp:
        server = EmbeddedRedis(data_dir=Path(tmp), persist=False)
        await server.start()
        try:
            remuxes = [await remux(h264, server.url) for _ in range(args.rounds)]
            sound = opus_tone(args.seconds)
            with_audio = [await remux(h264, server.url, sound) for _ in range(args.rounds)]
        finally:
            await server.stop()
    transcodes = [transcode(vp8) for _ in range(args.rounds)]
    for result in (*remuxes, *with_audio, *transcodes):
        print(json.dumps(result))
    print(json.dumps({
        "remux_core_pct_median": statistics.median(r["core_pct"] for r in remuxes),
        "remux_with_audio_core_pct_median": statistics.median(r["core_pct"] for r in with_audio),
        "transcode_core_pct_median": statistics.median(r["core_pct"] for r in transcodes)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
