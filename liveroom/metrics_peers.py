"""One scrape of ``/metrics`` describes the whole node under ``--workers N``.

The kernel hands a scrape to any worker, so each worker serves its raw values (``Metrics.snapshot``,
as JSON) to its siblings on a unix socket in the data dir (``run/metrics-<index>.sock``); the
worker that got the scrape asks every sibling for theirs and renders the sum. The buy path is
untouched: it still bumps a number in a dict (docs/performance.md, "Metrics of a node", has
the comparison with prometheus_client's multiprocess mode, whose per-update file writes cost
several times more).

A sibling that does not answer in time (restarting, stalled) is counted with the snapshot it
gave last, so a scrape does not lose its share; a restarted worker starts from zero, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import orjson

from .metrics import Metrics, Snapshot

__all__ = ["MetricsPeers", "socket_path"]

log = logging.getLogger("liveroom.metrics")
PEER_TIMEOUT_S = 1.0
MAX_SNAPSHOT_BYTES = 4 << 20
_MAX_SOCKET_PATH = 107


def socket_path(data_dir: Path, index: int) -> Path:
    """``<data dir>/run/metrics-<index>.sock``, or, when that is longer than a unix socket's
    name may be (107 bytes), one in the temp dir named after the data dir."""
    path = data_dir / "run" / f"metrics-{index}.sock"
    if len(os.fsencode(path.absolute())) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir.absolute())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"liveroom-{digest}" / f"metrics-{index}.sock"


class MetricsPeers:
    """Owner of this worker's snapshot socket, and the scrape's gathering of its siblings'."""

    def __init__(self, metrics: Metrics, data_dir: Path, index: int, workers: int) -> None:
        self._metrics = metrics
        self._data_dir = data_dir
        self._index = index
        self._workers = workers
        self._server: asyncio.AbstractServer | None = None
        self._last: dict[int, Snapshot] = {}

    async def start(self) -> None:
        path = socket_path(self._data_dir, self._index)
        path.parent.mkdir(parents=True, exist_ok=True)
        # A worker that was killed leaves its socket file behind; its successor takes the name.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(orjson.dumps(self._metrics.snapshot()))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def render(self) -> str:
        """The node's exposition: this worker's metrics merged with every sibling's."""
        others = [index for index in range(self._workers) if index != self._index]
        fresh = await asyncio.gather(*(self._ask(index) for index in others))
        snapshots: list[Snapshot] = []
        for index, snapshot in zip(others, fresh, strict=True):
            if snapshot is not None:
                self._last[index] = snapshot
            elif index in self._last:
                snapshot = self._last[index]
            if snapshot is not None:
                snapshots.append(snapshot)
        return self._metrics.render(snapshots)

    async def _ask(self, index: int) -> Snapshot | None:
        path = socket_path(self._data_dir, index)
        try:
            async with asyncio.timeout(PEER_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(path),
                                                                    limit=MAX_SNAPSHOT_BYTES)
                try:
                    data = await reader.read(MAX_SNAPSHOT_BYTES)
                    while chunk := await reader.read(MAX_SNAPSHOT_BYTES):
                        data += chunk
                finally:
                    writer.close()
            snapshot = orjson.loads(data)
        except (OSError, TimeoutError, orjson.JSONDecodeError) as exc:
            # A worker never heard from is still starting; one heard from before is not well.
            level = logging.WARNING if index in self._last else logging.DEBUG
            log.log(level, "worker %d's metrics not read (%s); using its last ones", index,
                    type(exc).__name__)
            return None
        return snapshot if isinstance(snapshot, dict) else None
