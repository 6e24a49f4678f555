"""Logging setup: plain text for a terminal, or one JSON object per line for a log pipeline.

``LIVEROOM_LOG_FORMAT=json`` (or ``--log-format json``) selects JSON. Each line carries ``ts``
(wall-clock ms, the project's one clock format), ``time`` (ISO 8601, UTC), ``level``, ``logger``,
``message``, ``pid``; ``exc_type`` and ``exc`` (the formatted traceback) when an exception is
attached; and every ``extra={...}`` field the call site passed, so
``log.info("buy", extra={"sale": sid})`` becomes a searchable ``"sale"`` key.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["LOG_FORMATS", "ClientMistakes", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


class ClientMistakes:
    """One warning line per client mistake (a malformed frame, a flood), never a traceback, and
    at most ``per_s`` lines a second with a burst of ``burst``: a client repeating its mistake a
    thousand times a second costs the log a line a second. The next line that is written says
    how many were left out."""

    def __init__(self, logger: logging.Logger, per_s: float = 1.0, burst: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._per_s = per_s
        self._burst = burst
        self._tokens = burst
        self._clock = clock
        self._updated = self._clock()
        self.left_out = 0

    def warn(self, client: str, reason: str) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._per_s)
        self._updated = now
        if self._tokens < 1:
            self.left_out += 1
            return
        self._tokens -= 1
        if self.left_out:
            self._logger.warning("client %s: %s (and %d more such lines left out)", client,
                                 reason, self.left_out)
            self.left_out = 0
        else:
            self._logger.warning("client %s: %s", client, reason)


class JsonFormatter(logging.Formatter):
    def __init__(self, static_fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        # Fields every line carries, e.g. {"worker": 2} in a ``--workers N`` process.
        self.static_fields = dict(static_fields or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": int(record.created * 1000),
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process if record.process is not None else os.getpid(),
            **self.static_fields,
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # An odd ``extra`` value (an object, a huge int) must never make logging itself fail.
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:
            return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str = "text",
                      worker_index: int | None = None, *, role: str = "worker") -> None:
    """Install one stderr handler on the root logger in the chosen format; a worker of
    ``--workers N`` tags its lines (``[worker 2]`` in text, ``"worker": 2`` in JSON), an
    LL-HLS edge of ``--hls-edges N`` likewise with ``role="edge"``."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {log_format!r}")
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(
            {} if worker_index is None else {role: worker_index}))
    else:
        prefix = "" if worker_index is None else f"[{role} {worker_index}] "
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {prefix}%(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
