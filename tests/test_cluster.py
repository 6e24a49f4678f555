"""The flash-sale correctness test on a local three-master Redis Cluster: every inventory script
touches only its sale's hash-tagged keys, so it runs unchanged on a cluster."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from inventory import HoldSweeper, InventoryService, SaleSpec
from liveroom import keys as room_keys
from liveroom.clock import now_ms
from liveroom.redis_server import EmbeddedRedis
from tests.clock import Clock


@pytest.fixture(scope="module")
async def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    redis_cli = shutil.which("redis-cli")
    assert redis_cli, "redis-cli comes with redis-server (make test installs it)"
    base = tmp_path_factory.mktemp("cluster")
    nodes = []
    for index in range(3):
        node = EmbeddedRedis(data_dir=base / f"n{index}", persist=False, extra_args=(
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", "2000"))
        await node.start()
        nodes.append(node)
    create = await asyncio.create_subprocess_exec(
        redis_cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
        "--cluster-replicas", "0", "--cluster-yes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await create.communicate()
    assert create.returncode == 0, output.decode()
    probe = aioredis.Redis(port=nodes[0].port)
    for _ in range(600):  # bounds failure only: a loaded machine may take a while
        info = await probe.execute_command("CLUSTER", "INFO")
        if b"cluster_state:ok" in info:
            break
        await asyncio.sleep(0.1)
    await probe.aclose()
    assert b"cluster_state:ok" in info, info
    yield f"redis://127.0.0.1:{nodes[0].port}"
    for node in nodes:
        await node.stop()


async def test_sale_keys_spread_over_slots_but_each_sale_stays_in_one() -> None:
    from redis.crc import key_slot

    from inventory.keys import sale_keys

    for sale_id in ("s_aaaaaaaaaa", "s_bbbbbbbbbb"):
        assert len({key_slot(k.encode()) for k in sale_keys(sale_id)}) == 1
    assert len({key_slot(room_keys.room_meta(r).encode()) for r in ("r_1", "r_2", "r_3")}) > 1
    room = "r_x"
    tagged = [room_keys.room_meta(room), room_keys.room_presence(room), room_keys.room_chat(room),
              room_keys.room_muted(room), room_keys.room_banned(room), room_keys.room_sales(room)]
    assert len({key_slot(k.encode()) for k in tagged}) == 1


async def test_flash_sale_correctness_on_a_cluster(cluster_url: str) -> None:
    client = RedisCluster.from_url(cluster_url)
    clock = Clock(now_ms())
    service = InventoryService(cast(Any, client), now_ms=clock)
    await service.start()
    try:
        sales = []
        for index in range(3):  # several sales, so they land on different masters
            sales.append(await service.create_sale(SaleSpec(
                room_id="r_c", product_id=f"p_{index}", anchor_id="u_a", title="Jade",
                category="jewelry", brand="B", stock=50, price_cents=1000, per_user_limit=2,
                starts_at_ms=clock.now, ends_at_ms=clock.now + 600_000, hold_ms=30_000)))
        results = await asyncio.gather(*(
            service.buy(sale.id, f"u_{user}", 2, "r1")
            for sale in sales for user in range(200)))
        for sale in sales:
            fresh = await service.get_sale(sale.id)
            assert (fresh.remaining, fresh.held) == (0, 50)
        reserved = [r for r in results if r.status == "reserved"]
        assert sum(r.reservation.qty for r in reserved if r.reservation) == 150
        assert {r.status for r in results} == {"reserved", "sold_out"}

        # Hold -> sold, and an expired hold returning to stock, also on the cluster.
        # results are in request order: sale 0's buyers are u_0 .. u_199.
        user, first = next((f"u_{i}", r) for i, r in enumerate(results[:200]) if r.reservation)
        assert first.reservation is not None
        committed = await service.commit(first.reservation.id, user)
        assert committed.state == "committed"
        clock.now += 31_000
        sweeper = HoldSweeper(service)
        await sweeper.sweep_once()
        fresh = await service.get_sale(sales[0].id)
        assert (fresh.remaining, fresh.held, fresh.sold) == (48, 0, 2)
        again = await service.buy(sales[0].id, "u_new", 2, "r2")
        assert again.status == "reserved"
    finally:
        await service.close()
        await client.aclose()
