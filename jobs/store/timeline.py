"""A batch's traffic over time: requests, 429s and errors per time bucket, written by the
workers as they go, read by the batch page's chart.

One Redis hash per batch, `<bucket start>:<kind>` -> count, a bucket every
`BUCKET_SECONDS` by the worker's clock; it expires with the batch's report. A worker
process gathers its counts in memory and adds them once a second in one pipelined round
trip (`worker.timeline`), so the chart costs the per-item path no Redis call at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

BUCKET_SECONDS = 5
KINDS = ("requests", "limited", "errors")  # every request sent; those answered 429; failures
MAX_BUCKETS = 720  # an hour of 5-s buckets: what a chart shows; older ones are dropped


def timeline_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:timeline"  # beside the batch's keys (same hash slot)


@dataclass(frozen=True, slots=True)
class Bucket:
    """What happened in `BUCKET_SECONDS` starting at `start` (Unix time)."""

    start: int
    requests: int = 0
    limited: int = 0
    errors: int = 0

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """Counts per second; the bucket still filling at `now` over its seconds so far."""
        seconds = BUCKET_SECONDS if now is None else min(BUCKET_SECONDS, max(1.0, now - self.start))
        per_second = {k: round(getattr(self, k) / seconds, 2) for k in KINDS}
        return {"start": self.start} | per_second


def bucket_of(now: float) -> int:
    return int(now) // BUCKET_SECONDS * BUCKET_SECONDS


Pending = dict[str, dict[tuple[int, str], int]]  # batch id -> (bucket start, kind) -> count


def add(client: redis.Redis, pending: Pending, ttl: int) -> None:
    """Add counts gathered over some buckets and batches: one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    for batch_id, counts in pending.items():
        key = timeline_key(batch_id)
        for (start, kind), n in counts.items():
            pipe.hincrby(key, f"{start}:{kind}", n)
        pipe.expire(key, ttl)
    pipe.execute()


def parse(raw: dict[bytes, bytes] | dict[str, str]) -> list[Bucket]:
    """A timeline hash as buckets, oldest first, gaps filled with empty buckets, at most
    the last `MAX_BUCKETS`. Pure."""
    counts: dict[int, dict[str, int]] = {}
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else field
        start, _, kind = text.partition(":")
        if not start.isdigit() or kind not in KINDS:
            continue
        counts.setdefault(int(start), {})[kind] = int(value)
    if not counts:
        return []
    last = max(counts)
    first = max(min(counts), last - (MAX_BUCKETS - 1) * BUCKET_SECONDS)
    return [
        Bucket(start, **counts.get(start, {}))
        for start in range(first, last + BUCKET_SECONDS, BUCKET_SECONDS)
    ]


def read(client: redis.Redis, batch_id: str) -> list[Bucket]:
    raw: dict[bytes, bytes] = client.hgetall(timeline_key(batch_id))  # type: ignore[assignment]
    return parse(raw)
