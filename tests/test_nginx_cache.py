"""Debian's nginx with docs/nginx/liveroom.conf in front of a liveroom origin: a thousand players
asking at once for the same LL-HLS part (or blocking playlist) cost the origin one request."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from liveroom.hls import Playlist, Segmenter
from liveroom.redis_server import free_port
from tests.hls.h264 import encode
from tests.server_harness import LiveServer

ROOT = Path(__file__).resolve().parent.parent
SITE_CONF = ROOT / "docs" / "nginx" / "liveroom.conf"
ROOM = "nginxroom"
CROWD = 1000


def main_conf(prefix: Path, site: Path) -> str:
    # Root runs the workers as root too: the test's directory is not readable by nobody.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    include {site};
}}
"""


@pytest.fixture
def nginx(server: LiveServer, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "install Debian's nginx: make system-deps"
    port = free_port()
    site = SITE_CONF.read_text()
    for placeholder in ("127.0.0.1:8000", "listen 8080", "/var/cache/nginx/liveroom"):
        assert placeholder in site, placeholder
    site = (site.replace("127.0.0.1:8000", f"127.0.0.1:{server.settings.port}")
            .replace("listen 8080", f"listen 127.0.0.1:{port}")
            .replace("/var/cache/nginx/liveroom", str(tmp_path / "cache")))
    (tmp_path / "liveroom.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(main_conf(tmp_path, tmp_path / "liveroom.conf"))
    check = subprocess.run([binary, "-t", "-p", str(tmp_path), "-c", str(conf)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    process = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf)],
                               stderr=subprocess.PIPE)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


class Stream:
    """Feeds encoded frames to a packager model and writes its output like the live one."""

    def __init__(self, server: LiveServer) -> None:
        self.store = server.services.hls_store
        self.playlist = Playlist("c0ffee00", part_target_ms=300, target_duration_s=2)
        self.segmenter = Segmenter(self.playlist)
        self.frames = encode(150, keyframes={30, 60, 90, 120})
        self.index = 0

    async def push(self, count: int) -> None:
        for _ in range(count):
            data, keyframe = self.frames[self.index]
            outputs = self.segmenter.push(data, self.index * 3000, keyframe,
                                          1_750_000_000_000 + self.index * 33)
            self.index += 1
            if outputs:
                await self.store.write(ROOM, self.playlist, outputs)


@pytest.fixture
async def crowd() -> AsyncIterator[aiohttp.ClientSession]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        yield session
    finally:
        await session.close()


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str]:
    async with session.get(url) as response:
        return response.status, await response.read(), response.headers.get("X-Cache-Status", "")


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):  # bounds failure only
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("nginx did not start")


async def origin_requests(server: LiveServer, kind: str) -> float:
    """What the origin counted, from its own /metrics."""
    async with server.http.get(server.url + "/metrics") as response:
        text = await response.text()
    # Every series carries the node's label too: {node="…",kind="part"}.
    total = 0.0
    for line in text.splitlines():
        if line.startswith("liveroom_hls_requests_total{") and f'kind="{kind}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_a_thousand_players_cost_the_origin_one_request_per_url(
        server: LiveServer, nginx: str, crowd: aiohttp.ClientSession) -> None:
    await wait_up(nginx)
    stream = Stream(server)
    await stream.push(45)  # one segment done, the next one half written
    base = f"{nginx}/hls/{ROOM}"

    # A part that exists.
    msn, index = stream.playlist.last_part or (0, 0)
    name = stream.playlist.names.part(msn, index)
    answers = await asyncio.gather(*(fetch(crowd, f"{base}/{name}") for _ in range(CROWD)))
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, body, _ in answers}) == 1
    existing = await origin_requests(server, "part")
    print(f"origin requests for 1000 x existing part: {existing:g}")
    assert 1 <= existing <= 2

    # The preload-hinted part, not written yet: everyone waits on one origin request.
    hint_msn, hint_index = stream.playlist.next_part
    hinted = stream.playlist.names.part(hint_msn, hint_index)
    before = await origin_requests(server, "part")
    waiting = [asyncio.ensure_future(fetch(crowd, f"{base}/{hinted}")) for _ in range(CROWD)]
    await asyncio.sleep(0.5)
    assert not any(task.done() for task in waiting)
    await stream.push(10)
    answers = await asyncio.gather(*waiting)
    assert {status for status, _, _ in answers} == {200}
    hinted_cost = await origin_requests(server, "part") - before
    print(f"origin requests for 1000 x hinted part: {hinted_cost:g}")
    assert 1 <= hinted_cost <= 2

    # A blocking reload for the part after next, likewise.
    target_msn, target_index = stream.playlist.next_part
    query = f"index.m3u8?_HLS_msn={target_msn}&_HLS_part={target_index}"
    waiting = [asyncio.ensure_future(fetch(crowd, f"{base}/{query}")) for _ in range(CROWD)]
    await asyncio.sleep(0.5)
    await stream.push(10)
    answers = await asyncio.gather(*waiting)
    assert {status for status, _, _ in answers} == {200}
    hinted_next = stream.playlist.names.part(target_msn, target_index)
    assert all(hinted_next.encode() in body for _, body, _ in answers)
    blocking = await origin_requests(server, "blocking")
    print(f"origin requests for 1000 x blocking reload: {blocking:g}")
    assert 1 <= blocking <= 2
