"""The hand-off stream's schema (``handoff.schema``) is the one both sides follow: the
inventory's Lua writes exactly its fields and types, on its stream key, for its consumer group,
and the orders consumer reads what the Lua wrote. On a real Redis, after real buys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from handoff import schema
from inventory import HoldSweeper, InventoryService, SaleSpec
from inventory._scripts import load_script
from inventory.keys import ACTIVE_SALES, sale_keys
from orders import HandoffConsumer, SqliteOrderStore, decode_entry
from orders._store import STATE_RANK
from tests.clock import Clock

SALE_SPEC = SaleSpec(
    room_id="r_room000001", product_id="p_prod000001", anchor_id="u_anchor000001",
    title="Silk scarf", category="", brand="Acme", stock=10, price_cents=19_900,
    per_user_limit=5, starts_at_ms=0, ends_at_ms=0, hold_ms=30_000,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def inventory(redis: aioredis.Redis, clock: Clock) -> AsyncIterator[InventoryService]:
    service = InventoryService(redis, now_ms=clock)
    await service.start()
    yield service
    await service.close()
    await service.disconnect()


async def _sale(service: InventoryService, clock: Clock) -> str:
    spec = replace(SALE_SPEC, starts_at_ms=clock.now, ends_at_ms=clock.now + 600_000)
    return (await service.create_sale(spec)).id


async def _hold(service: InventoryService, sale_id: str, user: str) -> str:
    result = await service.buy(sale_id, user, 1, f"{user}-1")
    assert result.reservation is not None, result
    return result.reservation.id


async def _entries(redis: aioredis.Redis, sale_id: str) -> list[dict[bytes, bytes]]:
    entries: Any = await redis.xrange(schema.stream_key(sale_id))
    return [fields for _, fields in entries]


async def test_every_script_writes_exactly_the_schema_and_the_consumer_reads_it(
    redis: aioredis.Redis, inventory: InventoryService, clock: Clock, data_dir: Path
) -> None:
    sale_id = await _sale(inventory, clock)
    sold = await _hold(inventory, sale_id, "u_sold")
    await inventory.commit(sold, "u_sold")
    given_back = await _hold(inventory, sale_id, "u_gave")
    await inventory.release(given_back, "u_gave")
    forgotten = await _hold(inventory, sale_id, "u_late")
    clock.advance(30_000)
    await HoldSweeper(inventory).sweep_once()
    assert await inventory.restock(sold)

    entries = await _entries(redis, sale_id)
    names = {field.name: field for field in schema.FIELDS}
    written = []
    for fields in entries:
        assert set(fields) == {schema.TYPE_FIELD.encode(), schema.DATA_FIELD.encode()}
        data = msgpack.unpackb(fields[schema.DATA_FIELD.encode()], raw=False)
        assert set(data) == set(names)
        for name, value in data.items():
            assert type(value) is names[name].type, name
        assert data[schema.EVENT_TIME_FIELD] <= clock.now
        written.append((fields[schema.TYPE_FIELD.encode()].decode(), data["reservation"]))
    assert written == [
        ("reserved", sold), ("committed", sold), ("reserved", given_back),
        ("released", given_back), ("reserved", forgotten), ("expired", forgotten),
        ("restocked", sold),
    ]
    assert {kind for kind, _ in written} == set(schema.ENTRY_TYPES)

    store = SqliteOrderStore.in_data_dir(data_dir)
    await store.open()
    try:
        consumer = HandoffConsumer(redis, store, now_ms=clock)
        assert await consumer.process_once() == len(entries)
        recorded = {rid: await store.get_reservation(rid) for rid in (sold, given_back, forgotten)}
    finally:
        await store.close()
    states = {rid: info.state if info else None for rid, info in recorded.items()}
    assert states == {sold: "restocked", given_back: "released", forgotten: "expired"}
    info = recorded[sold]
    assert info is not None
    assert (info.sale_id, info.room_id, info.product_id, info.anchor_id, info.user_id, info.qty,
            info.price_cents, info.title, info.category, info.brand) == (
        sale_id, "r_room000001", "p_prod000001", "u_anchor000001", "u_sold", 1, 19_900,
        "Silk scarf", "", "Acme")


async def test_a_field_added_to_the_schema_is_written_by_the_lua_and_read_by_the_consumer(
    redis: aioredis.Redis, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = load_script("buy_batch").sha
    # The inventory's reservation record has a ``state``; the hand-off leaves it out until the
    # schema names it.
    monkeypatch.setattr(schema, "FIELDS", (*schema.FIELDS, schema.Field("state", str)))
    assert load_script("buy_batch").sha != before, "registered anew under another SHA"
    service = InventoryService(redis, now_ms=clock)
    await service.start()
    try:
        sale_id = await _sale(service, clock)
        rid = await _hold(service, sale_id, "u_a")
    finally:
        await service.close()
        await service.disconnect()
    [fields] = await _entries(redis, sale_id)
    entry = schema.decode(fields)
    assert entry.text("state") == "held"
    assert entry.text("reservation") == rid
    assert decode_entry(sale_id, "1-0", fields).reservation is not None


async def test_the_stream_its_group_and_the_sales_set_are_the_schemas(
    redis: aioredis.Redis, inventory: InventoryService, clock: Clock
) -> None:
    sale_id = await _sale(inventory, clock)
    stream = sale_keys(sale_id).stream
    assert stream == schema.stream_key(sale_id)
    assert stream.startswith(sale_keys(sale_id).meta.removesuffix(":meta")), "one hash tag"
    groups: Any = await redis.xinfo_groups(stream)
    assert [group["name"].decode() for group in groups] == [schema.CONSUMER_GROUP]
    assert ACTIVE_SALES == schema.SALES_KEY
    assert await redis.sismember(schema.SALES_KEY, sale_id)


def test_the_consumers_state_order_knows_every_entry_type() -> None:
    assert set(STATE_RANK) == set(schema.ENTRY_TYPES)


DATA: dict[str, int | str] = {
    "reservation": "s_sale000001.1", "sale": "s_sale000001", "room": "r_room000001",
    "product": "p_prod000001", "anchor": "u_anchor00001", "user": "u_buyer000001", "qty": 1,
    "price_cents": 19_900, "title": "", "category": "", "brand": "", "expires_at": 5, "ts": 4,
}


def test_encode_and_decode_agree_and_unknown_keys_are_ignored() -> None:
    fields = schema.encode("committed", DATA)
    entry = schema.decode(fields)
    assert (entry.type, dict(entry.data)) == ("committed", DATA)
    newer = {**fields, "data": msgpack.packb({**DATA, "coupon": "X"}, use_bin_type=True)}
    assert dict(schema.decode(newer).data) == DATA
    as_redis_answers = {k.encode(): v.encode() if isinstance(v, str) else v
                        for k, v in fields.items()}
    assert schema.decode(as_redis_answers) == entry


@pytest.mark.parametrize(("fields", "error"), [
    ({"type": "sold", "data": msgpack.packb(DATA)}, "unknown type 'sold'"),
    ({"type": "reserved"}, "missing data"),
    ({"type": "reserved", "data": b"\xc1"}, "data is not msgpack"),
    ({"type": "reserved", "data": msgpack.packb([1, 2])}, "data is not a map"),
    ({"type": "reserved", "data": msgpack.packb({**DATA, "user": ""})}, "user must be text"),
    ({"type": "reserved", "data": msgpack.packb({**DATA, "qty": True})},
     "qty must be a 64-bit integer"),
    ({"type": "reserved", "data": msgpack.packb({**DATA, "ts": 2**63})},
     "ts must be a 64-bit integer"),
    ({"type": "reserved", "data": msgpack.packb({k: v for k, v in DATA.items() if k != "ts"})},
     "ts must be a 64-bit integer"),
])
def test_decode_says_what_does_not_follow_the_schema(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(schema.MalformedEntry, match=error):
        schema.decode(fields)
