"""The server's own CPU for a ``ping`` and a ``buy``, in process, without the machine's wake-ups.

``bench_buy`` measures a real server process under a steady open load, which is the number the
issue asks for; but on a VM that charges a thread for every wake-up from idle (docs/performance.md,
"Session 5") a large, variable share of that is the charge, so small changes drown in it. This
harness builds the real app (real inventory, real embedded Redis, ``members`` joined websocket
clients that are never read) in this process and feeds bursts of ``size`` event frames straight
to the Socket.IO fast path (``FastEvents.handle``) on sockets that only encode their answers. A
burst's thread CPU is counted until every answer is out, so what is measured is the Python and
the Redis round trip of the work itself. Runs agree to a fraction of a microsecond.

    python -m benchmarks.bench_inprocess [--bursts 150] [--size 32] [--members 200] [--json PATH]

It imports the server's internals and is not a load test of the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
from aiohttp import web

from liveroom.app import create_app, services_of
from liveroom.http.transport import runner_options
from liveroom.identity import Role, User, new_user_id
from liveroom.redis_server import EmbeddedRedis, free_port
from liveroom.settings import Settings

__all__ = ["BurstResult", "main", "run_bench"]


@dataclass(frozen=True, slots=True)
class BurstResult:
    bursts: int
    size: int
    members: int
    ping_us: float
    buy_us: float

    @property
    def buy_over_ping(self) -> float:
        return self.buy_us / self.ping_us


class _Answers:
    """Counts the answers the sockets were sent; ``wait_for(n)`` until there are ``n``."""

    def __init__(self) -> None:
        self.count = 0
        self._target = 0
        self._reached: asyncio.Future[None] | None = None

    def one(self) -> None:
        self.count += 1
        if self._reached is not None and self.count >= self._target:
            self._reached.set_result(None)
            self._reached = None

    async def wait_for(self, target: int) -> None:
        if self.count < target:
            self._target = target
            self._reached = asyncio.get_running_loop().create_future()
            await self._reached


class _EncodingSocket:
    """A socket that encodes what it is sent (as a real one would) and counts it."""

    def __init__(self, sid: str, answers: _Answers) -> None:
        self.sid = sid
        self._answers = answers

    async def send(self, packet: Any) -> None:
        self.send_now(packet)

    def send_now(self, packet: Any) -> None:
        packet.encode()
        self._answers.one()

    def send_encoded(self, encoded: bytes) -> None:
        self._answers.one()


async def run_bench(bursts: int, size: int, members: int) -> BurstResult:
    with tempfile.TemporaryDirectory(prefix="liveroom-inprocess-") as tmp:
        return await _run_in(Path(tmp), bursts, size, members)


async def _run_in(workdir: Path, bursts: int, size: int, members: int) -> BurstResult:
    redis = EmbeddedRedis(data_dir=workdir / "redis", persist=True)
    await redis.start()
    # Every member connects from 127.0.0.1: no per-address connection cap.
    settings = Settings(data_dir=workdir / "data", port=free_port(), buy_rate_per_s=1e9,
                        buy_burst=10**9, max_connections_per_address=0)
    app = create_app(settings, redis.url, handoff_in_process=False)
    runner = web.AppRunner(app, access_log=None, **runner_options(settings))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            return await _measure(app, http, f"http://127.0.0.1:{settings.port}", bursts, size,
                                  members)
    finally:
        await runner.cleanup()
        await redis.stop()


async def _measure(app: web.Application, http: aiohttp.ClientSession, url: str, bursts: int,
                   size: int, members: int) -> BurstResult:
    services = services_of(app)

    def token(role: str, name: str) -> str:
        return services.signer.issue(User(id=new_user_id(), name=name, role=Role(role)))

    async def call(method: str, path: str, body: Any) -> Any:
        headers = {"Authorization": f"Bearer {anchor}"}
        async with http.request(method, url + path, json=body, headers=headers) as response:
            return await response.json()

    anchor = token("anchor", "Bench")
    room = await call("POST", "/api/rooms", {"title": "in-process bench"})
    product = await call("POST", "/api/products", {
        "title": "Bangle", "category": "jewelry", "price_cents": 129_900})
    sale = await call("POST", f"/api/rooms/{room['id']}/sales", {
        "product_id": product["id"], "stock": 1_000_000, "price_cents": 99_900,
        "per_user_limit": 10_000, "duration_s": 3600, "hold_s": 3600})
    sockets = []
    for n in range(members):
        ws = await http.ws_connect(url + "/socket.io/?EIO=4&transport=websocket", max_msg_size=0)
        await ws.receive_str(timeout=5)
        await ws.send_str("40" + orjson.dumps({"token": token("viewer", f"m{n}")}).decode())
        await ws.receive_str(timeout=5)
        await ws.send_str("421" + orjson.dumps(["join", {"room": room["id"]}]).decode())
        await ws.receive_str(timeout=5)
        sockets.append(ws)
    try:
        sio = services.sio
        fast = services.edge.fast_events
        assert fast is not None
        answers = _Answers()
        counters = [_EncodingSocket(eio_sid, answers) for eio_sid in list(sio.eio.sockets)]
        serial = iter(range(10**12))

        async def burst(event: str) -> float:
            if event == "ping":
                frames = [f'42{n}["ping",{{}}]' for n in range(size)]
            else:
                frames = [f'42{n}["buy",{{"sale":"{sale["id"]}","qty":1,'
                          f'"request_id":"r{next(serial)}"}}]' for n in range(size)]
            target = answers.count + size
            started = time.thread_time()
            for n, frame in enumerate(frames):
                await fast.handle(counters[n % len(counters)], frame)
            await answers.wait_for(target)
            return (time.thread_time() - started) / size * 1e6

        for _ in range(max(5, bursts // 5)):  # warm-up
            await burst("buy")
            await burst("ping")
        pings: list[float] = []
        buys: list[float] = []
        for _ in range(bursts):
            pings.append(await burst("ping"))
            buys.append(await burst("buy"))
        return BurstResult(bursts, size, members, statistics.median(pings),
                           statistics.median(buys))
    finally:
        for ws in sockets:
            await ws.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_inprocess",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bursts", type=int, default=150)
    parser.add_argument("--size", type=int, default=32, help="events per burst")
    parser.add_argument("--members", type=int, default=200, help="joined room members")
    parser.add_argument("--json", type=Path, default=None, dest="json_path")
    args = parser.parse_args(argv)
    if args.bursts < 1 or args.size < 1 or args.members < 1:
        parser.error("--bursts, --size and --members must be at least 1")
    result = uvloop.run(run_bench(args.bursts, args.size, args.members))
    print(f"in-process, bursts of {result.size} events, {result.members} room members: "
          f"ping {result.ping_us:.1f} us, buy {result.buy_us:.1f} us per event, "
          f"buy / ping {result.buy_over_ping:.2f} (no socket I/O in either: not the issue's ratio, "
          "which bench_buy measures)")
    if args.json_path is not None:
        args.json_path.write_bytes(orjson.dumps(
            {**asdict(result), "buy_over_ping": result.buy_over_ping}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
