"""``HandoffConsumer``: records the inventory's hand-off stream in the order store.

At-least-once: entries are read with XREADGROUP (group ``orders``), applied to SQLite in one
transaction per batch, and only then XACKed. A consumer that dies before XACK leaves its entries
pending; on restart the consumer first re-reads its own pending list, and XAUTOCLAIM takes over
entries another (dead) consumer left idle for ``claim_idle_ms``. The store applies each stream
entry once (keyed by sale and entry id) and each reservation is one row, so redelivery neither
loses nor doubles anything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from handoff import schema

from ._store import HandoffRecord, OrderStore
from .interfaces import ReservationInfo
from .keys import HANDOFF_GROUP, SALES_SET, UNREAD_SALES, handoff_stream

__all__ = ["HandoffConsumer", "decode_entry"]

log = logging.getLogger(__name__)
CLOSE_TIMEOUT_S = 5.0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(sale_id: str, entry_id: str, fields: dict[Any, Any]) -> HandoffRecord:
    """Decode one stream entry (``handoff.schema``) of the sale ``sale_id``; one that does not
    follow the schema, holds no unit (qty ≤ 0) or a negative price, or names another sale
    becomes a record with ``error`` set."""
    raw = msgpack.packb({_text(k): v for k, v in fields.items()}, use_bin_type=True)
    try:
        entry = schema.decode(fields)
        qty, price_cents = entry.integer("qty"), entry.integer("price_cents")
        if qty <= 0 or price_cents < 0:
            raise ValueError("qty must be positive and price_cents not negative")
        reservation = entry.text("reservation")
        if entry.text("sale") != sale_id or not reservation.startswith(sale_id + "."):
            raise ValueError("entry belongs to another sale")
        info = ReservationInfo(
            id=reservation,
            sale_id=sale_id,
            room_id=entry.text("room"),
            product_id=entry.text("product"),
            anchor_id=entry.text("anchor"),
            user_id=entry.text("user"),
            qty=qty,
            price_cents=price_cents,
            title=entry.text("title"),
            category=entry.text("category"),
            brand=entry.text("brand"),
            expires_at=entry.integer("expires_at"),
            state=entry.type,
        )
    except (ValueError, TypeError) as exc:
        return HandoffRecord(sale_id, entry_id, "invalid", None, raw,
                             f"{type(exc).__name__}: {exc}"[:500])
    return HandoffRecord(sale_id, entry_id, entry.type, info, raw)


class HandoffConsumer:
    """Owner of the consumer loop. ``process_once()`` does one pass over every known sale and is
    what the loop repeats (tests call it directly)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        store: OrderStore,
        *,
        consumer_name: str | None = None,
        batch_size: int = 200,
        claim_idle_ms: int = 30_000,
        reclaim_interval_s: float = 1.0,
        poll_interval_s: float = 0.05,
        sale_ids: Callable[[], Iterable[str]] | None = None,
        now_ms: Callable[[], int] | None = None,
    ) -> None:
        self.redis = redis
        self.store = store
        self.consumer_name = consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self._closing = False
        self.reclaim_interval_s = reclaim_interval_s
        self._last_reclaim: dict[str, float] = {}
        self.poll_interval_s = poll_interval_s
        self._sale_provider = sale_ids
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self._watched: set[str] = set()
        # Sales open (or watched) as of the last ``sale_ids()``; the others are read until their
        # streams are done (``UNREAD_SALES``).
        self._open: set[str] = set()
        self._groups_ready: set[str] = set()
        # Sales whose own pending list has been re-read since start (crash recovery).
        self._own_pending_done: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def watch_sale(self, sale_id: str) -> None:
        self._watched.add(sale_id)

    def unwatch_sale(self, sale_id: str) -> None:
        self._watched.discard(sale_id)

    async def sale_ids(self) -> list[str]:
        """The sales to read: watched, provided, open (``SALES_SET``), and those that left it
        with entries perhaps not recorded yet (``UNREAD_SALES``)."""
        ids = set(self._watched)
        if self._sale_provider is not None:
            ids.update(self._sale_provider())
        open_sales = {_text(m) for m in await self.redis.smembers(SALES_SET)}
        if open_sales:
            # Sales listed before UNREAD_SALES existed, or by an older inventory.
            await self.redis.sadd(UNREAD_SALES, *open_sales)
        ids.update(open_sales)
        self._open = set(ids)
        ids.update(_text(m) for m in await self.redis.smembers(UNREAD_SALES))
        return sorted(ids)

    async def process_once(self) -> int:
        """Read, record and acknowledge what is waiting on every sale's stream; returns how many
        entries were handled."""
        handled = 0
        for sale_id in await self.sale_ids():
            handled += await self._process_sale(sale_id)
        return handled

    async def _process_sale(self, sale_id: str) -> int:
        stream = handoff_stream(sale_id)
        closed = sale_id not in self._open
        if closed and not await self.redis.exists(stream):
            # Its retention is over (or it never had a stream): nothing left to read.
            await self.redis.srem(UNREAD_SALES, sale_id)
            return 0
        await self._ensure_group(sale_id, stream)
        handled = 0
        try:
            if sale_id not in self._own_pending_done:
                # Entries this consumer name read before a crash and never acknowledged.
                while True:
                    batch = await self._read(stream, "0")
                    if not batch:
                        break
                    handled += await self._apply(sale_id, stream, batch)
                self._own_pending_done.add(sale_id)
            now = time.monotonic()
            if now - self._last_reclaim.get(sale_id, -1e9) >= self.reclaim_interval_s:
                # Taking over a dead consumer's entries can wait a moment; checking on every
                # pass would double the Redis calls of a busy stream.
                self._last_reclaim[sale_id] = now
                handled += await self._reclaim(sale_id, stream)
            while True:
                batch = await self._read(stream, ">")
                if not batch:
                    break
                handled += await self._apply(sale_id, stream, batch)
                if len(batch) < self.batch_size:
                    break
            if closed and int((await self.redis.xpending(stream, HANDOFF_GROUP))["pending"]) == 0:
                # Ended with no hold left, so no entry comes after the last one read: done. (A
                # dead consumer's entries keep it here until they are claimed and recorded.)
                await self.redis.srem(UNREAD_SALES, sale_id)
        except ResponseError as exc:
            self._own_pending_done.discard(sale_id)
            if "NOGROUP" not in str(exc):
                raise
            # The stream (or group) was deleted under us; recreate on the next pass.
            self._groups_ready.discard(sale_id)
        except BaseException:
            # Whatever this pass read stays pending under our name: re-read it next pass.
            self._own_pending_done.discard(sale_id)
            raise
        return handled

    async def _ensure_group(self, sale_id: str, stream: str) -> None:
        if sale_id in self._groups_ready:
            return
        try:
            await self.redis.xgroup_create(stream, HANDOFF_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add(sale_id)

    async def _read(self, stream: str, start: str) -> list[tuple[bytes, dict[Any, Any]]]:
        reply: Any = await self.redis.xreadgroup(
            HANDOFF_GROUP, self.consumer_name, {stream: start}, count=self.batch_size
        )
        if not reply:
            return []
        # RESP2: [[stream, [(id, fields), ...]]]; RESP3: {stream: [[(id, fields), ...]]}
        if isinstance(reply, dict):
            entries: Any = next(iter(reply.values()))
            entries = entries[0] if entries and isinstance(entries[0], list) else entries
        else:
            entries = reply[0][1]
        # A pending entry deleted from the stream comes back with fields None: ack it away.
        return [(entry_id, fields or {}) for entry_id, fields in entries]

    async def _reclaim(self, sale_id: str, stream: str) -> int:
        handled = 0
        cursor: Any = "0-0"
        while True:
            reply: Any = await self.redis.xautoclaim(
                stream, HANDOFF_GROUP, self.consumer_name, self.claim_idle_ms,
                start_id=cursor, count=self.batch_size,
            )
            cursor, claimed = reply[0], reply[1]
            batch = [(entry_id, fields or {}) for entry_id, fields in claimed]
            if batch:
                handled += await self._apply(sale_id, stream, batch)
            if _text(cursor) == "0-0" or not batch:
                return handled

    async def _apply(
        self, sale_id: str, stream: str, batch: Sequence[tuple[bytes, dict[Any, Any]]]
    ) -> int:
        records = [decode_entry(sale_id, _text(entry_id), fields) for entry_id, fields in batch]
        for record in records:
            if record.reservation is None:
                log.error("hand-off entry %s/%s kept as dead letter: %s",
                          sale_id, record.entry_id, record.error)
        await self.store.record_handoff(records, self._now_ms())
        # Only after the SQLite commit: a crash before this line means redelivery, not loss.
        await self.redis.xack(stream, HANDOFF_GROUP, *[entry_id for entry_id, _ in batch])
        return len(batch)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="orders-handoff-consumer")

    async def _run(self) -> None:
        while not self._closing:
            try:
                handled = await self.process_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hand-off consumer pass failed; retrying")
                handled = 0
            # Only a full batch means more is probably waiting; otherwise rest a moment, so a
            # steady trickle of buys costs one pass per poll interval, not a busy loop.
            if handled < self.batch_size:
                await asyncio.sleep(self.poll_interval_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # The flag ends the loop even if a cancellation is swallowed on the way (Python 3.11's
        # wait_for can lose one that races a result, e.g. inside a Redis connection pool), and
        # the wait is bounded: entries are acknowledged only after their commit, so stopping
        # mid-pass loses nothing.
        self._closing = True
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
        if not done:
            log.warning("hand-off consumer did not stop within %.0f s", CLOSE_TIMEOUT_S)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("hand-off consumer ended with an error", exc_info=task.exception())
