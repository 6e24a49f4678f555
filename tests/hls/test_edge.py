"""``liveroom hls-edge``: LL-HLS answered by a process of its own, not by the servers that run
Socket.IO and the buy path."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from liveroom.hls_edge import create_hls_app
from liveroom.redis_server import free_port
from tests.media.conftest import start_broadcaster
from tests.server_harness import LiveServer

ROOM = "edgeroom"


@pytest.fixture
async def edge(server: LiveServer, redis_url: str) -> AsyncIterator[str]:
    runner = web.AppRunner(create_hls_app(redis_url))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def origin_hls_requests(server: LiveServer) -> str:
    async with server.http.get(server.url + "/metrics") as response:
        text = await response.text()
    return "\n".join(line for line in text.splitlines()
                     if line.startswith("liveroom_hls_requests_total{"))


async def test_the_edge_serves_the_live_stream_and_the_servers_see_none_of_it(
        server: LiveServer, edge: str) -> None:
    broadcaster = await start_broadcaster(server.services.media, ROOM, codec="video/H264")
    try:
        async with aiohttp.ClientSession() as session:
            m3u8 = ""
            for _ in range(300):  # bounds failure only
                async with session.get(f"{edge}/hls/{ROOM}/index.m3u8") as response:
                    m3u8 = await response.text()
                    if response.status == 200 and "#EXTINF" in m3u8:
                        break
                await asyncio.sleep(0.2)
            assert "#EXTINF" in m3u8
            hint = m3u8.split('#EXT-X-PRELOAD-HINT:TYPE=PART,URI="')[1].split('"')[0]
            _, _, msn, index = hint.removesuffix(".m4s").split("-")
            blocking = f"{edge}/hls/{ROOM}/index.m3u8?_HLS_msn={msn}&_HLS_part={index}"
            async with session.get(blocking) as response:
                assert response.status == 200
                assert f'URI="{hint}"' in await response.text()
            async with session.get(f"{edge}/hls/{ROOM}/{hint}") as response:
                assert response.status == 200
                assert (await response.read())[4:8] == b"moof"
            async with session.get(f"{edge}/hls/{ROOM}/index.m3u8?_HLS_msn=x") as response:
                assert response.status == 400
        assert await origin_hls_requests(server) == ""
    finally:
        await broadcaster.pc.close()
        await server.services.media.stop(ROOM)


async def test_the_command_runs_until_sigterm(redis_url: str) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "liveroom", "hls-edge", "--port", str(port),
        "--redis-url", redis_url, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert f"LL-HLS edge on http://127.0.0.1:{port}" in line
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
            async with session.get(f"http://127.0.0.1:{port}/hls/none/index.m3u8") as response:
                assert response.status == 404
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
