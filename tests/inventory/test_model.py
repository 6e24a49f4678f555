"""Random interleavings of buy, commit, release, expiry, restock and end against a plain Python
model of one sale. After every step the counters, every buyer's count and every reservation's
state must match the model, and remaining + held + sold must equal the stock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from inventory import (
    HoldExpired,
    HoldNotActive,
    InventoryService,
    NotCommitted,
    NotHolder,
)
from inventory.keys import sale_keys
from tests.clock import Clock

from .conftest import make_spec

T = TypeVar("T")

STOCK = 6
LIMIT = 3
HOLD_MS = 10_000
START_DELAY_MS = 2_000
DURATION_MS = 60_000
USERS = ("u_a", "u_b", "u_c")
REQUEST_IDS = ("r1", "r2", "r3", "r4")


@dataclass
class ModelHold:
    user: str
    qty: int
    expires_at: int
    state: str = "held"


class SaleModel:
    """The rules of a sale, written as plainly as possible."""

    def __init__(self, starts_at: int, ends_at: int) -> None:
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.remaining = STOCK
        self.holds: dict[str, ModelHold] = {}
        self.answers: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.seq = 0

    def held(self) -> int:
        return sum(h.qty for h in self.holds.values() if h.state == "held")

    def sold(self) -> int:
        return sum(h.qty for h in self.holds.values() if h.state == "committed")

    def units(self, user: str) -> int:
        return sum(
            h.qty
            for h in self.holds.values()
            if h.user == user and h.state in {"held", "committed"}
        )

    def buy(self, sale_id: str, user: str, qty: int, rid: str, now: int) -> tuple[str, str | None]:
        if (user, rid) in self.answers:
            return self.answers[(user, rid)]
        if now >= self.ends_at:
            answer: tuple[str, str | None] = ("ended", None)
        elif now < self.starts_at:
            return ("not_started", None)  # not remembered
        elif self.units(user) + qty > LIMIT:
            answer = ("limit_reached", None)
        elif qty > self.remaining:
            answer = ("sold_out", None)
        else:
            self.seq += 1
            reservation_id = f"{sale_id}.{self.seq}"
            self.holds[reservation_id] = ModelHold(user, qty, now + HOLD_MS)
            self.remaining -= qty
            answer = ("reserved", reservation_id)
        self.answers[(user, rid)] = answer
        return answer

    def give_back(self, hold: ModelHold, state: str) -> None:
        hold.state = state
        self.remaining += hold.qty


class SaleMachine(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.client = aioredis.Redis.from_url(self.redis_url)
        # One script call at a time keeps buys in submission order, as the model assumes.
        self.service = InventoryService(self.client, now_ms=self.clock, max_inflight=1)
        self.run(self.service.start())

    @initialize(start_delay_ms=st.sampled_from([0, 0, START_DELAY_MS]))
    def create_sale(self, start_delay_ms: int) -> None:
        spec = make_spec(
            self.clock,
            stock=STOCK,
            per_user_limit=LIMIT,
            hold_ms=HOLD_MS,
            starts_at_ms=self.clock.now + start_delay_ms,
            ends_at_ms=self.clock.now + start_delay_ms + DURATION_MS,
        )
        self.sale = self.run(self.service.create_sale(spec))
        self.model = SaleModel(spec.starts_at_ms, spec.ends_at_ms)

    def run(self, step: Awaitable[T]) -> T:
        return self.loop.run_until_complete(step)

    def teardown(self) -> None:
        self.run(self.service.close())
        self.run(self.client.aclose())
        self.loop.close()

    def pick(self, index: int) -> tuple[str, ModelHold]:
        ids = sorted(self.model.holds)
        reservation_id = ids[index % len(ids)]
        return reservation_id, self.model.holds[reservation_id]

    @rule(
        burst=st.lists(
            st.tuples(
                st.sampled_from(USERS), st.integers(1, LIMIT + 1), st.sampled_from(REQUEST_IDS)
            ),
            min_size=1,
            max_size=6,
        )
    )
    def buy(self, burst: list[tuple[str, int, str]]) -> None:
        """Several buyers press at once; they are decided in arrival order."""

        async def press_all() -> list[Any]:
            return await asyncio.gather(
                *(self.service.buy(self.sale.id, u, q, r) for u, q, r in burst)
            )

        results = self.run(press_all())
        now = self.clock.now
        for (user, qty, rid), result in zip(burst, results, strict=True):
            status, reservation_id = self.model.buy(self.sale.id, user, qty, rid, now)
            got_id = result.reservation.id if result.reservation else None
            assert (result.status, got_id) == (status, reservation_id)

    @precondition(lambda self: self.model.holds)
    @rule(index=st.integers(0, 100), as_holder=st.booleans())
    def commit(self, index: int, as_holder: bool) -> None:
        reservation_id, hold = self.pick(index)
        user = hold.user if as_holder else "u_stranger"
        try:
            got: str = self.run(self.service.commit(reservation_id, user)).state
        except (NotHolder, HoldExpired, HoldNotActive) as exc:
            got = type(exc).__name__
        if not as_holder:
            expected = "NotHolder"
        elif hold.state == "committed":
            expected = "committed"
        elif hold.state == "expired":
            expected = "HoldExpired"
        elif hold.state != "held":
            expected = "HoldNotActive"
        elif self.clock.now >= hold.expires_at:
            self.model.give_back(hold, "expired")
            expected = "HoldExpired"
        else:
            hold.state = "committed"
            expected = "committed"
        assert got == expected

    @precondition(lambda self: self.model.holds)
    @rule(index=st.integers(0, 100))
    def release(self, index: int) -> None:
        reservation_id, hold = self.pick(index)
        try:
            got: str = self.run(self.service.release(reservation_id, hold.user)).state
        except HoldNotActive:
            got = "HoldNotActive"
        if hold.state == "held":
            self.model.give_back(hold, "released")
            expected = "released"
        elif hold.state in {"released", "expired"}:
            expected = hold.state
        else:
            expected = "HoldNotActive"
        assert got == expected

    @precondition(lambda self: self.model.holds)
    @rule(index=st.integers(0, 100))
    def restock(self, index: int) -> None:
        reservation_id, hold = self.pick(index)
        try:
            got: object = self.run(self.service.restock(reservation_id))
        except NotCommitted:
            got = "NotCommitted"
        if hold.state == "restocked":
            expected: object = True
        elif hold.state != "committed":
            expected = "NotCommitted"
        elif self.clock.now >= self.model.ends_at:
            expected = False
        else:
            self.model.give_back(hold, "restocked")
            expected = True
        assert got == expected

    @rule(ms=st.sampled_from([1, 999, 2_000, 5_000, HOLD_MS, 30_000]))
    def time_passes(self, ms: int) -> None:
        self.clock.advance(ms)

    @rule()
    def sweep(self) -> None:
        outcome = self.run(self.service.expire_holds(self.sale.id, limit=2))
        due = [h for h in self.model.holds.values()
               if h.state == "held" and h.expires_at <= self.clock.now]
        due.sort(key=lambda h: h.expires_at)
        assert outcome.expired == min(2, len(due))
        # Which two of several holds due at the same ms go first is the sorted set's business:
        # take them from the real store.
        for reservation_id, hold in self.model.holds.items():
            if hold.state == "held" and hold.expires_at <= self.clock.now:
                real = self.run(self.service.get_reservation(reservation_id)).state
                if real == "expired":
                    self.model.give_back(hold, "expired")

    @rule()
    def anchor_ends(self) -> None:
        self.run(self.service.end_sale(self.sale.id, "anchor"))
        self.model.ends_at = min(self.model.ends_at, self.clock.now)

    @invariant()
    def counters_match_the_model(self) -> None:
        sale = self.run(self.service.get_sale(self.sale.id))
        model = self.model
        assert sale.remaining + sale.held + sale.sold == STOCK
        expected = (model.remaining, model.held(), model.sold())
        assert (sale.remaining, sale.held, sale.sold) == expected
        raw: dict[Any, Any] = self.run(self.client.hgetall(sale_keys(self.sale.id).users))
        counted = {k.decode(): int(v) for k, v in raw.items()}
        for user in USERS:
            assert counted.get(user, 0) == model.units(user) <= LIMIT

    @invariant()
    def reservation_states_match(self) -> None:
        for reservation_id, hold in self.model.holds.items():
            got = self.run(self.service.get_reservation(reservation_id))
            assert (got.state, got.user_id, got.qty) == (hold.state, hold.user, hold.qty)


@pytest.mark.timeout(90)
def test_sale_matches_the_model_under_random_interleavings(redis_url: str) -> None:
    SaleMachine.redis_url = redis_url
    run_state_machine_as_test(
        SaleMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
