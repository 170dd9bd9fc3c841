"""Reports built from the store's records: JSON and CSV written as streams, and the
plain-text forms people read. Pure: records in, text out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

from jobs.batch.text import printable
from jobs.store.interface import BatchStatus, ItemRecord

CSV_COLUMNS = ("row", "id", "status", "http_status", "attempts", "error", "sent", "reason")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def item_dict(record: ItemRecord) -> dict[str, Any]:
    """An item as reports show it; `reason`, `changes`, `before`, `in_target_state` and
    `conflicts` come with numbers that were read first."""
    return {
        "row": record.row,
        "id": record.number_id,
        "status": record.status.value,
        "http_status": record.http_status,
        "attempts": record.attempts,
        "error": record.error,
        "sent": record.sent,
    } | record.extra


def status_dict(status: BatchStatus) -> dict[str, Any]:
    return {
        "batch_id": status.batch_id,
        "name": status.name,
        "source": status.source,
        "state": status.state.value,
        "counts": status.counts.as_dict(),
        "created_at": iso_time(status.created_at),
        "started_at": iso_time(status.started_at),
        "finished_at": iso_time(status.finished_at),
        "paused_at": iso_time(status.paused_at),
        "parent_id": status.parent_id,
        "halted_reason": status.halted_reason,
        "retried_by": list(status.retried_by),
        "webhook": _shown_webhook(status),
        "mode": status.mode.value,
        "force": status.force,
        "rollback_of": status.rollback_of,
        "selecting": status.selecting,
        "resumed": status.resumed,  # times the workers resumed it by themselves
        "resumed_at": iso_time(status.resumed_at),
        "priority": status.priority.value,
        "canary": status.canary,
        "guard": status.guard.as_dict(),
        "allow_overlap": status.allow_overlap,
        "paused_by": status.paused_by,  # canary | guard, when it paused itself
        "paused_reason": status.paused_reason,
    }


def _shown_webhook(status: BatchStatus) -> dict[str, Any] | None:
    """The webhook's state; its URL without credentials, path or query, any of which may
    hold a token."""
    if status.webhook is None:
        return None
    parts = urlsplit(status.webhook.url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range: the host says enough
        port = ""
    return status.webhook.as_dict() | {"url": f"{parts.scheme}://{host}{port}/…"}


def iso_time(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def json_chunks(status: BatchStatus, items: Iterable[ItemRecord]) -> Iterator[str]:
    """The report JSON, item by item: memory holds one item at a time."""
    head = json.dumps(status_dict(status))
    yield head[:-1] + ', "items": ['
    for n, record in enumerate(items):
        yield ("\n  " if n == 0 else ",\n  ") + json.dumps(item_dict(record))
    yield "\n]}\n"


def write_json(status: BatchStatus, items: Iterable[ItemRecord], out: TextIO) -> None:
    for chunk in json_chunks(status, items):
        out.write(chunk)


def neutralize(cell: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, made inert with a leading `'`."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_START):
        return "'" + cell
    return cell


def csv_lines(items: Iterable[ItemRecord]) -> Iterator[str]:
    """The CSV report, a line at a time."""
    line = io.StringIO()
    writer = csv.writer(line, lineterminator="\n")

    def take(cells: Iterable[Any]) -> str:
        line.seek(0)
        line.truncate()
        writer.writerow(cells)
        return line.getvalue()

    yield take(CSV_COLUMNS)
    for record in items:
        data = item_dict(record)
        data["sent"] = json.dumps(data["sent"]) if data["sent"] is not None else ""
        yield take(neutralize("" if data.get(c) is None else data[c]) for c in CSV_COLUMNS)


def write_csv(items: Iterable[ItemRecord], out: TextIO) -> None:
    for text in csv_lines(items):
        out.write(text)


def summary_line(status: BatchStatus) -> str:
    c = status.counts
    parts = [f"{c.succeeded} succeeded", f"{c.failed} failed"]
    optional = ((c.skipped, "skipped"), (c.cancelled, "cancelled"), (c.pending, "pending"))
    parts += [f"{n} {label}" for n, label in optional if n]
    return f"{c.total} numbers: " + ", ".join(parts)


def item_line(record: ItemRecord) -> str:
    """An item as the report's table shows it, one line, nothing a terminal would run."""
    http = str(record.http_status) if record.http_status is not None else "-"
    error = f"  {printable(record.error)}" if record.error else ""
    return (
        f"{record.row:>7}  {printable(record.number_id):<38} {record.status.value:<10} "
        f"{http:>4} {record.attempts:>3}{error}"
    )


ITEM_HEADER = f"{'row':>7}  {'id':<38} {'status':<10} {'http':>4} {'try':>3}  error"
