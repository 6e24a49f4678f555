"""The auction command against the real server (a real bidding war on the wall clock: this is
the load tool), and its audit on answers that break each rule."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from loadtests import BidRecord, audit_auction
from tests.server_harness import LiveServer


async def test_a_bidding_war_in_the_last_seconds_passes_the_audit(
        server: LiveServer, tmp_path: Path) -> None:
    report_path = tmp_path / "auction.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loadtests", "auction", "--url", server.url,
        "--anchor-token", server.token("anchor", "Loady"),
        "--admin-token", server.token("admin", "Minter"), "--bidders", "200", "--bids", "2",
        "--duration", "5", "--war", "2", "--extend", "1", "--processes", "2",
        "--json", str(report_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "audit       PASSED" in stderr.decode()
    report = json.loads(report_path.read_text())
    assert (report["connected"], report["bids"], report["processes"]) == (200, 400, 2)
    assert sum(report["statuses"].values()) == 400
    assert report["statuses"].get("leading", 0) + report["statuses"].get("outbid", 0) >= 1
    assert report["final"]["status"] == "ended"
    assert report["final"]["price_cents"] > 10_000
    assert report["latency_ms"]["count"] == 400
    assert {c["name"] for c in report["audit"]["checks"]} >= {
        "every bid answered", "final price is the highest accepted bid",
        "every extension honoured"}
    assert "<svg" in Path(report["chart"]).read_text()


def bid(bidder: int, amount: int, status: str, **answer: Any) -> BidRecord:
    return BidRecord(bidder=bidder, amount=amount, sent_ms=answer.pop("sent_ms", 1_000),
                     status=status, **answer)


def audit(bids: list[BidRecord], *, price: int = 300, ends_at: int = 12_000,
          winners: list[tuple[int, Any]] | None = None) -> dict[str, bool]:
    result = audit_auction(
        bids=bids, final={"status": "ended", "price_cents": price, "ends_at": ends_at},
        winners=[(2, {"price_cents": 300})] if winners is None else winners,
        extend_ms=2_000, sudden_death=False, first_ends_at=10_000, tolerance_ms=5)
    return {c["name"]: c["passed"] for c in result["checks"]}


def honest() -> list[BidRecord]:
    return [
        bid(1, 200, "outbid", price_cents=300, min_next_cents=325, ends_at=11_000),
        bid(2, 300, "leading", price_cents=300, min_next_cents=325, ends_at=12_000,
            sent_ms=10_000),
        bid(3, 250, "too_low", price_cents=300, min_next_cents=325, ends_at=12_000),
    ]


def test_the_audit_passes_an_honest_auction_and_catches_each_broken_rule() -> None:
    assert all(audit(honest()).values())
    assert not audit(honest(), price=200)["final price is the highest accepted bid"]
    assert not audit(honest(), winners=[(1, {"price_cents": 300})])[
        "its bidder alone was told they won, at that price"]
    late = honest()
    late[1].ends_at = 11_500  # decided after 10,000 ms: the end must be 12,000 at least
    assert not audit(late, ends_at=11_500)["every extension honoured"]
    assert not audit(honest(), ends_at=11_000)["the auction closed at its last end"]
    lying = honest()
    lying[2].amount = 400  # a too_low answer for a bid above the minimum
    assert not audit(lying)["every answer agrees with itself"]
    lost = [*honest(), bid(4, 500, "timeout")]
    assert not audit(lost)["every bid answered"]
