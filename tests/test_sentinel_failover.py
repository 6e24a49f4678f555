"""Redis Sentinel: the server reaches Redis through three sentinels, buy batches are confirmed by
the replica (WAIT), and a SIGKILL of the primary mid-sale loses no acknowledged reservation."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from inventory import InventoryService, StoreUnavailable
from liveroom.redis_server import EmbeddedRedis
from liveroom.redis_target import redis_client
from tests.clock import Clock
from tests.inventory.conftest import make_spec
from tests.sentinels import SentinelGroup
from tests.server_harness import Client, LiveServer, live_server

ADDRESS = {"name": "Li", "phone": "13800138000", "line1": "1 Road", "city": "Hefei"}

STOCK = 60
# Past the failover: a buy is answered within the sentinels' down-after (1 s), their election
# and the clients' reconnection; the bound only keeps a broken failover from hanging the suite.
GIVE_UP_S = 60.0


async def _buy_until_answered(buyer: Client, sale_id: str, request_id: str,
                              after_s: float = 0.0,
                              retried: list[str] | None = None) -> dict[str, Any]:
    """A buyer retries what the protocol says to retry: ``store_unavailable`` with the same
    request id (the failover), ``rate_limited`` after a moment."""
    await asyncio.sleep(after_s)
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            ack: dict[str, Any] = await buyer.call(
                "buy", {"sale": sale_id, "qty": 1, "request_id": request_id}, timeout=15)
        except TimeoutError:
            ack = {"status": "no_answer"}
        code = (ack.get("error") or {}).get("code")
        if code != "store_unavailable" and ack["status"] not in ("rate_limited", "no_answer"):
            return ack
        if retried is not None:
            retried.append(code or ack["status"])
        if time.monotonic() > deadline:
            raise AssertionError(f"buying did not resume: {ack}")
        await asyncio.sleep(0.1)


async def _sale(server: LiveServer) -> str:
    anchor = server.token("anchor", "Mei", user_id="u_mei")
    _, room = await server.request("POST", "/api/rooms", anchor, {"title": "Failover"})
    _, product = await server.request("POST", "/api/products", anchor, {
        "title": "Tea", "category": "tea", "price_cents": 900})
    status, sale = await server.request("POST", f"/api/rooms/{room['id']}/sales", anchor, {
        "product_id": product["id"], "stock": STOCK, "price_cents": 800,
        "per_user_limit": 1, "duration_s": 600, "hold_s": 600})
    assert status in (200, 201), sale
    return str(sale["id"])


async def test_a_primary_killed_mid_sale_loses_no_acknowledged_reservation(
        tmp_path: Path) -> None:
    group = SentinelGroup(tmp_path / "redis")
    await group.start()
    try:
        async with live_server(group.url, tmp_path / "data") as server:
            inventory = server.services.inventory
            sale_id = await _sale(server)
            buyers = [await server.connect(server.buyer_token(f"b{i}")) for i in range(80)]
            first, during, after = buyers[:20], buyers[20:50], buyers[50:]

            # Before the failover: the replica confirms every batch.
            acks = await asyncio.gather(*(_buy_until_answered(b, sale_id, "r1") for b in first))
            assert inventory.confirming
            assert all(a["status"] == "reserved" for a in acks), acks
            # Ten of them check out: their sales (commits) are confirmed by the replica too.
            placed = await asyncio.gather(*(b.call("checkout", {
                "reservation": ack["reservation"]["id"],
                "address": {**ADDRESS, "line1": f"{n} Road", "phone": f"1380013{n:04d}"},
                "payment": "cod"}) for n, (b, ack) in enumerate(zip(first[:10], acks[:10],
                                                                    strict=True))))
            assert all(p["ok"] for p in placed), placed
            sold = {ack["reservation"]["id"] for ack in acks[:10]}

            # Buyers keep buying while the primary dies (one every 50 ms, over 1.5 s).
            retried: list[str] = []
            buying = [asyncio.create_task(_buy_until_answered(b, sale_id, "r1", n * 0.05,
                                                              retried))
                      for n, b in enumerate(during)]
            await asyncio.sleep(0.3)
            old_port = group.primary.port
            killed_at = time.monotonic()
            await group.primary.kill()
            acks += await asyncio.gather(*buying)
            # The sentinels agree on the promoted replica.
            while await group.primary_port() in (old_port, None):
                assert time.monotonic() - killed_at < GIVE_UP_S, "no failover"
                await asyncio.sleep(0.1)
            promoted_s = time.monotonic() - killed_at
            # Buying resumes on the promoted replica (which has no replica of its own, so
            # batches are answered from it alone).
            late = await asyncio.gather(*(_buy_until_answered(b, sale_id, "r1") for b in after))
            resumed_s = time.monotonic() - killed_at
            acks += late
            print(f"\nfailover: promoted {promoted_s:.1f} s, buying resumed "
                  f"{resumed_s:.1f} s after the SIGKILL; {len(retried)} retries "
                  f"({sorted(set(retried))}) by buyers during it")

            reserved = [a["reservation"]["id"] for a in acks if a["status"] == "reserved"]
            assert len(reserved) == len(set(reserved))
            assert any(a["status"] == "reserved" for a in late), "buying did not resume"
            assert {a["status"] for a in acks} <= {"reserved", "sold_out"}, acks
            assert group.replica.port == await group.primary_port()
            async with aioredis.Redis(port=group.replica.port) as promoted:
                info = await promoted.info("replication")
                assert info["role"] == "master"
            # Every reservation a buyer was told of is still held on the promoted replica...
            for reservation_id in reserved:
                reservation = await inventory.get_reservation(reservation_id)
                assert reservation.state in ("held", "committed"), reservation
                if reservation_id in sold:
                    assert reservation.state == "committed", reservation
            # ...and the stock is never oversold.
            status, sale = await server.request("GET", f"/api/sales/{sale_id}")
            assert status == 200, sale
            assert sale["held"] + sale["sold"] == len(reserved) <= STOCK
            assert sale["remaining"] + sale["held"] + sale["sold"] == STOCK
    finally:
        await group.stop()


async def test_every_connection_of_the_server_goes_through_the_sentinels(
        tmp_path: Path) -> None:
    """Sign-in (accounts), the catalog, a sale's scripts and the control bus all work with
    nothing but the sentinels' addresses; a WAIT-confirmed buy is answered."""
    group = SentinelGroup(tmp_path / "redis")
    await group.start()
    try:
        async with live_server(group.url, tmp_path / "data", workers=1) as server:
            sale_id = await _sale(server)
            buyer = await server.connect(server.buyer_token("solo"))
            ack = await _buy_until_answered(buyer, sale_id, "one")
            assert ack["status"] == "reserved"
            assert server.services.inventory.confirming
            assert server.services.inventory.unconfirmed_batches == 0
            # The reservation is on the replica too, by the time the buyer heard of it.
            async with aioredis.Redis(port=group.replica.port) as replica:
                keys = await replica.keys("*" + sale_id + "*")
            assert keys
    finally:
        await group.stop()


T = TypeVar("T")


async def _until_confirmed(call: Callable[[], Awaitable[T]]) -> T:
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            return await call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.fixture
async def primary_and_replica(tmp_path: Path) -> Any:
    primary = EmbeddedRedis(data_dir=tmp_path / "primary", persist=False,
                            extra_args=("--repl-diskless-sync-delay", "0"))
    await primary.start()
    replica = EmbeddedRedis(data_dir=tmp_path / "replica", persist=False,
                            extra_args=("--replicaof", "127.0.0.1", str(primary.port)))
    await replica.start()
    async with aioredis.Redis(port=primary.port) as client:
        for _ in range(600):  # the replica's first copy
            if (await client.info("replication")).get("slave0", {}).get("state") == "online":
                break
            await asyncio.sleep(0.05)
    yield primary, replica
    for process in (replica, primary):
        if process.pid is not None:
            os.kill(process.pid, signal.SIGCONT)
        await process.stop()


async def test_a_reservation_no_replica_confirmed_is_store_unavailable_until_one_does(
        primary_and_replica: tuple[EmbeddedRedis, EmbeddedRedis]) -> None:
    primary, replica = primary_and_replica
    clock = Clock()
    client = redis_client(primary.url, 4)
    service = InventoryService(client, now_ms=clock, confirm_with_replica=True,
                               confirm_timeout_ms=200)
    await service.start()
    try:
        assert service.confirming
        sale = await service.create_sale(make_spec(clock, stock=5))
        # A busy machine's replica may miss one 200 ms WAIT even while it is running.
        first = await _until_confirmed(lambda: service.buy(sale.id, "u_ann", 1, "r1"))
        assert first.status == "reserved"
        assert first.reservation is not None
        hold_id = first.reservation.id

        assert replica.pid is not None
        unconfirmed = service.unconfirmed_batches  # the first buy may have needed retries
        os.kill(replica.pid, signal.SIGSTOP)  # the replica stops acknowledging
        with pytest.raises(StoreUnavailable, match="no replica confirmed"):
            await service.buy(sale.id, "u_bob", 1, "r1")
        assert service.unconfirmed_batches == unconfirmed + 1
        # The hold is on the primary, not promised: the retry waits for the replica.
        with pytest.raises(StoreUnavailable):
            await service.buy(sale.id, "u_bob", 1, "r1")
        # Nor is a sale confirmed without it.
        with pytest.raises(StoreUnavailable):
            await service.commit(hold_id, "u_ann")

        os.kill(replica.pid, signal.SIGCONT)
        # Once it catches up (a busy machine may take longer than one WAIT), the retry of the
        # same request gets the same hold, now confirmed.
        again = await _until_confirmed(lambda: service.buy(sale.id, "u_bob", 1, "r1"))
        assert (again.status, again.replayed) == ("reserved", True)
        committed = await _until_confirmed(lambda: service.commit(hold_id, "u_ann"))
        assert committed.state == "committed"
        assert (await service.get_sale(sale.id)).remaining == 3

        # A replica that is gone leaves the primary alone: buys are answered from it (after
        # at most one batch sent before the replicas were counted again).
        await replica.kill()
        third = await _until_confirmed(lambda: service.buy(sale.id, "u_cy", 1, "r1"))
        assert third.status == "reserved"
        assert not service.confirming
    finally:
        await service.close()
        await service.disconnect()
        await client.aclose()
