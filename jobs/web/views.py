"""What the pages show, worked out from store records. Pure: records and clocks in,
plain values out (the templates only lay them out)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jobs.store.interface import BatchState, BatchStatus
from jobs.store.pace import PaceReading
from jobs.store.report import iso_time, status_dict
from jobs.store.timeline import Bucket

PAGE_SIZE = 50  # items on a batch page, batches on the list
STATES = tuple(s.value for s in BatchState)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a batch is: items ended, percent, items/s since it started, seconds left."""

    ended: int
    percent: int
    rate: float | None
    eta: float | None


def progress(status: BatchStatus, now: float) -> Progress:
    """Progress as of `now`; rate and ETA only while it runs and once something ended."""
    total, pending = status.counts.total, status.counts.pending
    ended = max(0, total - pending)
    percent = 100 if total == 0 else min(100, ended * 100 // total)
    rate = eta = None
    if status.started_at is not None and ended:
        finished = status.finished_at or now
        elapsed = max(finished - status.started_at, 0.001)
        rate = ended / elapsed
        if not status.done and status.state is not BatchState.PAUSED:
            eta = pending / rate
    return Progress(ended, percent, rate, eta)


def duration(seconds: float | None) -> str:
    """`1 h 02 min`, `3 min 05 s`, `12 s`: what a person reads at a glance."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def live(
    status: BatchStatus, now: float, paces: list[PaceReading], timeline: list[Bucket]
) -> dict[str, Any]:
    """One server-sent update of a batch page: what its script writes into the page."""
    shown = progress(status, now)
    return {
        "state": status.state.value,
        "done": status.done,
        "counts": status.counts.as_dict(),
        "percent": shown.percent,
        "ended": shown.ended,
        "rate": None if shown.rate is None else round(shown.rate, 1),
        "eta": duration(shown.eta) if shown.eta is not None else "—",
        "finished_at": iso_time(status.finished_at),
        "webhook": status_dict(status)["webhook"],
        "pace": [pace_dict(p) for p in paces],
        "timeline": [b.as_dict(now) for b in timeline],
    }


def pace_dict(reading: PaceReading) -> dict[str, Any]:
    return {
        "api": reading.api,
        "rate": round(reading.rate, 1),
        "held_for": round(reading.held_for, 1),
        "learned": None if reading.learned is None else round(reading.learned, 1),
    }


def shown_value(value: Any) -> str:
    """A field's value in a diff cell: JSON-ish, absent as `—`."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def pages(offset: int, size: int, count: int | None) -> dict[str, int | None]:
    """Previous and next offsets of a paged list; `count` None when only the page knows
    whether there is more (it came back full)."""
    previous = max(0, offset - size) if offset > 0 else None
    more = count is not None and offset + size < count
    return {"previous": previous, "next": offset + size if more else None}
