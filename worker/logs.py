"""Worker logs as JSON lines, each carrying the batch, row and number it is about.

`PHONEBATCH_LOG_FORMAT=json` (the default for workers) or `text`. Nothing logged here
includes the API key: the HTTP client's own request logs are kept at WARNING.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

_item: ContextVar[dict[str, Any] | None] = ContextVar("phonebatch_item", default=None)


@contextmanager
def about_item(batch_id: str, row: int, number_id: str) -> Iterator[None]:
    """Every log line inside names this item."""
    token = _item.set({"batch_id": batch_id, "row": row, "number_id": number_id})
    try:
        yield
    finally:
        _item.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line, with the item it is about, if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= _item.get() or {}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:  # what orjson refuses (a lone surrogate, a huge int) json takes
            return json.dumps(line, default=str)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # Celery's "received" and "succeeded" lines name a task id, not the item, and
        # say less than our own line per item does; at two a task they cost more than
        # the update's own bookkeeping. `--loglevel DEBUG` brings them back.
        for chatty in ("celery.worker.strategy", "celery.app.trace"):
            logging.getLogger(chatty).setLevel(logging.WARNING)
