"""Bidding in-stream: ``bid``, answered when its batch is decided, like ``buy``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from time import perf_counter
from typing import Any

import inventory

from ..errors import error_body
from ._base import Ack, SocketEdge
from ._engineio import Reply

__all__ = ["BID_MESSAGES", "AuctionEvents"]

BID_MESSAGES = {
    "outbid": "a higher bid came in at the same moment; bid at least min_next_cents",
    "too_low": "bid at least min_next_cents",
    "already_leading": "you are leading already: wait until someone outbids you",
    "not_started": "the auction has not started yet",
    "ended": "the auction has ended",
    "banned": "you are banned from this room",
    "not_in_room": "join the auction's room to bid in it",
    "verification_required": "to bid, sign in with your phone (POST /api/accounts/otp)",
    "rate_limited": "too many attempts; try again in a moment",
    "invalid": "send {auction, amount_cents, request_id}: amount_cents a whole number of cents "
               "from 1 to 10000000000, request_id a string of 1-64 characters",
}
# Decided bids go to the broadcaster: (state, urgent).
RecordState = Callable[[inventory.AuctionState, bool], None]


def _answer_body(status: str, auction: Any, state: inventory.AuctionState | None,
                 message: str | None = None, code: str | None = None,
                 retry_after_ms: int | None = None) -> Ack:
    ack: Ack = {
        "ok": status == "leading", "status": status,
        # The auction id is echoed when it is a string: whatever else was sent is not.
        "auction": auction if type(auction) is str else None,
        "price_cents": state.price_cents if state else None,
        "min_next_cents": state.min_next_cents if state else None,
        "ends_at": state.ends_at if state else None,
    }
    if status != "leading":
        error: dict[str, Any] = {"code": code or status,
                                 "message": message or BID_MESSAGES[status]}
        if retry_after_ms:
            error["retry_after_ms"] = retry_after_ms
        ack["error"] = error
    return ack


class AuctionEvents:
    def __init__(self, edge: SocketEdge, auctions: inventory.AuctionService,
                 record: RecordState) -> None:
        self.edge = edge
        self.auctions = auctions
        self._record = record
        self._connections = edge.connections
        self._record_answer = edge.metrics.record_bid
        edge.deferred_event("bid", self.bid)

    def bid(self, sid: str, args: list[Any], reply: Reply) -> None:
        """The ``bid`` event: checked here, decided in a batch, answered through ``reply``.
        Bids share the connection's buy bucket (``rate_limited``)."""
        started = perf_counter()
        conn = self._connections.get(sid)
        if conn is None:
            self._answer(started, reply, {"ok": False, "error": {
                "code": "unauthorized", "message": "not connected"}})
            return
        data = args[0] if len(args) == 1 else None
        if type(data) is not dict:
            self._answer(started, reply, _answer_body("invalid", None, None))
            return
        auction_id = data.get("auction")
        if not conn.user.phone_verified:
            # A guest session costs nothing to make: a bid binds an account.
            self._answer(started, reply,
                         _answer_body("verification_required", auction_id, None))
            return
        if not conn.buys.take(started):
            self._answer(started, reply, _answer_body(
                "rate_limited", auction_id, None, retry_after_ms=conn.buys.retry_after_ms()))
            return
        amount = data.get("amount_cents")
        request_id = data.get("request_id")
        if type(auction_id) is not str:
            self._answer(started, reply, _answer_body("invalid", auction_id, None))
            return
        decided = partial(self._decided, started, reply, auction_id)
        try:
            known_now = self.auctions.bid_nowait(auction_id, conn.user.id, conn.user.name,
                                                 amount, request_id, tuple(conn.rooms), decided)
        except Exception as exc:
            decided(exc)
            return
        if known_now is not None:
            decided(known_now)

    def _decided(self, started: float, reply: Reply, auction_id: str,
                 outcome: inventory.BidResult | Exception) -> None:
        if isinstance(outcome, Exception):
            body = error_body(outcome)
            ack = _answer_body("invalid", auction_id, None, message=body["message"],
                               code=body["code"])
        else:
            state = outcome.state
            if state is not None and not outcome.replayed and outcome.status in (
                    "leading", "outbid"):
                self._record(state, outcome.extended)
            ack = _answer_body(outcome.status, auction_id, state)
        self._answer(started, reply, ack)

    def _answer(self, started: float, reply: Reply, ack: Ack) -> None:
        self._record_answer(str(ack.get("status", "error")), perf_counter() - started)
        if reply is not None:
            reply(ack)
