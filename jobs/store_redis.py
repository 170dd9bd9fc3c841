"""The report store in Redis.

Keys (the `{id}` hash tag keeps a batch's keys in one slot of a Redis Cluster):

- `phonebatch:batches`         sorted set: batch id -> created_at, for `list`
- `phonebatch:{id}:batch`      hash: name, source, state, times, counters
- `phonebatch:{id}:items`      hash: item index -> item record (JSON)

Both batch keys expire `retention` seconds after the batch is created, and again after
it finishes, so a report lives at least that long after its last outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from itertools import islice
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from jobs.store import (
    COUNTED,
    BatchState,
    BatchStatus,
    Counts,
    ItemRecord,
    ItemSeed,
    NewBatch,
    StoreUnavailable,
)

BATCHES_KEY = "phonebatch:batches"
_CHUNK = 2000

# KEYS: 1 batch hash, 2 items hash
# ARGV: 1 item index, 2 new status, 3 item record (JSON), 4 retention in seconds
# Returns 1 when the item moved out of `pending`, 0 when it already had an outcome,
# -1 when there is no such item. The Redis server's clock stamps the times, so hosts
# with skewed clocks agree.
RECORD_OUTCOME = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return -1 end
if cjson.decode(current)['status'] ~= 'pending' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
local clock = redis.call('TIME')
local now = string.format('%d.%06d', clock[1], clock[2])
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', now)
  state = 'running'
end
if pending <= 0 and state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', now)
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
"""


# KEYS: 1 batch hash. ARGV: 1 limit, 2 reason. Returns 1 if the batch is halted.
NOTE_AUTH_FAILURE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local failures = redis.call('HINCRBY', KEYS[1], 'auth_failures', 1)
local halted = redis.call('HGET', KEYS[1], 'halted_reason')
if halted and halted ~= '' then return 1 end
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'halted_reason', ARGV[2])
  return 1
end
return 0
"""


def batch_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:batch"


def items_key(batch_id: str) -> str:
    return f"phonebatch:{{{batch_id}}}:items"


def _float(value: Any) -> float | None:
    return float(value) if value not in (None, "", b"") else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_status(batch_id: str, raw: dict[Any, Any]) -> BatchStatus:
    data = {_text(k): _text(v) for k, v in raw.items()}
    counts = Counts(total=int(data.get("total", 0)), **{c: int(data.get(c, 0)) for c in COUNTED})
    return BatchStatus(
        batch_id=batch_id,
        name=data.get("name", ""),
        source=data.get("source", ""),
        state=BatchState(data.get("state", "queued")),
        counts=counts,
        created_at=_float(data.get("created_at")) or 0.0,
        started_at=_float(data.get("started_at")),
        finished_at=_float(data.get("finished_at")),
        parent_id=data.get("parent_id") or None,
        halted_reason=data.get("halted_reason") or None,
    )


class RedisReportStore:
    def __init__(self, client: redis.Redis, *, retention_seconds: int) -> None:
        self._redis = client
        self._retention = retention_seconds
        self._record = client.register_script(RECORD_OUTCOME)
        self._note_auth = client.register_script(NOTE_AUTH_FAILURE)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @classmethod
    def from_url(cls, url: str, *, retention_seconds: int) -> RedisReportStore:
        return cls(redis.Redis.from_url(url), retention_seconds=retention_seconds)

    def ping(self) -> None:
        try:
            self._redis.ping()
        except redis.ConnectionError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def create_batch(self, batch: NewBatch, items: Iterable[ItemSeed]) -> None:
        meta: dict[FieldT, EncodableT] = {
            "name": batch.name,
            "source": batch.source,
            "state": BatchState.QUEUED.value,
            "created_at": f"{time.time():.6f}",
            "total": batch.total,
            "pending": batch.total,
            "parent_id": batch.parent_id or "",
        }
        meta.update({c: 0 for c in COUNTED if c != "pending"})
        bkey, ikey = batch_key(batch.batch_id), items_key(batch.batch_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(bkey, mapping=meta)
        pipe.expire(bkey, self._retention)
        pipe.zadd(BATCHES_KEY, {batch.batch_id: time.time()})
        pipe.execute()
        seeds = iter(items)
        while chunk := list(islice(seeds, _CHUNK)):
            mapping: dict[FieldT, EncodableT] = {
                s.index: ItemRecord(s.index, s.row, s.number_id).encode() for s in chunk
            }
            pipe.hset(ikey, mapping=mapping)
            pipe.expire(ikey, self._retention)
            pipe.execute()

    def status(self, batch_id: str) -> BatchStatus | None:
        raw = self._redis.hgetall(batch_key(batch_id))
        return decode_status(batch_id, raw) if raw else None

    def record_outcome(self, batch_id: str, item: ItemRecord) -> bool:
        result = self._record(
            keys=[batch_key(batch_id), items_key(batch_id)],
            args=[item.index, item.status.value, item.encode(), self._retention],
        )
        return bool(result == 1)

    def note_auth_failure(self, batch_id: str, reason: str, limit: int) -> bool:
        return bool(self._note_auth(keys=[batch_key(batch_id)], args=[limit, reason]) == 1)

    def item(self, batch_id: str, index: int) -> ItemRecord | None:
        raw = self._redis.hget(items_key(batch_id), str(index))
        return ItemRecord.decode(index, raw) if raw else None

    def items(self, batch_id: str, start: int = 0, limit: int = 500) -> list[ItemRecord]:
        indexes = list(range(max(start, 0), max(start, 0) + max(limit, 0)))
        if not indexes:
            return []
        raws = self._redis.hmget(items_key(batch_id), indexes)
        return [ItemRecord.decode(i, r) for i, r in zip(indexes, raws, strict=True) if r]

    def list_batches(self, offset: int = 0, limit: int = 50) -> list[BatchStatus]:
        ids = [_text(i) for i in self._redis.zrevrange(BATCHES_KEY, offset, offset + limit - 1)]
        pipe = self._redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hgetall(batch_key(batch_id))
        found: list[BatchStatus] = []
        expired: list[str] = []
        for batch_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                found.append(decode_status(batch_id, raw))
            else:
                expired.append(batch_id)
        if expired:
            self._redis.zrem(BATCHES_KEY, *expired)  # their reports have expired
        return found
