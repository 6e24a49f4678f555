"""Grabbing coupons in-stream: ``coupon:grab``, answered when its batch is decided, like ``bid``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from functools import partial
from time import perf_counter
from typing import Any

from ..coupons import MAX_REQUEST_ID, CouponDesk, CouponDrop, GrabResult, UnknownDrop
from ..errors import error_body
from ._base import Ack, SocketEdge
from ._engineio import Reply

__all__ = ["GRAB_MESSAGES", "CouponEvents"]

GRAB_MESSAGES = {
    "gone": "every coupon of this drop has been grabbed",
    "already_grabbed": "you have grabbed a coupon of this drop already: it is in your wallet",
    "expired": "this coupon drop has ended",
    "banned": "you are banned from this room",
    "not_in_room": "join the drop's room to grab its coupons",
    "unknown_drop": "no such coupon drop",
    "verification_required": "to grab a coupon, sign in with your phone "
                             "(POST /api/accounts/otp)",
    "rate_limited": "too many attempts; try again in a moment",
    "invalid": "send {drop, request_id}: request_id a string of 1-64 characters",
}


def _answer(status: str, drop_id: Any, result: GrabResult | None = None,
            message: str | None = None, code: str | None = None,
            retry_after_ms: int | None = None) -> Ack:
    drop = result.drop if result is not None else None
    ack: Ack = {
        "ok": status == "granted", "status": status,
        # The drop id is echoed when it is a string: whatever else was sent is not.
        "drop": drop_id if type(drop_id) is str else None,
        "coupon": _coupon(result, drop) if result is not None and result.coupon_id else None,
        "left": result.left if result is not None else None,
    }
    if status != "granted":
        error: dict[str, Any] = {"code": code or status,
                                 "message": message or GRAB_MESSAGES[status]}
        if retry_after_ms:
            error["retry_after_ms"] = retry_after_ms
        ack["error"] = error
    return ack


def _coupon(result: GrabResult, drop: CouponDrop | None) -> dict[str, Any] | None:
    if drop is None:
        return {"id": result.coupon_id}
    return {"id": result.coupon_id, "drop": drop.id, "room": drop.room_id,
            **drop.terms_public()}


class CouponEvents:
    def __init__(self, edge: SocketEdge, desk: CouponDesk) -> None:
        self.edge = edge
        self.desk = desk
        self._connections = edge.connections
        edge.deferred_event("coupon:grab", self.grab)

    def grab(self, sid: str, args: list[Any], reply: Reply) -> None:
        """The ``coupon:grab`` event: checked here, decided in a batch, answered through
        ``reply``. Grabs share the connection's buy bucket (``rate_limited``)."""
        started = perf_counter()
        reply = partial(self._answered, started, reply)
        conn = self._connections.get(sid)
        if conn is None:
            self._reply(reply, {"ok": False, "error": {
                "code": "unauthorized", "message": "not connected"}})
            return
        data = args[0] if len(args) == 1 else None
        if type(data) is not dict:
            self._reply(reply, _answer("invalid", None))
            return
        drop_id = data.get("drop")
        request_id = data.get("request_id")
        if (type(drop_id) is not str or type(request_id) is not str
                or not 1 <= len(request_id) <= MAX_REQUEST_ID):
            self._reply(reply, _answer("invalid", drop_id))
            return
        if not conn.user.phone_verified:
            # A guest session costs nothing to make: a coupon is one per account.
            self._reply(reply, _answer("verification_required", drop_id))
            return
        if not conn.buys.take(started):
            self._reply(reply, _answer("rate_limited", drop_id,
                                       retry_after_ms=conn.buys.retry_after_ms()))
            return
        drop = self.desk.cached(drop_id)
        if drop is not None:  # the burst's common case: no task, no read
            self._submit(drop, conn.user.id, conn.rooms, drop_id, request_id, reply)
            return
        asyncio.get_running_loop().create_task(
            self._grab(conn.user.id, tuple(conn.rooms), drop_id, request_id, reply))

    async def _grab(self, user_id: str, rooms: tuple[str, ...], drop_id: str,
                    request_id: str, reply: Callable[[Ack], None]) -> None:
        try:
            drop = await self.desk.get(drop_id)
        except UnknownDrop:
            self._reply(reply, _answer("unknown_drop", drop_id))
            return
        except Exception as exc:
            self._failed(reply, drop_id, exc)
            return
        self._submit(drop, user_id, rooms, drop_id, request_id, reply)

    def _submit(self, drop: CouponDrop, user_id: str, rooms: Collection[str], drop_id: str,
                request_id: str, reply: Callable[[Ack], None]) -> None:
        if drop.room_id not in rooms:
            self._reply(reply, _answer("not_in_room", drop_id))
            return
        decided = partial(self._decided, reply, drop_id)
        try:
            known_now = self.desk.grab_nowait(drop, user_id, request_id, decided)
        except Exception as exc:
            decided(exc)
            return
        if known_now is not None:
            decided(known_now)

    def _decided(self, reply: Callable[[Ack], None], drop_id: str,
                 outcome: GrabResult | Exception) -> None:
        if isinstance(outcome, Exception):
            self._failed(reply, drop_id, outcome)
            return
        # A drop gone from Redis between the read and the batch (its keys expired).
        status = "unknown_drop" if outcome.status == "unknown" else outcome.status
        self._reply(reply, _answer(status, drop_id, outcome))

    def _failed(self, reply: Callable[[Ack], None], drop_id: str, exc: Exception) -> None:
        body = error_body(exc)
        status = "rate_limited" if body["code"] == "rate_limited" else "error"
        self.edge.metrics.socket_errors.inc(body["code"])
        ack = _answer(status, drop_id, message=body["message"], code=body["code"])
        self._reply(reply, ack)

    @staticmethod
    def _reply(reply: Callable[[Ack], None], ack: Ack) -> None:
        reply(ack)

    def _answered(self, started: float, reply: Reply, ack: Ack) -> None:
        """Every answer is timed (the metrics, and the collector's "a burst is on") and sent
        if the client asked for one."""
        self.edge.metrics.record_grab(str(ack.get("status", "error")), perf_counter() - started)
        if reply is not None:
            reply(ack)
