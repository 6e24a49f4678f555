"""The event budget's buckets: one per connection, shared per user and per address, counted on a
clock the test moves; an exempt address has no address bucket."""

from __future__ import annotations

from liveroom.sockets._budget import OVERFLOW_BURST, BudgetLimits, Budgets

LIMITS = BudgetLimits(connection_rate=5, connection_burst=5, user_rate=1, user_burst=8,
                      address_rate=1, address_burst=12)


def test_a_users_connections_share_one_bucket() -> None:
    budgets = Budgets(LIMITS)
    phones = [budgets.open("u_1", f"198.51.100.{n}") for n in range(4)]
    admitted = sum(phone.admit(0.0) for phone in phones for _ in range(5))
    assert admitted == 8, "ten sockets of one user get the user's budget, not ten"
    other = budgets.open("u_2", "198.51.100.9")
    assert other.admit(0.0), "another user is not held back"


def test_an_address_is_one_bucket_unless_it_is_exempt() -> None:
    budgets = Budgets(LIMITS)
    crowd = [budgets.open(f"u_{n}", "203.0.113.5") for n in range(6)]
    assert sum(c.admit(0.0) for c in crowd for _ in range(5)) == 12
    exempt = Budgets(LIMITS, unlimited_address=lambda address: address == "203.0.113.5")
    crowd = [exempt.open(f"u_{n}", "203.0.113.5") for n in range(6)]
    assert sum(c.admit(0.0) for c in crowd for _ in range(5)) == 30


def test_buckets_refill_on_the_clock_and_are_dropped_with_their_last_connection() -> None:
    budgets = Budgets(LIMITS)
    first = budgets.open("u_1", "198.51.100.1")
    second = budgets.open("u_1", "198.51.100.1")
    assert sum(first.admit(0.0) for _ in range(10)) == 5
    assert sum(second.admit(0.0) for _ in range(10)) == 3
    assert second.admit(1.0), "a second later the user's bucket has a token again"
    budgets.close("u_1", "198.51.100.1")
    assert budgets.tracked == (1, 1)
    budgets.close("u_1", "198.51.100.1")
    assert budgets.tracked == (0, 0)


def test_a_client_that_keeps_flooding_is_exhausted() -> None:
    budget = Budgets(LIMITS).open("u_1", "198.51.100.1")
    for _ in range(5 + OVERFLOW_BURST):
        budget.admit(0.0)
    assert not budget.exhausted, "a burst past the budget is refused, not cut off"
    budget.admit(0.0)
    assert budget.exhausted
