"""Buying: no oversell under bursts, per-user limits, idempotency, batching, overload."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from inventory import (
    BuyResult,
    InventoryService,
    Sale,
    ScriptFailed,
    ServiceNotRunning,
    StoreUnavailable,
)
from inventory.keys import sale_keys
from liveroom.redis_server import EmbeddedRedis
from tests.clock import Clock
from tests.stall_proxy import StallProxy

from .conftest import make_spec


@pytest.fixture
async def small_pool(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client that fails loudly if more than 8 connections are ever needed at once."""
    client = aioredis.Redis.from_url(redis_url, max_connections=8)
    yield client
    await client.aclose()


async def test_burst_far_above_stock_sells_exactly_stock_and_respects_limits(
    small_pool: aioredis.Redis, clock: Clock, redis: aioredis.Redis
) -> None:
    service = InventoryService(small_pool, now_ms=clock)
    await service.start()
    try:
        sale = await service.create_sale(make_spec(clock, stock=100, per_user_limit=2))
        # 2,000 concurrent buys from 500 users, 4 presses each, on a pool of 8 connections.
        buys = [
            service.buy(sale.id, f"u_{n % 500:04d}", 1, f"press-{n // 500}") for n in range(2000)
        ]
        results = await asyncio.gather(*buys)
    finally:
        await service.close()

    statuses = Counter(r.status for r in results)
    assert statuses["reserved"] == 100
    assert set(statuses) <= {"reserved", "sold_out", "limit_reached"}
    per_user: Counter[str] = Counter()
    for n, result in enumerate(results):
        if result.reservation is not None:
            per_user[f"u_{n % 500:04d}"] += result.reservation.qty
    assert max(per_user.values()) <= 2
    ids = [r.reservation.id for r in results if r.reservation is not None]
    assert len(set(ids)) == 100

    final = await InventoryService(redis, now_ms=clock).get_sale(sale.id)
    assert (final.remaining, final.held, final.sold, final.status) == (0, 100, 0, "sold_out")
    keys = sale_keys(sale.id)
    assert await redis.hlen(keys.res) == 100
    assert await redis.xlen(keys.stream) == 100
    raw_counts: dict[Any, Any] = await redis.hgetall(keys.users)
    counted = {k.decode(): int(v) for k, v in raw_counts.items()}
    assert counted == dict(per_user)


async def test_limit_counts_held_and_sold_units(service: InventoryService, sale: Sale) -> None:
    first = await service.buy(sale.id, "u_a", 1, "r1")
    assert first.reservation is not None
    await service.commit(first.reservation.id, "u_a")
    second = await service.buy(sale.id, "u_a", 1, "r2")
    assert second.status == "reserved"
    third = await service.buy(sale.id, "u_a", 1, "r3")
    assert (third.status, third.reservation, third.remaining) == ("limit_reached", None, 8)
    # Another buyer is unaffected.
    assert (await service.buy(sale.id, "u_b", 2, "r1")).status == "reserved"


async def test_quantity_over_the_limit_is_refused_whole(
    service: InventoryService, sale: Sale
) -> None:
    result = await service.buy(sale.id, "u_a", 3, "r1")  # limit is 2
    assert result.status == "limit_reached"
    assert (await service.get_sale(sale.id)).remaining == 10


async def test_quantity_above_remaining_is_sold_out_and_takes_nothing(
    service: InventoryService, clock: Clock
) -> None:
    sale = await service.create_sale(make_spec(clock, stock=3, per_user_limit=5))
    assert (await service.buy(sale.id, "u_a", 2, "r1")).status == "reserved"
    result = await service.buy(sale.id, "u_b", 2, "r1")
    assert (result.status, result.remaining) == ("sold_out", 1)
    assert (await service.buy(sale.id, "u_b", 1, "r2")).status == "reserved"
    assert (await service.get_sale(sale.id)).status == "sold_out"


async def test_same_request_id_gets_the_first_answer_and_takes_stock_once(
    service: InventoryService, sale: Sale
) -> None:
    first = await service.buy(sale.id, "u_a", 2, "press-1")
    again = await service.buy(sale.id, "u_a", 1, "press-1")
    assert first.reservation is not None
    assert not first.replayed
    assert again.replayed
    assert (again.status, again.reservation) == ("reserved", first.reservation)
    assert (await service.get_sale(sale.id)).held == 2
    # The same request id from someone else is a different request.
    other = await service.buy(sale.id, "u_b", 1, "press-1")
    assert other.reservation is not None
    assert other.reservation.id != first.reservation.id


async def test_refusals_are_remembered_too(service: InventoryService, sale: Sale) -> None:
    over = await service.buy(sale.id, "u_a", 5, "big")
    assert over.status == "limit_reached"
    # Even once the request would fit, the same id keeps its first answer.
    retry = await service.buy(sale.id, "u_a", 5, "big")
    assert (retry.status, retry.replayed) == ("limit_reached", True)


async def test_concurrent_duplicates_reserve_once(service: InventoryService, sale: Sale) -> None:
    results = await asyncio.gather(*(service.buy(sale.id, "u_a", 1, "same") for _ in range(50)))
    ids = {r.reservation.id for r in results if r.reservation is not None}
    assert len(ids) == 1
    assert all(r.status == "reserved" for r in results)
    assert sum(not r.replayed for r in results) == 1
    sale_now = await service.get_sale(sale.id)
    assert (sale_now.remaining, sale_now.held) == (9, 1)


async def test_not_started_takes_nothing_and_may_be_retried_once_live(
    service: InventoryService, clock: Clock
) -> None:
    sale = await service.create_sale(make_spec(clock, starts_at_ms=clock.now + 10_000))
    early = await service.buy(sale.id, "u_a", 1, "r1")
    assert (early.status, early.reservation, early.remaining) == ("not_started", None, 10)
    clock.advance(10_000)
    live = await service.buy(sale.id, "u_a", 1, "r1")
    assert live.status == "reserved"
    assert not live.replayed


async def test_ended_by_time(service: InventoryService, sale: Sale, clock: Clock) -> None:
    clock.advance(600_000)
    result = await service.buy(sale.id, "u_a", 1, "r1")
    assert result.status == "ended"
    assert (await service.get_sale(sale.id)).remaining == 10


@pytest.mark.parametrize(
    ("user", "qty", "request_id"),
    [
        ("u_a", 0, "r1"),
        ("u_a", -1, "r1"),
        ("u_a", True, "r1"),
        ("u_a", 1.0, "r1"),
        ("u_a", 1, ""),
        ("u_a", 1, "x" * 65),
        ("u_a", 1, 17),
        ("", 1, "r1"),
        ("u:a", 1, "r1"),
    ],
)
async def test_invalid_buy_is_answered_invalid_and_changes_nothing(
    service: InventoryService, sale: Sale, redis: aioredis.Redis, user: str, qty: int,
    request_id: str,
) -> None:
    result = await service.buy(sale.id, user, qty, request_id)
    assert (result.status, result.ok, result.reservation) == ("invalid", False, None)
    assert await redis.hlen(sale_keys(sale.id).req) == 0
    assert (await service.get_sale(sale.id)).remaining == 10


async def test_buy_answer_public_shape(service: InventoryService, sale: Sale) -> None:
    result = await service.buy(sale.id, "u_a", 1, "r1")
    public = result.to_public()
    assert public["ok"] is True
    assert public["status"] == "reserved"
    assert public["remaining"] == 9
    assert set(public["reservation"]) == {"id", "qty", "price_cents", "expires_at"}
    assert public["reservation"]["expires_at"] == sale.starts_at + 30_000
    assert public["reservation"]["id"] == f"{sale.id}.1"


async def test_a_burst_is_decided_by_a_few_script_calls(
    service: InventoryService, clock: Clock, redis: aioredis.Redis
) -> None:
    sale = await service.create_sale(make_spec(clock, stock=500, per_user_limit=1))
    await redis.config_resetstat()
    results = await asyncio.gather(
        *(service.buy(sale.id, f"u_{n}", 1, "r") for n in range(1000))
    )
    assert Counter(r.status for r in results) == {"reserved": 500, "sold_out": 500}
    stats = await redis.info("commandstats")
    calls = stats["cmdstat_evalsha"]["calls"]
    assert calls <= 20, f"1,000 buys took {calls} script calls"


async def test_script_cache_flush_is_recovered(
    service: InventoryService, sale: Sale, redis: aioredis.Redis
) -> None:
    await redis.script_flush()
    result = await service.buy(sale.id, "u_a", 1, "r1")
    assert result.status == "reserved"
    await redis.script_flush()
    assert result.reservation is not None
    assert (await service.commit(result.reservation.id, "u_a")).state == "committed"


async def test_overload_answers_rate_limited_at_once_and_loses_no_accepted_buy(
    redis_server: EmbeddedRedis, clock: Clock, redis: aioredis.Redis
) -> None:
    """Redis stalls (here: a relay in front of it holds every command) while 1,000 buyers
    press: the excess over what the service may queue is answered ``rate_limited`` during the
    stall, and every accepted buy is decided once Redis answers again."""
    proxy = await StallProxy(redis_server.port).start()
    client = aioredis.Redis(port=proxy.port, max_connections=4)
    service = InventoryService(client, now_ms=clock, max_pending=100, max_inflight=1)
    await service.start()
    try:
        sale = await service.create_sale(make_spec(clock, stock=1000, per_user_limit=1))
        proxy.hold()
        answers: list[BuyResult] = []

        async def buy(n: int) -> None:
            answers.append(await service.buy(sale.id, f"u_{n}", 1, "r"))

        buys = [asyncio.create_task(buy(n)) for n in range(1000)]
        for _ in range(3000):
            if len(answers) >= 900:
                break
            await asyncio.sleep(0.01)
        assert Counter(a.status for a in answers) == {"rate_limited": 900}, (
            "the excess is answered while Redis is stalled, nothing else is")
        proxy.release()
        await asyncio.gather(*buys)
    finally:
        proxy.release()
        await service.close()
        await client.aclose()
        await proxy.close()
    assert Counter(a.status for a in answers) == {"rate_limited": 900, "reserved": 100}
    final = await InventoryService(redis, now_ms=clock).get_sale(sale.id)
    assert final.held == 100


async def test_buy_needs_a_running_service(redis: aioredis.Redis, clock: Clock) -> None:
    service = InventoryService(redis, now_ms=clock)
    sale = await service.create_sale(make_spec(clock))
    with pytest.raises(ServiceNotRunning):
        await service.buy(sale.id, "u_a", 1, "r1")
    await service.start()
    assert (await service.buy(sale.id, "u_a", 1, "r1")).status == "reserved"
    await service.close()
    with pytest.raises(ServiceNotRunning):
        await service.buy(sale.id, "u_a", 1, "r2")


async def test_close_decides_buys_already_accepted(redis: aioredis.Redis, clock: Clock) -> None:
    service = InventoryService(redis, now_ms=clock, batch_window_s=0.05)
    await service.start()
    sale = await service.create_sale(make_spec(clock, per_user_limit=1))
    pending = [asyncio.ensure_future(service.buy(sale.id, f"u_{n}", 1, "r")) for n in range(5)]
    await asyncio.sleep(0)
    await service.close()
    assert [p.result().status for p in pending] == ["reserved"] * 5


async def test_stored_answer_is_msgpack_keyed_by_user_and_request(
    service: InventoryService, sale: Sale, redis: aioredis.Redis
) -> None:
    result = await service.buy(sale.id, "u_a", 1, "r1")
    raw = await redis.hget(sale_keys(sale.id).req, "u_a:r1")
    assert raw is not None
    assert result.reservation is not None
    assert msgpack.unpackb(raw)[:2] == ["reserved", result.reservation.id]


async def test_unreachable_redis_is_a_typed_error(clock: Clock) -> None:
    from liveroom.redis_server import free_port

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    service = InventoryService(client, now_ms=clock)
    with pytest.raises(StoreUnavailable) as info:
        await service.start()
    assert info.value.http_status == 503
    with pytest.raises(StoreUnavailable):
        await service.commit("s_AAAAAAAAAA.1", "u_a")
    await client.aclose()


class Answers:
    """Collects ``buy_nowait`` answers; ``wait(n)`` until n have come."""

    def __init__(self) -> None:
        self.outcomes: list[BuyResult | Exception] = []
        self._changed = asyncio.Event()

    def __call__(self, outcome: BuyResult | Exception) -> None:
        self.outcomes.append(outcome)
        self._changed.set()

    async def wait(self, count: int) -> list[BuyResult | Exception]:
        while len(self.outcomes) < count:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 30)  # bounds failure only
        return self.outcomes


async def test_buy_nowait_answers_through_the_callback(
    service: InventoryService, sale: Sale
) -> None:
    answers = Answers()
    assert service.buy_nowait(sale.id, "u_a", 1, "r1", answers) is None
    assert service.buy_nowait(sale.id, "u_b", 2, "r1", answers) is None
    immediate = service.buy_nowait(sale.id, "u_a", 0, "r2", answers)
    assert immediate is not None
    assert immediate.status == "invalid"
    outcomes = await answers.wait(2)
    assert [(o.status, o.remaining) for o in outcomes if isinstance(o, BuyResult)] == [
        ("reserved", 7), ("reserved", 7)]
    # The same request again is the stored first answer, through either form.
    again = await service.buy(sale.id, "u_b", 2, "r1")
    first = outcomes[1]
    assert isinstance(first, BuyResult)
    assert (again.replayed, again.reservation) == (True, first.reservation)


async def test_a_failing_callback_does_not_cost_the_others_their_answer(
    service: InventoryService, sale: Sale, caplog: pytest.LogCaptureFixture
) -> None:
    answers = Answers()

    def broken(outcome: BuyResult | Exception) -> None:
        raise RuntimeError("the socket went away")

    assert service.buy_nowait(sale.id, "u_a", 1, "r1", broken) is None
    assert service.buy_nowait(sale.id, "u_b", 1, "r1", answers) is None
    outcome = (await answers.wait(1))[0]
    assert isinstance(outcome, BuyResult)
    assert outcome.status == "reserved"
    assert "could not be delivered" in caplog.text
    # The broken caller's unit is held all the same: its retry gets the stored answer.
    assert (await service.buy(sale.id, "u_a", 1, "r1")).replayed


async def test_a_batch_that_fails_gives_every_callback_the_exception(
    service: InventoryService,
) -> None:
    answers = Answers()
    for user in ("u_a", "u_b"):
        assert service.buy_nowait("s_NOSUCHSALE", user, 1, "r1", answers) is None
    outcomes = await answers.wait(2)
    assert [type(o).__name__ for o in outcomes] == ["UnknownSale", "UnknownSale"]


async def test_a_script_error_is_logged_and_answered_without_redis_details(
    service: InventoryService, sale: Sale, redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A key of the wrong type makes the script fail inside Redis (as a bug would).
    await redis.delete(sale_keys(sale.id).users)
    await redis.set(sale_keys(sale.id).users, "not a hash")
    with pytest.raises(ScriptFailed) as info:
        await service.buy(sale.id, "u_a", 1, "r1")
    assert (info.value.code, info.value.http_status) == ("internal_error", 500)
    assert "WRONGTYPE" not in str(info.value)
    assert "WRONGTYPE" in caplog.text
    assert "buy_batch" in caplog.text
