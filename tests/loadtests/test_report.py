"""The audit and the report built from worker results, on hand-made books."""

from __future__ import annotations

from loadtests import Histogram, audit, build_report, render_text
from loadtests._chart import render_chart


def books(held: int, sold: int, remaining: int) -> dict[str, object]:
    return {"id": "s_test", "status": "sold_out", "held": held, "sold": sold,
            "remaining": remaining}


def check(result, name):
    return next(c for c in result["checks"] if c["name"] == name)


def test_a_correct_sell_out_passes_every_check():
    result = audit(stock=30, per_user_limit=2, qty=1, sale=books(25, 5, 0), acked_reserved=30,
                   demand_decided=600, demand_possible=600, unknown_attempts=0, over_limit=[])
    assert result["passed"] is True
    assert result["oversold"] == 0


def test_more_taken_than_stock_is_oversold():
    result = audit(stock=30, per_user_limit=2, qty=1, sale=books(31, 0, -1), acked_reserved=31,
                   demand_decided=600, demand_possible=600, unknown_attempts=0, over_limit=[])
    assert result["passed"] is False
    assert result["oversold"] == 1
    assert check(result, "nothing_oversold")["ok"] is False


def test_a_buyer_over_the_limit_fails_the_audit():
    greedy = [{"user": "u_greedy", "units": 3}]
    result = audit(stock=30, per_user_limit=2, qty=1, sale=books(30, 0, 0), acked_reserved=30,
                   demand_decided=600, demand_possible=600, unknown_attempts=0,
                   over_limit=greedy)
    assert result["passed"] is False
    assert result["over_limit_buyers"] == greedy
    assert check(result, "nobody_over_limit")["ok"] is False


def test_units_left_while_demand_exceeded_stock_fail_the_audit():
    result = audit(stock=30, per_user_limit=2, qty=1, sale=books(20, 0, 10), acked_reserved=20,
                   demand_decided=600, demand_possible=600, unknown_attempts=0, over_limit=[])
    assert result["passed"] is False
    assert check(result, "taken_matches_demand")["ok"] is False
    assert check(result, "books_balance")["ok"] is True


def test_a_reservation_the_buyer_was_never_told_about_is_caught():
    result = audit(stock=30, per_user_limit=2, qty=1, sale=books(30, 0, 0), acked_reserved=29,
                   demand_decided=600, demand_possible=600, unknown_attempts=0, over_limit=[])
    assert check(result, "acks_match_server")["ok"] is False
    # ...unless a buy timed out, so the buyer may simply not have heard back.
    widened = audit(stock=30, per_user_limit=2, qty=1, sale=books(30, 0, 0), acked_reserved=29,
                    demand_decided=599, demand_possible=600, unknown_attempts=1, over_limit=[])
    assert widened["passed"] is True


def worker_result(worker: int, latencies_us: list[int], reserved: int) -> dict[str, object]:
    latency = Histogram.of(latencies_us).to_dict()
    return {
        "worker": worker, "buyers": 10, "connected": 10, "sent": len(latencies_us),
        "answered": len(latencies_us),
        "statuses": {"reserved": reserved, "sold_out": len(latencies_us) - reserved},
        "latency": latency, "send_lag": Histogram.of([100, 200]).to_dict(),
        "connect": Histogram.of([5000, 7000]).to_dict(), "errors": {}, "retries": 0,
        "reserved_units": reserved, "unknown_attempts": 0, "demand_decided": 20,
        "demand_possible": 20, "over_limit": [], "pushes": {"stock": 3},
        "timeline": {"0": {"latency": latency, "statuses": {"reserved": reserved}, "sent": 5}},
        "chat": {"latency": Histogram().to_dict(), "statuses": {}},
        "churn": {"connect": Histogram().to_dict(), "failed": 0},
        "cpu": {"cpu_s": 1.0, "wall_s": 2.0, "mean_core_fraction": 0.5,
                "peak_core_fraction": 0.95 if worker == 1 else 0.4},
    }


def test_the_report_merges_workers_and_warns_about_a_saturated_generator():
    scenario = {"stock": 10, "per_user_limit": 2, "qty": 1, "bucket_ms": 100,
                "url": "http://x", "profile": "spike", "buyers": 20, "attempts": 3}
    results = [worker_result(0, [1000] * 9 + [50_000], 6), worker_result(1, [2000] * 10, 4)]
    report = build_report(scenario=scenario, setup={"room": "r_1", "product": "p_1"},
                          results=results, sale=books(10, 0, 0), wall_s=3.0)
    for key in ("sale", "buyers", "stock", "reserved", "oversold", "statuses", "errors"):
        assert key in report
    assert report["reserved"] == 10
    assert report["oversold"] == 0
    assert report["audit"]["passed"]
    assert report["statuses"] == {"sold_out": 10, "reserved": 10}
    assert report["latency_ms"]["count"] == 20
    assert 0.99 <= report["latency_ms"]["p50"] <= 2.02
    assert 49.5 <= report["latency_ms"]["p999"] <= 50.0
    assert report["throughput"]["buckets"][0]["answered"] == 20
    assert [w for w in report["generator"]["warnings"] if "worker 1" in w]
    assert not [w for w in report["generator"]["warnings"] if "worker 0" in w]
    assert "PASSED" in render_text(report)
    page = render_chart(report)
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "<script" not in page


def order(order_id: str, units: int, total: int, sale: str = "s_test") -> dict[str, object]:
    return {"id": order_id, "sale": sale, "total_cents": total,
            "items": [{"qty": units, "unit_price_cents": total // max(1, units)}]}


def checkout_audit(sale, tally, ok, units, unknown=0, figures=None):
    from loadtests import CheckoutFacts

    return audit(stock=30, per_user_limit=2, qty=1, sale=sale, acked_reserved=30,
                 demand_decided=600, demand_possible=600, unknown_attempts=0, over_limit=[],
                 checkout=CheckoutFacts(ok=ok, units=units, unknown_units=unknown,
                                        price_cents=100, orders=tally, figures=figures))


def test_orders_that_match_the_checkouts_pass():
    from loadtests import OrderTally

    tally = OrderTally()
    tally.add_buyer([order("o_1", 1, 100), order("o_2", 1, 100), order("o_x", 1, 100, "s_other")],
                    "s_test", 100, {"o_1": 1, "o_2": 1})
    result = checkout_audit(books(28, 2, 0), tally, ok=2, units=2,
                            figures={"orders": 2, "gmv_cents": 200})
    assert result["passed"] is True, result["checks"]
    assert (tally.found, tally.units, tally.gmv_cents) == (2, 2, 200)


def test_an_acknowledged_order_the_server_lost_fails():
    from loadtests import OrderTally

    tally = OrderTally()
    tally.add_buyer([order("o_1", 1, 100)], "s_test", 100, {"o_1": 1, "o_2": 1})
    result = checkout_audit(books(28, 2, 0), tally, ok=2, units=2)
    assert check(result, "orders_match_checkouts")["ok"] is False
    assert result["passed"] is False


def test_an_order_at_the_wrong_price_fails():
    from loadtests import OrderTally

    tally = OrderTally()
    tally.add_buyer([order("o_1", 1, 150)], "s_test", 100, {"o_1": 1})
    result = checkout_audit(books(29, 1, 0), tally, ok=1, units=1)
    assert check(result, "order_totals_match_price")["ok"] is False
    assert tally.bad_totals[0]["expected_cents"] == 100


def test_sold_units_nobody_checked_out_fail():
    from loadtests import OrderTally

    tally = OrderTally()
    tally.add_buyer([order("o_1", 1, 100)], "s_test", 100, {"o_1": 1})
    result = checkout_audit(books(27, 3, 0), tally, ok=1, units=1)
    assert check(result, "sold_matches_checkouts")["ok"] is False
    # A checkout whose answer was lost may have sold a unit, but not two.
    widened = checkout_audit(books(28, 2, 0), tally, ok=1, units=1, unknown=1)
    assert check(widened, "sold_matches_checkouts")["ok"] is True


def test_room_figures_that_disagree_with_the_order_lists_fail():
    from loadtests import OrderTally

    tally = OrderTally()
    tally.add_buyer([order("o_1", 1, 100)], "s_test", 100, {"o_1": 1})
    result = checkout_audit(books(29, 1, 0), tally, ok=1, units=1,
                            figures={"orders": 2, "gmv_cents": 200})
    assert check(result, "orders_match_checkouts")["ok"] is False
