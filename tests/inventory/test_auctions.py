"""Auctions in Redis: bids decided in batches, increments, anti-sniping, the close (once), the
winner's hold handed to orders, the second-chance offer. A real Redis; a clock moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis

from inventory import (
    INCREMENT_BANDS,
    MAX_BID_CENTS,
    Auction,
    AuctionService,
    AuctionSpec,
    InvalidAuction,
    InventoryService,
    UnknownAuction,
    increment_cents,
)
from inventory.keys import ACTIVE_SALES, auction_sale_id, sale_keys
from tests.clock import Clock

ROOMS = ("r_room000001",)


def make_auction_spec(clock: Clock, **changes: Any) -> AuctionSpec:
    spec = AuctionSpec(
        room_id="r_room000001", product_id="p_prod000001", anchor_id="u_anchor000001",
        title="Qing vase 青花瓶", category="antiques", brand="",
        start_cents=10_000, starts_at_ms=clock.now, duration_ms=60_000, extend_ms=10_000,
        sudden_death=False, hold_ms=30_000,
    )
    return replace(spec, **changes)


@pytest.fixture
async def auctions(redis: aioredis.Redis, clock: Clock) -> AsyncIterator[AuctionService]:
    svc = AuctionService(redis, now_ms=clock)
    await svc.start()
    yield svc
    await svc.close()
    await svc.disconnect()


@pytest.fixture
async def auction(auctions: AuctionService, clock: Clock) -> Auction:
    return await auctions.create_auction(make_auction_spec(clock))


async def test_bids_lead_by_the_band_increment_and_too_low_names_the_minimum(
    auctions: AuctionService, auction: Auction
) -> None:
    low = await auctions.bid(auction.id, "u_a", "Ann", 9_999, "1", ROOMS)
    assert low.status == "too_low"
    assert low.state is not None
    assert low.state.min_next_cents == 10_000
    first = await auctions.bid(auction.id, "u_a", "Ann", 10_000, "2", ROOMS)
    assert first.status == "leading"
    assert first.state is not None
    assert (first.state.price_cents, first.state.leader_name) == (10_000, "Ann")
    assert first.state.bids == 1
    # 100.00 is in the 100.00-249.99 band (+2.50): the next bid is 102.50.
    assert first.state.min_next_cents == 10_000 + increment_cents(10_000) == 10_250
    short = await auctions.bid(auction.id, "u_b", "Bo", 10_249, "1", ROOMS)
    assert short.status == "too_low"
    assert short.state is not None
    assert short.state.min_next_cents == 10_250
    assert (await auctions.bid(auction.id, "u_b", "Bo", 10_250, "2", ROOMS)).status == "leading"
    state = (await auctions.get_auction(auction.id)).state
    assert (state.price_cents, state.leader_id, state.bids) == (10_250, "u_b", 2)


async def test_the_lua_band_table_matches_the_documented_one(
    auctions: AuctionService, clock: Clock
) -> None:
    # For a price in each band, the script's minimum next bid is price + the table's increment.
    for below, step in INCREMENT_BANDS:
        price = below - 1
        auction = await auctions.create_auction(make_auction_spec(clock, start_cents=price))
        result = await auctions.bid(auction.id, "u_a", "Ann", price, "r", ROOMS)
        assert result.state is not None
        assert result.state.min_next_cents == price + step
        assert increment_cents(price) == step
    top = await auctions.create_auction(make_auction_spec(clock, start_cents=1_000_000))
    result = await auctions.bid(top.id, "u_a", "Ann", 1_000_000, "r", ROOMS)
    assert result.state is not None
    assert result.state.min_next_cents == 1_010_000


async def test_a_leader_cannot_bid_against_their_own_lead(
    auctions: AuctionService, auction: Auction
) -> None:
    assert (await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)).status == "leading"
    again = await auctions.bid(auction.id, "u_a", "Ann", 50_000, "2", ROOMS)
    assert again.status == "already_leading"
    assert again.state is not None
    assert again.state.price_cents == 10_000


async def test_arrival_order_breaks_ties_within_a_batch_and_overtaken_bids_read_outbid(
    auctions: AuctionService, auction: Auction
) -> None:
    # Submitted in one go, so they are decided in one script call, in this order.
    first, tie, higher = await asyncio.gather(
        auctions.bid(auction.id, "u_a", "Ann", 20_000, "1", ROOMS),
        auctions.bid(auction.id, "u_b", "Bo", 20_000, "1", ROOMS),
        auctions.bid(auction.id, "u_c", "Cy", 30_000, "1", ROOMS),
    )
    assert (first.status, tie.status, higher.status) == ("outbid", "too_low", "leading")
    assert higher.state is not None
    assert higher.state.leader_id == "u_c"
    assert higher.state.bids == 2


async def test_a_bid_is_idempotent_by_request_id(
    auctions: AuctionService, auction: Auction
) -> None:
    first = await auctions.bid(auction.id, "u_a", "Ann", 10_000, "same", ROOMS)
    again = await auctions.bid(auction.id, "u_a", "Ann", 10_000, "same", ROOMS)
    assert (first.status, first.replayed) == ("leading", False)
    assert (again.status, again.replayed) == ("leading", True)
    assert (await auctions.get_auction(auction.id)).state.bids == 1


async def test_bids_before_the_start_and_after_the_end_change_nothing(
    auctions: AuctionService, clock: Clock
) -> None:
    later = await auctions.create_auction(make_auction_spec(clock, starts_at_ms=clock.now + 5_000))
    assert (await auctions.bid(later.id, "u_a", "Ann", 10_000, "1", ROOMS)).status == "not_started"
    clock.advance(5_000)
    # A not_started answer is not remembered: the same request may lead once it opens.
    assert (await auctions.bid(later.id, "u_a", "Ann", 10_000, "1", ROOMS)).status == "leading"
    clock.advance(60_000)
    ended = await auctions.bid(later.id, "u_b", "Bo", 90_000, "1", ROOMS)
    assert ended.status == "ended"
    state = (await auctions.get_auction(later.id)).state
    assert (state.status, state.leader_id, state.price_cents) == ("ended", "u_a", 10_000)


async def test_a_bid_in_the_last_extend_s_moves_the_end(
    auctions: AuctionService, auction: Auction, clock: Clock
) -> None:
    end = auction.state.ends_at
    clock.advance(30_000)  # 30 s left: more than extend (10 s), no change
    calm = await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)
    assert calm.state is not None
    assert calm.state.ends_at == end
    assert not calm.extended
    clock.advance(28_000)  # 2 s left
    snipe = await auctions.bid(auction.id, "u_b", "Bo", 10_250, "1", ROOMS)
    assert snipe.extended
    assert snipe.state is not None
    assert snipe.state.ends_at == clock.now + 10_000
    clock.advance(9_000)  # past the first end, inside the extension
    assert (await auctions.bid(auction.id, "u_a", "Ann", 10_500, "2", ROOMS)).status == "leading"
    assert (await auctions.get_auction(auction.id)).state.ends_at == clock.now + 10_000


async def test_sudden_death_never_extends(auctions: AuctionService, clock: Clock) -> None:
    auction = await auctions.create_auction(
        make_auction_spec(clock, sudden_death=True, extend_ms=0))
    clock.advance(59_999)
    last = await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)
    assert last.status == "leading"
    assert not last.extended
    assert last.state is not None
    assert last.state.ends_at == auction.state.ends_at
    clock.advance(1)
    assert (await auctions.bid(auction.id, "u_b", "Bo", 20_000, "1", ROOMS)).status == "ended"


async def test_banned_bidders_are_refused(auctions: AuctionService, auction: Auction,
                                          clock: Clock) -> None:
    await auctions.set_bidder_bans(auction.id, {"u_bad": clock.now + 1_000})
    assert (await auctions.bid(auction.id, "u_bad", "Bad", 10_000, "1", ROOMS)).status == "banned"
    clock.advance(1_000)
    assert (await auctions.bid(auction.id, "u_bad", "Bad", 10_000, "1", ROOMS)).status == "leading"


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, "100", None, MAX_BID_CENTS + 1, 10**30])
async def test_bad_amounts_are_invalid_and_change_nothing(
    auctions: AuctionService, auction: Auction, amount: Any
) -> None:
    result = await auctions.bid(auction.id, "u_a", "Ann", amount, "1", ROOMS)
    assert result.status == "invalid"
    assert (await auctions.get_auction(auction.id)).state.bids == 0


async def test_unknown_and_malformed_auction_ids_are_refused(auctions: AuctionService) -> None:
    with pytest.raises(UnknownAuction):
        await auctions.bid("a_nothere000", "u_a", "Ann", 100, "1", ROOMS)
    with pytest.raises(UnknownAuction):
        await auctions.bid("s_nothere000", "u_a", "Ann", 100, "1", ROOMS)
    with pytest.raises(UnknownAuction):
        await auctions.get_auction("a_nothere000")


@pytest.mark.parametrize("changes", [
    {"duration_ms": 4_999}, {"duration_ms": 600_001}, {"start_cents": 0},
    {"start_cents": MAX_BID_CENTS + 1}, {"extend_ms": 0}, {"extend_ms": 121_000},
    {"start_cents": 1.5}, {"room_id": ""},
])
async def test_bad_auction_specs_are_refused(
    auctions: AuctionService, clock: Clock, redis: aioredis.Redis, changes: dict[str, Any]
) -> None:
    with pytest.raises(InvalidAuction):
        await auctions.create_auction(make_auction_spec(clock, **changes))
    assert await redis.dbsize() == 0


async def stream_types(redis: aioredis.Redis, sale_id: str) -> list[tuple[str, dict[str, Any]]]:
    entries: Any = await redis.xrange(sale_keys(sale_id).stream)
    return [(f[b"type"].decode(), msgpack.unpackb(f[b"data"])) for _, f in entries]


async def test_the_close_happens_once_and_holds_the_unit_for_the_winner_at_their_bid(
    auctions: AuctionService, auction: Auction, clock: Clock, redis: aioredis.Redis
) -> None:
    await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)
    await auctions.bid(auction.id, "u_b", "Bo", 12_000, "1", ROOMS)
    assert await auctions.due_ids() == []
    clock.advance(60_000)
    assert await auctions.due_ids() == [auction.id]
    # Every process's closer may step it at once: one closes it.
    steps = await asyncio.gather(*(auctions.step(auction.id) for _ in range(5)))
    closings = [s for s in steps if s is not None]
    assert len(closings) == 1
    closing = closings[0]
    assert closing.kind == "closed"
    assert closing.holder == "u_b"
    assert closing.hold is not None
    assert closing.hold.price_cents == 12_000
    assert closing.hold.expires_at == clock.now + 30_000
    sale_id = auction_sale_id(auction.id)
    assert [(t, d["user"], d["price_cents"]) for t, d in await stream_types(redis, sale_id)] == [
        ("reserved", "u_b", 12_000)]
    assert await redis.sismember(ACTIVE_SALES, sale_id)
    # The hold is then a flash-sale reservation like any other: the checkout commits it.
    inventory = InventoryService(redis, now_ms=clock)
    await inventory.start()
    try:
        assert (await inventory.buy(sale_id, "u_c", 1, "x")).status == "ended"
        sold = await inventory.commit(closing.hold.id, "u_b")
        assert (sold.state, sold.price_cents, sold.product_id) == ("committed", 12_000,
                                                                  "p_prod000001")
    finally:
        await inventory.close()
        await inventory.disconnect()
    clock.advance(30_000)
    # Sold: the runner-up gets nothing, and the auction leaves the due list.
    assert await auctions.step(auction.id) is None
    state = (await auctions.get_auction(auction.id)).state
    assert state.second_chance == "sold"
    assert await auctions.due_ids() == []


async def test_an_extended_auction_is_not_closed_at_its_first_end(
    auctions: AuctionService, auction: Auction, clock: Clock
) -> None:
    clock.advance(55_000)
    await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)  # end -> now + 10 s
    clock.advance(5_000)
    assert await auctions.due_ids() == [auction.id]
    assert await auctions.step(auction.id) is None
    assert await auctions.due_ids() == []
    clock.advance(5_000)
    closing = await auctions.step(auction.id)
    assert closing is not None
    assert closing.holder == "u_a"


async def test_an_auction_without_bids_closes_without_a_hold(
    auctions: AuctionService, auction: Auction, clock: Clock
) -> None:
    clock.advance(60_000)
    closing = await auctions.step(auction.id)
    assert closing is not None
    assert closing.hold is None
    assert closing.holder is None
    assert await auctions.due_ids() == []


async def test_a_lapsed_winner_hold_goes_to_the_runner_up_at_their_bid_once(
    auctions: AuctionService, auction: Auction, clock: Clock, redis: aioredis.Redis
) -> None:
    await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)
    await auctions.bid(auction.id, "u_b", "Bo", 10_250, "1", ROOMS)
    await auctions.bid(auction.id, "u_c", "Cy", 15_000, "1", ROOMS)
    clock.advance(60_000)
    closing = await auctions.step(auction.id)
    assert closing is not None
    assert closing.holder == "u_c"
    clock.advance(29_999)
    assert await auctions.step(auction.id) is None  # the winner's hold still runs
    clock.advance(1)
    offer = await auctions.step(auction.id)
    assert offer is not None
    assert offer.kind == "second_chance"
    assert offer.holder == "u_b"
    assert offer.hold is not None
    assert offer.hold.price_cents == 10_250
    clock.advance(30_000)
    assert await auctions.step(auction.id) is None  # once: nobody after the runner-up
    events = await stream_types(redis, auction_sale_id(auction.id))
    assert [(t, d["user"]) for t, d in events] == [
        ("reserved", "u_c"), ("expired", "u_c"), ("reserved", "u_b")]


async def test_ending_early_sells_to_the_leader_now(
    auctions: AuctionService, auction: Auction
) -> None:
    await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)
    closing = await auctions.end_auction(auction.id, "room_ended")
    assert closing is not None
    assert closing.holder == "u_a"
    assert await auctions.end_auction(auction.id, "room_ended") is None
    after = await auctions.get_auction(auction.id)
    assert after.state.status == "ended"
    assert after.ended_reason == "room_ended"
    assert (await auctions.bid(auction.id, "u_b", "Bo", 90_000, "1", ROOMS)).status == "ended"


async def test_a_bid_from_outside_the_auctions_room_is_refused(
    auctions: AuctionService, auction: Auction
) -> None:
    other = await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ("r_elsewhere01",))
    assert other.status == "not_in_room"
    assert (await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ())).status == "not_in_room"
    # Nothing was decided: the same request leads once its bidder is in the room.
    assert (await auctions.bid(auction.id, "u_a", "Ann", 10_000, "1", ROOMS)).status == "leading"


async def test_a_start_read_from_the_clock_a_moment_ago_is_now(
    auctions: AuctionService, clock: Clock
) -> None:
    spec = make_auction_spec(clock)
    clock.advance(1)  # the caller read the clock, then the clock moved on
    auction = await auctions.create_auction(spec)
    assert auction.state.status == "live"
    clock.advance(60_000)
    with pytest.raises(InvalidAuction):
        await auctions.create_auction(spec)  # it would be over already
