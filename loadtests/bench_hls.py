"""LL-HLS viewer benchmark: N simulated players against the origin directly and through nginx.

An outside client of the public protocol. It starts ``liveroom serve`` (embedded Redis) on a
free port, publishes a 640x480 30 fps H.264 stream into a room the way the studio page does
(``rtc:publish`` over Socket.IO, an aiortc peer connection whose encoder answers keyframe
requests), and runs viewers that behave like hls.js in low-latency mode: one plain playlist
load, then for every part a blocking reload (``_HLS_msn``/``_HLS_part``) and the part itself
(the preload hint), in parallel. Viewers are spread over ``--client-procs`` processes.

Reported per run (viewer count x direct/nginx): origin CPU (``utime+stime`` of the serving
processes, ``/proc``) per viewer over the measured window, origin requests per part (the
origin's ``liveroom_hls_requests_total`` over the window / parts published), and each part's
delay from its publication to its receipt by each viewer (p50/p99), and ``kept_up``, the share
of published parts the viewers received (below 1.0 the clients, not the server, fell behind).
A part's publication is when the origin answered a reference client's blocking reload for it
(one more client, in a process of its own, always waiting at the live edge; same machine, same
clock).

Usage:
  python -m loadtests.bench_hls [--viewers 50 200 500] [--modes direct nginx] [--seconds 10]
      [--client-procs 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import av
import socketio
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import VideoStreamTrack

from ._api import ServerApi
from ._launcher import ServerProcess, free_port
from ._worker import raise_open_file_limit
from .bench_buy import BenchServer, server_environment

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
NGINX_SITE = ROOT / "docs" / "nginx" / "liveroom.conf"
_URI = re.compile(r'URI="([^"]+)"')


# -- the broadcaster -----------------------------------------------------------------------------


class MovingPicture(VideoStreamTrack):
    """640x480 at 30 fps with real motion (a moving gradient), so P-frames cost something."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.index = 0
        self.rows = [bytes((x + shift) % 256 for x in range(width * 2))
                     for shift in range(0, 256, 4)]

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        row = self.rows[self.index % len(self.rows)]
        start = (self.index * 6) % self.width
        frame.planes[0].update(row[start:start + self.width] * self.height)
        chroma = bytes([128]) * frame.planes[1].buffer_size
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts, frame.time_base = pts, time_base
        self.index += 1
        return frame


async def publish_h264(url: str, token: str, room: str) -> tuple[RTCPeerConnection, Any]:
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, auth={"token": token}, transports=["websocket"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver(MovingPicture(), direction="sendonly")
    transceiver.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    await pc.setLocalDescription(await pc.createOffer())
    answer = await sio.call("rtc:publish", {"room": room, "sdp": pc.localDescription.sdp,
                                            "type": "offer"}, timeout=20)
    if not answer.get("ok"):
        raise RuntimeError(f"rtc:publish refused: {answer}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    return pc, sio


# -- the viewers -------------------------------------------------------------------------------


def hint(m3u8: str) -> tuple[str, int, int]:
    for line in m3u8.splitlines():
        if line.startswith("#EXT-X-PRELOAD-HINT"):
            match = _URI.search(line)
            assert match is not None
            name = match.group(1)
            _, _, msn, index = name.removesuffix(".m4s").split("-")
            return name, int(msn), int(index)
    raise ValueError("no preload hint")


@dataclass
class ViewerStats:
    parts: int = 0
    errors: int = 0


async def _get_status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        await response.read()
        return response.status


async def _get_text(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def _viewer(session: aiohttp.ClientSession, base: str, until: float, measure_from: float,
                  stats: ViewerStats, receipts: list[tuple[str, int]]) -> None:
    async with session.get(base + "index.m3u8") as response:
        m3u8 = await response.text()
    while time.time() < until:
        try:
            name, msn, index = hint(m3u8)
            playlist_url = f"{base}index.m3u8?_HLS_msn={msn}&_HLS_part={index}"

            part_status, (status, text) = await asyncio.gather(
                _get_status(session, base + name), _get_text(session, playlist_url))
            received = int(time.time() * 1000)
            if part_status != 200 or status != 200:
                stats.errors += 1
                await asyncio.sleep(0.3)
                async with session.get(base + "index.m3u8") as response:
                    m3u8 = await response.text()
                continue
            m3u8 = text
            if time.time() >= measure_from:
                stats.parts += 1
                receipts.append((name, received))
        except (aiohttp.ClientError, ValueError, TimeoutError):
            stats.errors += 1
            await asyncio.sleep(0.3)


async def _viewers(base: str, count: int, until: float, measure_from: float
                   ) -> tuple[int, int, list[tuple[str, int]], float]:
    raise_open_file_limit()
    cpu0 = time.process_time()
    stats = [ViewerStats() for _ in range(count)]
    receipts: list[tuple[str, int]] = []
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as session:
        await asyncio.gather(*(_viewer(session, base, until, measure_from, s, receipts)
                               for s in stats))
    return (sum(s.parts for s in stats), sum(s.errors for s in stats), receipts,
            time.process_time() - cpu0)


def _viewers_process(base: str, count: int, until: float, measure_from: float
                     ) -> tuple[int, int, list[tuple[str, int]], float]:
    return asyncio.run(_viewers(base, count, until, measure_from))


async def _reference(origin_base: str, until: float) -> dict[str, int]:
    """When each part was published: the origin's answer to a blocking reload for it (one
    client of its own, always on the newest part)."""
    seen: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        async with session.get(origin_base + "index.m3u8") as response:
            m3u8 = await response.text()
        while time.time() < until:
            name, msn, index = hint(m3u8)
            status, text = await _get_text(
                session, f"{origin_base}index.m3u8?_HLS_msn={msn}&_HLS_part={index}")
            if status == 200:
                seen.setdefault(name, int(time.time() * 1000))
                m3u8 = text
    return seen


def _reference_process(origin_base: str, until: float) -> dict[str, int]:
    return asyncio.run(_reference(origin_base, until))


# -- nginx ---------------------------------------------------------------------------------------


class Nginx:
    """Debian's nginx with docs/nginx/liveroom.conf in front of the origin."""

    def __init__(self, origin_port: int, prefix: Path) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.port = free_port()
        site = (NGINX_SITE.read_text()
                .replace("127.0.0.1:8000", f"127.0.0.1:{origin_port}")
                .replace("listen 8080", f"listen 127.0.0.1:{self.port}")
                .replace("/var/cache/nginx/liveroom", str(prefix / "cache")))
        (prefix / "liveroom.conf").write_text(site)
        user = "user root;\n" if os.geteuid() == 0 else ""
        temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"{user}worker_processes 1;\nworker_rlimit_nofile 16384;\ndaemon off;\n"
            f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} warn;\n"
            "events { worker_connections 8192; }\n"
            f"http {{\n    access_log off;\n{temp}\n    include {prefix / 'liveroom.conf'};\n}}\n")
        self.process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf)])

    def cpu_s(self) -> float:
        total = 0.0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in text.split()]
    return []


# -- a run ---------------------------------------------------------------------------------------


async def origin_hls_requests(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'liveroom_hls_requests_total\{kind="(\w+)"\} (\S+)', line)
        if match:
            counts[match.group(1)] = float(match.group(2))
    return counts


@dataclass
class RunResult:
    mode: str
    viewers: int
    window_s: float
    origin_cpu_pct: float
    origin_cpu_pct_per_viewer: float
    viewers_per_core: float
    nginx_cpu_pct: float
    parts: int
    origin_requests: dict[str, float]
    origin_requests_per_part: float
    parts_received: int
    errors: int
    # Parts received in the window / (viewers x parts published): 1.0 when every viewer kept
    # up with the live edge; below, the clients (this machine) could not follow.
    kept_up: float
    delay_p50_ms: float
    delay_p99_ms: float
    clients_cpu_pct: float


async def run(server: BenchServer, room: str, mode: str, viewers: int, seconds: float,
              procs: int, nginx: Nginx | None) -> RunResult:
    base_url = server.url if nginx is None else f"http://127.0.0.1:{nginx.port}"
    base = f"{base_url}/hls/{room}/"
    warmup = 4.0
    start = time.time()
    measure_from = start + warmup
    until = measure_from + seconds
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        shares = [viewers // procs + (1 if i < viewers % procs else 0) for i in range(procs)]
        with ProcessPoolExecutor(procs + 1) as pool:
            reference = loop.run_in_executor(pool, _reference_process,
                                             f"{server.url}/hls/{room}/", until + 2)
            jobs = [loop.run_in_executor(pool, _viewers_process, base, share, until,
                                         measure_from) for share in shares if share]
            await asyncio.sleep(max(0.0, measure_from - time.time()))
            cpu0 = server.server_cpu_s()
            nginx0 = nginx.cpu_s() if nginx else 0.0
            requests0 = await origin_hls_requests(session, server.url)
            playlist0 = await _playlist(session, server.url, room)
            t0 = time.time()
            await asyncio.sleep(max(0.0, until - time.time()))
            cpu1 = server.server_cpu_s()
            nginx1 = nginx.cpu_s() if nginx else 0.0
            requests1 = await origin_hls_requests(session, server.url)
            playlist1 = await _playlist(session, server.url, room)
            window = time.time() - t0
            results = await asyncio.gather(*jobs)
            published = await reference
    parts = _parts_between(playlist0, playlist1)
    requests = {kind: requests1.get(kind, 0) - requests0.get(kind, 0) for kind in requests1}
    # The benchmark's own playlist reads and its reference client are not viewers' requests.
    requests["playlist"] = max(0.0, requests.get("playlist", 0) - 2)
    requests["blocking"] = max(0.0, requests.get("blocking", 0) - parts)
    delays = sorted(received - published[name] for result in results
                    for name, received in result[2] if name in published)
    received_parts = sum(result[0] for result in results)
    cpu_pct = 100 * (cpu1 - cpu0) / window
    hls_requests = sum(requests.values())
    return RunResult(
        mode=mode, viewers=viewers, window_s=round(window, 2),
        origin_cpu_pct=round(cpu_pct, 1),
        origin_cpu_pct_per_viewer=round(cpu_pct / viewers, 4),
        viewers_per_core=round(100 * viewers / cpu_pct) if cpu_pct else 0,
        nginx_cpu_pct=round(100 * (nginx1 - nginx0) / window, 1),
        parts=parts, origin_requests=requests,
        origin_requests_per_part=round(hls_requests / parts, 2) if parts else 0.0,
        parts_received=received_parts,
        errors=sum(result[1] for result in results),
        kept_up=round(received_parts / (viewers * parts), 2) if parts else 0.0,
        delay_p50_ms=statistics.median(delays) if delays else float("nan"),
        delay_p99_ms=delays[int(0.99 * (len(delays) - 1))] if delays else float("nan"),
        clients_cpu_pct=round(100 * sum(result[3] for result in results) / (until - start), 1))


async def _playlist(session: aiohttp.ClientSession, url: str, room: str) -> str:
    async with session.get(f"{url}/hls/{room}/index.m3u8") as response:
        return await response.text()


def _parts_between(before: str, after: str) -> int:
    """Parts published between two playlists, from their preload hints: whole segments in
    between count the mean parts per segment of the later playlist's complete segments."""
    _, msn0, index0 = hint(before)
    _, msn1, index1 = hint(after)
    listed = re.findall(r'URI="part-\w+-(\d+)-(\d+)\.m4s"', after)
    per_segment: dict[int, int] = {}
    for msn, _ in listed:
        per_segment[int(msn)] = per_segment.get(int(msn), 0) + 1
    complete = [count for msn, count in per_segment.items() if msn < msn1]
    mean = statistics.mean(complete) if complete else 4
    return round((msn1 - msn0) * mean + index1 - index0)


async def bench(args: argparse.Namespace) -> list[RunResult]:
    raise_open_file_limit()
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="lr-bench-hls-") as tmp:
        launched = ServerProcess(Path(tmp) / "data", env=server_environment())
        server = BenchServer(launched, 1)
        await launched.start()
        nginx: Nginx | None = None
        pc = sio = None
        try:
            token = await launched.token("admin", "Bench")
            async with aiohttp.ClientSession() as session:
                api = ServerApi(session, server.url)
                room = (await api.create_room(token, "LL-HLS bench"))["id"]
            pc, sio = await publish_h264(server.url, token, room)
            await _wait_stream(server.url, room)
            if "nginx" in args.modes:
                prefix = Path(tmp) / "nginx"
                prefix.mkdir()
                nginx = Nginx(launched.port, prefix)
                await asyncio.sleep(0.5)
            idle0 = server.server_cpu_s()
            await asyncio.sleep(5)
            idle_pct = 100 * (server.server_cpu_s() - idle0) / 5
            print(f"origin CPU with the stream and no viewer (relay + packager): "
                  f"{idle_pct:.1f} % of a core", flush=True)
            for mode in args.modes:
                for count in args.viewers:
                    result = await run(server, room, mode, count, args.seconds,
                                       args.client_procs, nginx if mode == "nginx" else None)
                    print(json.dumps(asdict(result)), flush=True)
                    results.append(result)
        finally:
            if pc is not None:
                await pc.close()
            if sio is not None:
                await sio.disconnect()
            if nginx is not None:
                nginx.stop()
            await launched.stop()
    return results


async def _wait_stream(url: str, room: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(150):
            async with session.get(f"{url}/hls/{room}/index.m3u8") as response:
                if response.status == 200 and "#EXTINF" in await response.text():
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("the LL-HLS stream did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--modes", nargs="+", choices=["direct", "nginx"],
                        default=["direct", "nginx"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    results = asyncio.run(bench(args))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
