"""Faults: Redis crashing mid-sale, a client that never reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from liveroom.redis_server import EmbeddedRedis
from tests.server_harness import live_server

ADDRESS = {"name": "Li", "phone": "13800138000", "line1": "1 Road", "city": "Hefei"}


async def test_acknowledged_reservations_survive_a_redis_crash(tmp_path: Path) -> None:
    store = EmbeddedRedis(data_dir=tmp_path / "redis", persist=True)
    await store.start()
    try:
        async with live_server(store.url, tmp_path / "data") as server:
            anchor = server.token("anchor", "Mei", user_id="u_mei")
            _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Crash"})
            _, product = await server.request("POST", "/api/products", anchor, {
                "title": "Oil", "category": "essential_oil", "price_cents": 500})
            _, sale = await server.request("POST", f"/api/rooms/{room['id']}/sales", anchor, {
                "product_id": product["id"], "stock": 50, "price_cents": 400,
                "per_user_limit": 1, "duration_s": 600, "hold_s": 600})
            buyers = [await server.connect(server.buyer_token(f"b{i}")) for i in range(20)]
            acks = await asyncio.gather(*(b.call("buy", {"sale": sale["id"], "qty": 1,
                                                         "request_id": "x"}) for b in buyers))
            assert all(ack["status"] == "reserved" for ack in acks)

            await store.kill()  # SIGKILL: no shutdown, no final flush
            port = store.port
            store = EmbeddedRedis(data_dir=tmp_path / "redis", persist=True, port=port)
            await store.start()

            status, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
            assert status == 200, fresh
            assert (fresh["remaining"], fresh["held"]) == (30, 20)
            # Every acknowledged reservation can still be checked out by its holder.
            done = await asyncio.gather(*(b.call("checkout", {
                "reservation": ack["reservation"]["id"],
                "address": {**ADDRESS, "line1": f"{n} Road", "phone": f"1380013{n:04d}"},
                "payment": "cod"}) for n, (b, ack) in enumerate(zip(buyers, acks, strict=True))))
            assert all(d["ok"] for d in done), done
            _, fresh = await server.request("GET", f"/api/sales/{sale['id']}")
            assert (fresh["remaining"], fresh["held"], fresh["sold"]) == (30, 0, 20)
    finally:
        await store.stop()


async def test_a_client_that_never_reads_is_dropped_and_others_are_unaffected(
    redis: aioredis.Redis, redis_url: str, data_dir: Path
) -> None:
    async with live_server(redis_url, data_dir) as server:
        anchor = server.token("anchor", "Mei", user_id="u_mei")
        _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Flood"})
        healthy = await server.connect(server.token("viewer", "Reader"))
        assert (await healthy.call("join", {"room": room["id"]}))["ok"]

        # A raw websocket client that joins, then never reads again.
        ws = await server.raw_member(room["id"], "Stalled")
        reaper = server.services.reaper
        sio = server.services.sio
        stalled = server.sids_of("Stalled")
        assert len(stalled) == 1

        payload = {"room": room["id"], "text": "x" * 8000}
        sent = 0
        peak = 0
        eio_sid = sio.manager.eio_sid_from_sid(stalled[0], "/")
        # Broadcast until the reaper cuts the stalled client (it checks once a second), at the
        # pace the healthy reader keeps up with (on a loaded machine an unpaced flood outruns it
        # too, and then it is rightly cut as well).
        while stalled[0] in server.services.edge.connections and sent < 40_000:
            for _ in range(100):
                await sio.emit("announcement", payload, room=room["id"])
            sent += 100
            peak = max(peak, reaper.backlog(eio_sid))
            caught_up = sent - 300
            await healthy.wait_for("announcement", lambda _, target=caught_up: len(
                healthy.received("announcement")) >= target, 30)
        assert stalled[0] not in server.services.edge.connections, "the stalled client is dropped"
        assert reaper.dropped == 1
        assert peak > reaper.max_queued, "its queue did grow while it slept"

        await healthy.wait_for("announcement", lambda _: len(
            healthy.received("announcement")) == sent, 30)
        assert (await healthy.call("chat", {"room": room["id"], "text": "still fine"}))["ok"]
        await ws.close()
