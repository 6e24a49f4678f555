"""The per-connection token bucket behind the buy and event rate limits."""

from __future__ import annotations

from liveroom.ratelimit import TokenBucket


def test_a_fresh_bucket_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=3)
    assert [bucket.take(1.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after_ms() == 501  # half a second earns the next token


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst() -> None:
    bucket = TokenBucket(rate_per_s=2, burst=3)
    for _ in range(3):
        assert bucket.take(0.0)
    assert not bucket.take(0.4)  # 0.8 of a token so far
    assert bucket.take(0.5)  # one whole token at 0.5 s
    assert not bucket.take(0.5)
    # A long pause refills to the burst, not more.
    assert [bucket.take(60.0) for _ in range(4)] == [True, True, True, False]


def test_time_going_backwards_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1, burst=1)
    assert bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(5.9)  # measured from the earlier reading: 0.9 of a token
    assert bucket.take(6.0)


def test_a_cost_above_one_takes_that_many_tokens() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5)
    assert bucket.take(0.0, cost=4)
    assert not bucket.take(0.0, cost=2)
    assert bucket.take(0.1, cost=2)
