"""The sandbox card provider and the callback signature both sides use.

Test cards (any other valid card number is declined with ``unknown_test_card``):

=================== ========================================
4242424242424242    approved
4000000000000002    declined: ``card_declined``
4000000000009995    declined: ``insufficient_funds``
=================== ========================================
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from .interfaces import CallbackSink, ChargeRequest

__all__ = ["TEST_CARDS", "SandboxPaymentProvider", "sign_callback", "verify_callback"]

log = logging.getLogger(__name__)

# card number → decline reason (None: approved)
TEST_CARDS: Mapping[str, str | None] = {
    "4242424242424242": None,
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
}


def sign_callback(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_callback(secret: bytes, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign_callback(secret, body), signature)


class SandboxPaymentProvider:
    """Decides a charge by its test card and, after ``delay_s``, delivers an HMAC-signed JSON
    callback ``{"payment_id", "order_id", "amount_cents", "status": "approved"|"declined",
    "reason", "provider_ref", "at"}`` to ``sink`` (the service's callback handler, or an HTTP
    poster to the webhook route). A failing delivery is retried a few times, like a provider."""

    name = "sandbox"

    def __init__(
        self,
        secret: bytes,
        sink: CallbackSink | None = None,
        *,
        delay_s: float = 0.05,
        retries: int = 3,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.secret = secret
        self.sink = sink
        self.delay_s = delay_s
        self.retries = retries
        self._now_ms = now_ms
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        """Nothing to start: callbacks are tasks spawned per charge; kept for owner symmetry."""

    async def charge(self, request: ChargeRequest) -> None:
        if self._closed:
            raise RuntimeError("payment provider is closed")
        if self.sink is None:
            raise RuntimeError("payment provider has no callback sink")
        reason = TEST_CARDS.get(request.card, "unknown_test_card")
        payload: dict[str, Any] = {
            "payment_id": request.payment_id,
            "order_id": request.order_id,
            "amount_cents": request.amount_cents,
            "status": "approved" if reason is None else "declined",
            "reason": reason,
            "provider_ref": "sbx_" + secrets.token_urlsafe(9),
            "at": self._now_ms() if self._now_ms else None,
        }
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        task = asyncio.create_task(self._deliver(body, self.sink))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, body: bytes, sink: CallbackSink) -> None:
        await asyncio.sleep(self.delay_s)
        signature = sign_callback(self.secret, body)
        for attempt in range(self.retries + 1):
            try:
                await sink(body, signature)
                return
            except Exception:
                log.warning("sandbox payment callback failed (attempt %d)", attempt + 1,
                            exc_info=True)
                await asyncio.sleep(self.delay_s * (2**attempt))

    async def drain(self) -> None:
        """Wait until every pending callback has been delivered (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
