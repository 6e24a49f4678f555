"""Merge the workers' results, audit them against the server, and render the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from ._histogram import Histogram
from ._orders import OrderTally, tally_orders

__all__ = ["CheckoutFacts", "audit", "build_report", "checkout_checks", "latency_summary",
           "merge_counts", "render_text"]

# A worker busier than this, in its busiest second, may have been the bottleneck itself.
CPU_WARN_FRACTION = 0.85
# Buys leaving later than this after their intended time mean the generator fell behind.
SEND_LAG_WARN_MS = 50.0


def merge_counts(tables: Sequence[Mapping[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for table in tables:
        for key, count in table.items():
            merged[key] = merged.get(key, 0) + count
    return dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))


def merge_histograms(raws: Sequence[Mapping[str, object]]) -> Histogram:
    merged = Histogram()
    for raw in raws:
        merged.merge(Histogram.from_dict(raw))
    return merged


def _ms(value_us: float | None) -> float | None:
    return None if value_us is None else round(value_us / 1000.0, 3)


def latency_summary(histogram: Histogram) -> dict[str, float | int | None]:
    """Milliseconds; the histogram holds microseconds."""
    return {"count": histogram.total, "min": _ms(histogram.min_value),
            "p50": _ms(histogram.percentile(50)), "p90": _ms(histogram.percentile(90)),
            "p99": _ms(histogram.percentile(99)), "p999": _ms(histogram.percentile(99.9)),
            "max": _ms(histogram.max_value), "mean": _ms(histogram.mean())}


@dataclass
class CheckoutFacts:
    """What the buyers were told about their checkouts, and what the server's books say."""

    ok: int  # checkouts acknowledged with an order
    units: int  # units in those orders, as acknowledged
    unknown_units: int  # units of checkouts that got no answer
    price_cents: int  # the deal price every order must carry
    orders: OrderTally = field(default_factory=OrderTally)
    figures: Mapping[str, Any] | None = None  # the room's figures (GET /api/rooms/{id}/figures)


def checkout_checks(*, sale: Mapping[str, Any], acked_reserved: int, unknown_buy_units: int,
                    facts: CheckoutFacts) -> list[dict[str, Any]]:
    """Orders equal checkouts, every total is qty x deal price, and the sale's ``sold`` is the
    units checked out with ``held`` the rest of what was reserved."""
    held, sold = int(sale["held"]), int(sale["sold"])
    orders = facts.orders
    unknown_orders_ok = orders.unexpected == 0 or facts.unknown_units > 0
    matched = (orders.missing == 0 and orders.fetch_failed == 0 and unknown_orders_ok
               and facts.ok <= orders.found and orders.acked == facts.ok)
    detail = (f"{facts.ok} checkouts acknowledged; the buyers' order lists hold {orders.found} "
              f"orders of this sale ({orders.missing} acknowledged but missing, "
              f"{orders.unexpected} never acknowledged, {orders.fetch_failed} lists unread)")
    if facts.figures is not None:
        figure_orders = int(facts.figures.get("orders", -1))
        figure_gmv = int(facts.figures.get("gmv_cents", -1))
        matched = matched and figure_orders == orders.found and figure_gmv == orders.gmv_cents
        detail += f"; room figures: {figure_orders} orders, {figure_gmv} cents"
    totals_ok = orders.bad_total_count == 0 and (
        facts.unknown_units > 0 or orders.units == orders.acked_units)
    sold_low, sold_high = facts.units, facts.units + facts.unknown_units
    held_low = acked_reserved - sold_high
    held_high = acked_reserved + unknown_buy_units - facts.units
    return [
        {"name": "orders_match_checkouts", "ok": matched, "detail": detail},
        {"name": "order_totals_match_price", "ok": totals_ok,
         "detail": f"{orders.found} orders, {orders.units} units, {orders.gmv_cents} cents at "
                   f"{facts.price_cents} a unit; {orders.bad_total_count} wrong"},
        {"name": "sold_matches_checkouts",
         "ok": sold_low <= sold <= sold_high and held_low <= held <= held_high,
         "detail": f"sold {sold} vs {facts.units} units checked out"
                   + (f" (+ up to {facts.unknown_units} unanswered)" if facts.unknown_units
                      else "")
                   + f"; held {held} vs {acked_reserved - facts.units} reserved and not "
                     f"checked out"},
    ]


def audit(*, stock: int, per_user_limit: int, qty: int, sale: Mapping[str, Any],
          acked_reserved: int, demand_decided: int, demand_possible: int,
          unknown_attempts: int, over_limit: Sequence[Mapping[str, Any]],
          checkout: CheckoutFacts | None = None) -> dict[str, Any]:
    """Check the server's books against what the buyers were told.

    ``demand_decided`` counts the units the server had to decide (per buyer capped at the
    limit); attempts that timed out may or may not have reserved, so they widen the range to
    ``demand_possible``. With ``qty`` > 1 a correct server may leave up to ``qty - 1`` units that
    no request fits. With ``checkout`` the orders are audited too (:func:`checkout_checks`).
    """
    held, sold, remaining = int(sale["held"]), int(sale["sold"]), int(sale["remaining"])
    taken = held + sold
    low = max(0, min(stock, demand_decided) - (qty - 1))
    high = min(stock, demand_possible)
    unknown_units = unknown_attempts * qty
    checks = [
        {"name": "books_balance", "ok": remaining + held + sold == stock,
         "detail": f"remaining {remaining} + held {held} + sold {sold} vs stock {stock}"},
        {"name": "taken_matches_demand", "ok": low <= taken <= high,
         "detail": f"reserved + sold = {taken}; expected min(stock, demand) in [{low}, {high}]"},
        {"name": "acks_match_server", "ok": acked_reserved <= taken <= acked_reserved
         + unknown_units,
         "detail": f"buyers were told {acked_reserved} units reserved; server holds {taken}"
                   + (f" (+ up to {unknown_units} from unanswered buys)" if unknown_units else "")},
        {"name": "nothing_oversold", "ok": taken <= stock and acked_reserved <= stock,
         "detail": f"stock {stock}, server {taken}, acknowledged {acked_reserved}"},
        {"name": "nobody_over_limit", "ok": not over_limit,
         "detail": f"{len(over_limit)} buyers got more than {per_user_limit} units"},
    ]
    if checkout is not None:
        checks += checkout_checks(sale=sale, acked_reserved=acked_reserved,
                                  unknown_buy_units=unknown_units, facts=checkout)
    return {"passed": all(c["ok"] for c in checks), "checks": checks,
            "oversold": max(0, taken - stock, acked_reserved - stock),
            "over_limit_buyers": list(over_limit)}


def _timeline(results: Sequence[Mapping[str, Any]], bucket_ms: int) -> list[dict[str, Any]]:
    buckets: dict[int, tuple[Histogram, dict[str, int], int]] = {}
    for result in results:
        for key, raw in result["timeline"].items():
            latency, statuses, sent = buckets.get(int(key), (Histogram(), {}, 0))
            latency.merge(Histogram.from_dict(raw["latency"]))
            buckets[int(key)] = (latency, merge_counts([statuses, raw["statuses"]]),
                                 sent + int(raw["sent"]))
    rows = []
    for index in range(max(buckets, default=-1) + 1):
        latency, statuses, sent = buckets.get(index, (Histogram(), {}, 0))
        rows.append({"t_ms": index * bucket_ms, "sent": sent, "answered": latency.total,
                     "reserved": statuses.get("reserved", 0) + statuses.get("granted", 0),
                     "p50_ms": _ms(latency.percentile(50)), "p99_ms": _ms(latency.percentile(99)),
                     "max_ms": _ms(latency.max_value)})
    return rows


def answer_gaps(results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """When the first and last answers came (ms after the sale's intended opening) and the
    longest time between two consecutive answers in between, over every process: a pause in
    answers while buys wait is what a buyer notices, however good the percentiles look."""
    times = sorted(t for r in results for t in r.get("answer_times_ms", ()))
    if not times:
        return {"first_ms": None, "last_ms": None, "longest_gap_ms": None, "gap_at_ms": None}
    longest, at = 0.0, times[0]
    for before, after in pairwise(times):
        if after - before > longest:
            longest, at = after - before, before
    return {"first_ms": round(times[0], 1), "last_ms": round(times[-1], 1),
            "longest_gap_ms": round(longest, 1), "gap_at_ms": round(at, 1)}


def build_report(*, scenario: Mapping[str, Any], setup: Mapping[str, Any],
                 results: Sequence[Mapping[str, Any]], sale: Mapping[str, Any],
                 wall_s: float, figures: Mapping[str, Any] | None = None) -> dict[str, Any]:
    latency = merge_histograms([r["latency"] for r in results])
    send_lag = merge_histograms([r["send_lag"] for r in results])
    connect = merge_histograms([r["connect"] for r in results])
    statuses = merge_counts([r["statuses"] for r in results])
    errors = merge_counts([r["errors"] for r in results])
    over_limit = [entry for r in results for entry in r["over_limit"]]
    acked = sum(int(r["reserved_units"]) for r in results)
    unknown = sum(int(r["unknown_attempts"]) for r in results)
    demand_decided = sum(int(r["demand_decided"]) for r in results)
    demand_possible = sum(int(r["demand_possible"]) for r in results)
    stock, limit, qty = int(scenario["stock"]), int(scenario["per_user_limit"]), int(
        scenario["qty"])
    fraction = float(scenario.get("checkout_fraction", 0.0))
    outcomes = [r["checkout"] for r in results if "checkout" in r]
    orders = tally_orders([o["orders"] for o in outcomes])
    facts = CheckoutFacts(ok=sum(int(o["ok"]) for o in outcomes),
                          units=sum(int(o["units"]) for o in outcomes),
                          unknown_units=sum(int(o["unknown_units"]) for o in outcomes),
                          price_cents=int(scenario.get("price_cents", 0)), orders=orders,
                          figures=figures)
    checked = audit(stock=stock, per_user_limit=limit, qty=qty, sale=sale, acked_reserved=acked,
                    demand_decided=demand_decided, demand_possible=demand_possible,
                    unknown_attempts=unknown, over_limit=over_limit,
                    checkout=facts if fraction > 0 else None)
    workers = [{"worker": r["worker"], "buyers": r["buyers"], **r["cpu"]} for r in results]
    warnings = [
        f"worker {w['worker']} used {w['peak_core_fraction']:.0%} of a core in its busiest "
        f"second: the load generator, not the server, may be the bottleneck; add --processes "
        f"or machines" for w in workers if w["peak_core_fraction"] > CPU_WARN_FRACTION]
    lag = send_lag.percentile(99)
    if lag is not None and lag / 1000.0 > SEND_LAG_WARN_MS:
        warnings.append(f"p99 send lag {lag / 1000.0:.0f} ms: buys left the generator late, "
                        f"so it could not keep the schedule (latencies still count from the "
                        f"intended time)")
    timeline = _timeline(results, int(scenario["bucket_ms"]))
    peak = max((row["answered"] for row in timeline), default=0)
    return {
        "sale": sale["id"], "room": setup["room"], "product": setup["product"],
        "url": scenario["url"], "profile": scenario["profile"],
        "buyers": int(scenario["buyers"]),
        "connected": sum(int(r["connected"]) for r in results),
        "processes": len(results), "stock": stock, "per_user_limit": limit, "qty": qty,
        "attempts_per_buyer": int(scenario["attempts"]),
        "demand": demand_decided, "reserved": acked,
        "server": {key: sale.get(key) for key in ("status", "remaining", "held", "sold")},
        "oversold": checked["oversold"], "audit": checked,
        "statuses": statuses, "errors": errors,
        "timeouts": statuses.get("timeout", 0), "retries": sum(int(r["retries"]) for r in results),
        "latency_ms": latency_summary(latency), "send_lag_ms": latency_summary(send_lag),
        "connect_ms": latency_summary(connect),
        "answers": answer_gaps(results),
        "throughput": {"bucket_ms": int(scenario["bucket_ms"]),
                       "peak_answers_per_s": round(peak * 1000 / int(scenario["bucket_ms"]), 1),
                       "buckets": timeline},
        "pushes_received": merge_counts([r["pushes"] for r in results]),
        "chat": {"latency_ms": latency_summary(merge_histograms(
                     [r["chat"]["latency"] for r in results])),
                 "statuses": merge_counts([r["chat"]["statuses"] for r in results])},
        "churn": {"connect_ms": latency_summary(merge_histograms(
                      [r["churn"]["connect"] for r in results])),
                  "failed": sum(int(r["churn"]["failed"]) for r in results)},
        "checkout_fraction": fraction,
        "checkouts": {"attempted": sum(int(o["attempted"]) for o in outcomes), "ok": facts.ok,
                      "units": facts.units, "unknown_units": facts.unknown_units,
                      "retries": sum(int(o["retries"]) for o in outcomes),
                      "statuses": merge_counts([o["statuses"] for o in outcomes])},
        "checkout_latency_ms": latency_summary(merge_histograms(
            [o["latency"] for o in outcomes])),
        "orders": {**orders.to_dict(), "figures": (
            None if figures is None else {k: figures.get(k) for k in ("orders", "gmv_cents",
                                                                      "buyers")})},
        "generator": {"workers": workers, "warnings": warnings},
        "wall_s": round(wall_s, 3),
    }


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value}"


def render_text(report: Mapping[str, Any]) -> str:
    lat, con = report["latency_ms"], report["connect_ms"]
    lines = [
        f"sale {report['sale']}  profile {report['profile']}  buyers {report['buyers']} "
        f"(connected {report['connected']}, {report['processes']} processes)  "
        f"stock {report['stock']}  limit {report['per_user_limit']}",
        f"buys        {lat['count']} answered, {report['retries']} retries, "
        f"peak {report['throughput']['peak_answers_per_s']} answers/s",
        "latency ms  " + "  ".join(f"{k} {_fmt(lat[k])}"
                                   for k in ("p50", "p90", "p99", "p999", "max")),
        "send lag ms " + "  ".join(f"{k} {_fmt(report['send_lag_ms'][k])}"
                                   for k in ("p50", "p99", "max")),
        "connect ms  " + "  ".join(f"{k} {_fmt(con[k])}" for k in ("p50", "p99", "max")),
        "answers ms  " + "  ".join(f"{k} {_fmt(report['answers'][k])}" for k in (
            "first_ms", "last_ms", "longest_gap_ms", "gap_at_ms")),
        "statuses    " + ", ".join(f"{k} {v}" for k, v in report["statuses"].items()),
        "errors      " + (", ".join(f"{k} {v}" for k, v in report["errors"].items()) or "none"),
        f"server      {report['server']}",
        f"audit       {'PASSED' if report['audit']['passed'] else 'FAILED'}  "
        f"(reserved {report['reserved']}, demand {report['demand']}, "
        f"oversold {report['oversold']})",
    ]
    lines += [f"  {'ok ' if c['ok'] else 'BAD'} {c['name']}: {c['detail']}"
              for c in report["audit"]["checks"]]
    if report.get("checkouts", {}).get("attempted"):
        co, col = report["checkouts"], report["checkout_latency_ms"]
        lines.append(f"checkouts   {co['attempted']} sent, {co['ok']} orders "
                     f"({co['units']} units), {co['retries']} retries, {co['statuses']}")
        lines.append("checkout ms " + "  ".join(f"{k} {_fmt(col[k])}"
                                                for k in ("p50", "p90", "p99", "p999", "max")))
        orders = report["orders"]
        lines.append(f"orders      server holds {orders['found']} for the buyers "
                     f"({orders['units']} units, {orders['gmv_cents']} cents)"
                     + (f"; room figures {orders['figures']}" if orders["figures"] else ""))
    if report["chat"]["latency_ms"]["count"]:
        chat = report["chat"]["latency_ms"]
        lines.append(f"chat        {chat['count']} sent, p50 {_fmt(chat['p50'])} ms, "
                     f"p99 {_fmt(chat['p99'])} ms, {report['chat']['statuses']}")
    if report["churn"]["connect_ms"]["count"] or report["churn"]["failed"]:
        churn = report["churn"]
        lines.append(f"churn       {churn['connect_ms']['count']} viewers came and went, "
                     f"{churn['failed']} failed, connect p99 {_fmt(churn['connect_ms']['p99'])} ms")
    for w in report["generator"]["workers"]:
        lines.append(f"generator   worker {w['worker']}: {w['buyers']} buyers, "
                     f"cpu {w['cpu_s']} s over {w['wall_s']} s, "
                     f"busiest second {w['peak_core_fraction']:.0%} of a core")
    lines += [f"WARNING     {warning}" for warning in report["generator"]["warnings"]]
    return "\n".join(lines)
