"""Media relay benchmark: viewers per core at 640x480, 30 fps, ~1 Mbps VP8 (+ Opus).

Three kinds of process, so the relay's CPU is measured alone:
  relay       MediaService (or, with --reencode, aiortc's MediaRelay, which encodes per viewer)
              behind a one-line-JSON signaling socket on 127.0.0.1;
  broadcaster one aiortc peer sending a moving 640x480 pattern, VP8 at ~1 Mbps, and audio;
  viewers     N aiortc peers that only count received encoded frames (no decoding).

Usage: python -m loadtests.bench_media --viewers 10 20 40 [--seconds 10] [--reencode 3]
Prints a table; docs/media.md records the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- relay ------------------------------------------------------------------------------------


async def _relay_main(conn: Connection, reencode: bool) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRelay

    from liveroom.media import MediaService

    service = MediaService(ice_servers=[])
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
            # buffered=False: each subscriber decodes nothing itself, but encodes per viewer
            pc.addTrack(relay.subscribe(source_tracks[kind], buffered=False))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp, pc.localDescription.type

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        if request["op"] == "publish":
            if reencode:
                sdp, type_ = await reencode_publish(request["sdp"])
            else:
                sdp, type_ = await service.publish("r_bench", "anchor", request["sdp"], "offer")
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
            conn.send(service.health("r_bench"))
        elif command == "stop":
            break
    server.close()
    for pc in pcs:
        await pc.close()
    await service.close()


def relay_process(conn: Connection, reencode: bool) -> None:
    asyncio.run(_relay_main(conn, reencode))


async def _signal(port: int, request: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    answer: dict[str, Any] = json.loads(await reader.readline())
    writer.close()
    return answer


# -- broadcaster ------------------------------------------------------------------------------


async def _broadcaster_main(port: int, conn: Connection) -> None:
    import aiortc.codecs.vpx as vpx
    import av
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

    # ~1 Mbps whatever the relay's REMB says: the benchmark fixes the stream, not the link.
    # (libvpx overshoots this pattern by ~40%, so 750 kbps target lands near 1 Mbps)
    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = 750_000

    class MovingPattern(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self._index = 0
            self._rows = [bytes((x + shift * 3) % 256 for x in range(640)) for shift in range(64)]

        async def recv(self) -> av.VideoFrame:
            pts, time_base = await self.next_timestamp()
            frame = av.VideoFrame(640, 480, "yuv420p")
            start = self._index % 64
            luma = b"".join(self._rows[(start + y // 8) % 64] for y in range(480))
            frame.planes[0].update(luma)
            frame.planes[1].update(bytes([(self._index * 2) % 256]) * frame.planes[1].buffer_size)
            frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
            frame.pts, frame.time_base = pts, time_base
            self._index += 1
            return frame

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver(MovingPattern(), direction="sendonly")
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    answer = await _signal(port, {"op": "publish", "sdp": pc.localDescription.sdp})
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await pc.close()


def broadcaster_process(port: int, conn: Connection) -> None:
    asyncio.run(_broadcaster_main(port, conn))


# -- viewers ----------------------------------------------------------------------------------


async def _viewers_main(port: int, first: int, count: int, conn: Connection) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from liveroom.media._aiortc_internals import install_encoded_frame_tap

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

        def count_frame(codec: Any, timestamp: int, data: bytes, index: int = index) -> None:
            frames[index] += 1

        install_encoded_frame_tap(video.receiver, count_frame)
        pcs.append(pc)
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "sample":
            conn.send(list(frames))
        elif command == "stop":
            break
    for pc in pcs:
        await pc.close()


def viewers_process(port: int, first: int, count: int, conn: Connection) -> None:
    asyncio.run(_viewers_main(port, first, count, conn))


# -- driver -----------------------------------------------------------------------------------


def run(viewers: int, seconds: float, reencode: bool, viewer_procs: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    relay_conn, relay_child = ctx.Pipe()
    relay = ctx.Process(target=relay_process, args=(relay_child, reencode))
    relay.start()
    port = relay_conn.recv()
    bcast_conn, bcast_child = ctx.Pipe()
    broadcaster = ctx.Process(target=broadcaster_process, args=(port, bcast_child))
    broadcaster.start()
    time.sleep(3)  # connected and sending
    groups = []
    per_proc = -(-viewers // viewer_procs)
    for first in range(0, viewers, per_proc):
        conn, child = ctx.Pipe()
        n = min(per_proc, viewers - first)
        proc = ctx.Process(target=viewers_process, args=(port, first, n, child))
        proc.start()
        groups.append((proc, conn))
    for _, conn in groups:
        assert conn.recv() == "ready"
    time.sleep(4)  # warm-up: ICE, DTLS, first keyframe

    def sample() -> list[int]:
        counts: list[int] = []
        for _, conn in groups:
            conn.send("sample")
            counts.extend(conn.recv())
        return counts

    assert relay.pid is not None
    cpu_start, wall_start, counts_start = process_cpu_s(relay.pid), time.monotonic(), sample()
    time.sleep(seconds)
    cpu_end, wall_end, counts_end = process_cpu_s(relay.pid), time.monotonic(), sample()
    wall = wall_end - wall_start
    fps = [(b - a) / wall for a, b in zip(counts_start, counts_end, strict=True)]
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
    cpu_share = (cpu_end - cpu_start) / wall
    return {
        "mode": "reencode (MediaRelay)" if reencode else "forward (MediaService)",
        "viewers": viewers,
        "relay_cpu_pct": round(cpu_share * 100, 1),
        "cpu_pct_per_viewer": round(cpu_share * 100 / viewers, 2),
        "min_fps": round(min(fps), 1),
        "mean_fps": round(sum(fps) / len(fps), 1),
        "source_kbps": health.get("bitrate_kbps"),
        "source_fps": health.get("fps"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--viewer-procs", type=int, default=1)
    parser.add_argument(
        "--reencode",
        type=int,
        nargs="*",
        default=[],
        help="viewer counts to run through aiortc's re-encoding MediaRelay",
    )
    args = parser.parse_args()
    results = [run(n, args.seconds, False, args.viewer_procs) for n in args.viewers]
    results += [run(n, args.seconds, True, args.viewer_procs) for n in args.reencode]
    for result in results:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
