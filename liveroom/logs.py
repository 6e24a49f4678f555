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
from typing import Any

import orjson

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName",
}


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
                      worker_index: int | None = None) -> None:
    """Install one stderr handler on the root logger in the chosen format; a worker of
    ``--workers N`` tags its lines (``[worker 2]`` in text, ``"worker": 2`` in JSON)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {log_format!r}")
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(
            {} if worker_index is None else {"worker": worker_index}))
    else:
        prefix = "" if worker_index is None else f"[worker {worker_index}] "
        handler.setFormatter(logging.Formatter(
            f"%(asctime)s %(levelname)s {prefix}%(name)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
