"""A self-contained HTML page with inline SVG: latency and throughput over time.

No JavaScript and no plotting library, so the chart opens anywhere, offline.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_chart", "svg_panel"]

WIDTH, HEIGHT, PAD = 900, 260, 50


def _polyline(points: Sequence[tuple[float, float]], colour: str) -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}"/>'


def svg_panel(title: str, unit: str, t_max: float,
           series: Sequence[tuple[str, str, Sequence[tuple[float, float | None]]]]) -> str:
    values = [v for _, _, pts in series for _, v in pts if v is not None]
    y_max = max(values, default=1.0) * 1.1 or 1.0
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD

    def x(t: float) -> float:
        return PAD + plot_w * (t / t_max if t_max else 0.0)

    def y(v: float) -> float:
        return PAD + plot_h * (1 - v / y_max)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{PAD}" y="20" font-size="14">{html.escape(title)}</text>',
             f'<rect x="{PAD}" y="{PAD}" width="{plot_w}" height="{plot_h}" fill="none" '
             f'stroke="#bbb"/>']
    for k in range(5):
        v = y_max * k / 4
        parts.append(f'<text x="{PAD - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        parts.append(f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                     f'stroke="#eee"/>')
    for k in range(6):
        t = t_max * k / 5
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - PAD + 16}" text-anchor="middle">'
                     f'{t / 1000:.1f} s</text>')
    parts.append(f'<text x="12" y="{PAD - 10}">{html.escape(unit)}</text>')
    for n, (name, colour, pts) in enumerate(series):
        parts.append(_polyline([(x(t), y(v)) for t, v in pts if v is not None], colour))
        parts.append(f'<text x="{WIDTH - PAD - 200 + n * 70}" y="20" fill="{colour}">'
                     f'{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render_chart(report: Mapping[str, Any], *, event: str = "Buy",
                 success: str = "reserved") -> str:
    """The chart of a report; ``event`` names what was timed, ``success`` the count the
    buckets' ``reserved`` field holds (a bid's ``leading``)."""
    buckets: list[dict[str, Any]] = report["throughput"]["buckets"]
    bucket_ms = int(report["throughput"]["bucket_ms"])
    t_max = float(max((b["t_ms"] for b in buckets), default=0) + bucket_ms)
    per_s = 1000.0 / bucket_ms
    latency = svg_panel(f"{event} latency from intended send time (per bucket)", "ms", t_max, [
        ("p50", "#1f77b4", [(b["t_ms"], b["p50_ms"]) for b in buckets]),
        ("p99", "#d62728", [(b["t_ms"], b["p99_ms"]) for b in buckets]),
        ("max", "#999999", [(b["t_ms"], b["max_ms"]) for b in buckets]),
    ])
    throughput = svg_panel(f"Throughput ({bucket_ms} ms buckets)", "per s", t_max, [
        ("sent", "#2ca02c", [(b["t_ms"], b["sent"] * per_s) for b in buckets]),
        ("answered", "#ff7f0e", [(b["t_ms"], b["answered"] * per_s) for b in buckets]),
        (success, "#9467bd", [(b["t_ms"], b["reserved"] * per_s) for b in buckets]),
    ])
    lat = report["latency_ms"]
    summary = html.escape(
        f"sale {report['sale']} - {report['buyers']} buyers, stock {report['stock']}, "
        f"profile {report['profile']} - p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
        f"p99.9 {lat['p999']} ms - audit {'passed' if report['audit']['passed'] else 'FAILED'}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>liveroom load test "
            f"{html.escape(str(report['sale']))}</title></head>\n<body style=\"font-family:"
            f"sans-serif\">\n<p>{summary}</p>\n{latency}\n{throughput}\n</body></html>\n")
