"""The report store in Redis.

Keys (the `{id}` hash tag keeps a batch's keys in one slot of a Redis Cluster):

- `phonebatch:batches`         sorted set: batch id -> created_at, for `list`
- `phonebatch:webhooks:due`    set: batches whose webhook is to be delivered (the outbox)
- `phonebatch:webhooks:delivering`  hash: outbox entry -> the worker process delivering it
- `phonebatch:holds`           hash: number id -> the batch (and item) changing it now
- `phonebatch:{id}:batch`      hash: name, source, state, times, counters
- `phonebatch:{id}:items`      hash: item index -> item record (JSON)
- `phonebatch:{id}:claims`     hash: item index -> lease expiry of the run sending it
- `phonebatch:{id}:bodies`     hash: item index -> request body (JSON), for resume and
                               retry; never shown in a report
- `phonebatch:{id}:parked`     list: task messages of a paused batch, back on the queue
                               when it continues
- `phonebatch:{id}:before`     hash: item index -> the number's values before the item's
                               first send (JSON), kept before the request is sent
- `phonebatch:{id}:guard`      list: the failure guard's window of outcomes, newest first

A batch's keys expire `retention` seconds after the batch is created, and again after
it finishes, so a report lives at least that long after its last outcome. The atomic
steps are the Lua scripts in `jobs.store.scripts`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

import orjson
import redis
from redis.typing import EncodableT, FieldT

from jobs.queue import resp
from jobs.queue.bulk import BulkWriter
from jobs.store import scripts
from jobs.store.connection import connect
from jobs.store.holds import RedisHolds
from jobs.store.interface import (
    COUNTED,
    BatchMode,
    BatchState,
    BatchStatus,
    Claim,
    ItemRecord,
    ItemSeed,
    ItemStatus,
    NewBatch,
    Receipt,
    SendRules,
    StoreUnavailable,
    Ticket,
    guard_mark,
)
from jobs.store.keys import (
    BATCHES_KEY,
    HOLDS_KEY,
    STAGING,
    STAGING_SECONDS,
    UNFINISHED_KEY,
    WEBHOOKS_DUE_KEY,
    batch_key,
    bodies_key,
    claims_key,
    expect_key,
    guard_key,
    items_key,
    parked_key,
    snapshots_key,
)
from jobs.store.outbox import RedisOutbox
from jobs.store.records import as_text as _text
from jobs.store.records import decode_status

log = logging.getLogger(__name__)

_CHUNK = 2000
# A snapshot waits at most this long for a replica to have it before its item is sent.
REPLICA_WAIT_MS = 1000
# How long what INFO said about replicas is trusted (a failover changes it).
REPLICAS_CHECK_SECONDS = 5.0


def pending_encoder() -> Callable[[ItemSeed], str]:
    """`ItemRecord(...).encode()` of a new item, without building the record.

    Checked against `ItemRecord.encode` itself: if the stored form ever changes, this
    gives way to it."""

    def direct(seed: ItemSeed) -> str:
        record = {"row": seed.row, "id": seed.number_id, "status": ItemStatus.PENDING}
        return orjson.dumps(record).decode()

    def full(seed: ItemSeed) -> str:
        return ItemRecord(seed.index, seed.row, seed.number_id).encode()

    probe = ItemSeed(7, 9, 'n"\\1 \u00e9')
    return direct if direct(probe) == full(probe) else full


def _pairs(fields: list[str], values: list[str]) -> list[str]:
    """`[f1, v1, f2, v2, ...]`: a hash's fields and values as HSET takes them."""
    pairs = fields + values
    pairs[::2], pairs[1::2] = fields, values
    return pairs


def _keys(batch_id: str) -> list[str]:
    return [batch_key(batch_id), items_key(batch_id), claims_key(batch_id), bodies_key(batch_id)]


class RedisReportStore:
    """The `ReportStore` in Redis; each step that must be atomic is one Lua script."""

    def __init__(self, client: redis.Redis, *, retention_seconds: int) -> None:
        self._redis = client
        self._retention = retention_seconds
        self._replicas: tuple[float, bool] = (float("-inf"), False)  # checked at, any
        self._record = client.register_script(scripts.RECORD_OUTCOME)
        self._note_auth = client.register_script(scripts.NOTE_AUTH_FAILURE)
        self._claim = client.register_script(scripts.CLAIM)
        self._cancel = client.register_script(scripts.CANCEL)
        self._pause = client.register_script(scripts.PAUSE)
        self._park = client.register_script(scripts.PARK)
        self._continue = client.register_script(scripts.CONTINUE)
        self._sweep = client.register_script(scripts.SWEEP_CANCELLED)
        self._go_live = client.register_script(scripts.GO_LIVE)
        self._link = client.register_script(scripts.LINK_RETRY)
        self._finish_selection = client.register_script(scripts.FINISH_SELECTION)
        self._begin_selection = client.register_script(scripts.BEGIN_SELECTION)
        self._outbox = RedisOutbox(client)
        self._holds = RedisHolds(client)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @classmethod
    def from_url(
        cls, url: str, *, retention_seconds: int, sentinel_master: str | None = None
    ) -> RedisReportStore:
        """The store at REDIS_URL (a `sentinel://` URL with the master's name)."""
        client = connect(url, sentinel_master=sentinel_master)
        return cls(client, retention_seconds=retention_seconds)

    @property
    def retention_seconds(self) -> int:
        return self._retention

    def ping(self) -> None:
        try:
            self._redis.ping()
        except redis.ConnectionError as exc:
            raise StoreUnavailable(str(exc)) from exc

    def create_batch(
        self, batch: NewBatch, items: Iterable[ItemSeed], *, live: bool = True
    ) -> None:
        ttl = self._retention if live else STAGING_SECONDS
        meta: dict[FieldT, EncodableT] = {
            "name": batch.name,
            "source": batch.source,
            "state": BatchState.QUEUED.value if live else STAGING,
            "created_at": f"{time.time():.6f}",
            "total": batch.total,
            "pending": batch.total,
            "parent_id": batch.parent_id or "",
            "webhook_url": batch.webhook_url or "",
            "mode": batch.mode.value,
            "force": int(batch.force),
            "read_first": int(batch.read_first),
            "rollback_of": batch.rollback_of or "",
            "selecting": int(batch.selecting),
            "queue": batch.queue,
            "priority": batch.priority.value,
            "allow_overlap": int(batch.allow_overlap),
        }
        if batch.canary:
            meta |= {"canary": batch.canary, "canary_left": batch.canary}
        if batch.guard.on:
            meta |= {"guard_window": batch.guard.window, "guard_threshold": batch.guard.threshold}
        meta.update({c: 0 for c in COUNTED if c != "pending"})
        bkey = batch_key(batch.batch_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(bkey, mapping=meta)
        pipe.expire(bkey, ttl)
        if live:
            pipe.zadd(BATCHES_KEY, {batch.batch_id: time.time()})
            pipe.zadd(UNFINISHED_KEY, {batch.batch_id: time.time()})
        pipe.execute()
        self._write_items(batch.batch_id, items, ttl)

    def go_live(self, batch_id: str) -> bool:
        keys = [*_keys(batch_id), expect_key(batch_id), BATCHES_KEY, UNFINISHED_KEY]
        return bool(self._go_live(keys=keys, args=[self._retention, batch_id, time.time()]) == 1)

    def discard(self, batch_id: str) -> None:
        self._redis.delete(
            *_keys(batch_id), expect_key(batch_id), snapshots_key(batch_id), guard_key(batch_id)
        )
        self._redis.zrem(BATCHES_KEY, batch_id)

    def _write_items(self, batch_id: str, items: Iterable[ItemSeed], ttl: int | None = None) -> int:
        ttl = self._retention if ttl is None else ttl
        ikey, dkey, ekey = items_key(batch_id), bodies_key(batch_id), expect_key(batch_id)
        pending = pending_encoder()
        written = 0
        seeds = iter(items)
        with BulkWriter(self._redis) as writer:
            while chunk := list(islice(seeds, _CHUNK)):
                indexes = [str(s.index) for s in chunk]
                records = [pending(s) for s in chunk]
                bodies = [s.body for s in chunk]
                expected = [(str(s.index), s.expect) for s in chunk if s.expect]
                commands: list[list[resp.Arg]] = [
                    ["HSET", ikey, *_pairs(indexes, records)],
                    ["HSET", dkey, *_pairs(indexes, bodies)],
                ]
                if expected:
                    commands.append(["HSET", ekey, *(part for pair in expected for part in pair)])
                    commands.append(["EXPIRE", ekey, ttl])
                commands.append(["EXPIRE", ikey, ttl])
                commands.append(["EXPIRE", dkey, ttl])
                writer.send(resp.commands(commands), replies=len(commands))
                written += len(chunk)
        return written

    def begin_selection(self, batch_id: str) -> bool:
        return bool(self._begin_selection(keys=[batch_key(batch_id)]) == 1)

    def add_items(self, batch_id: str, items: list[ItemSeed]) -> BatchStatus | None:
        added = self._write_items(batch_id, items)
        self._finish_selection(
            keys=[batch_key(batch_id), WEBHOOKS_DUE_KEY], args=[added, batch_id, self._retention]
        )
        return self.status(batch_id)

    def expectation(self, batch_id: str, index: int) -> dict[str, Any] | None:
        raw = self._redis.hget(expect_key(batch_id), str(index))
        return json.loads(raw) if raw else None

    def status(self, batch_id: str) -> BatchStatus | None:
        raw = self._redis.hgetall(batch_key(batch_id))
        if not raw or raw.get(b"state") == STAGING.encode():
            return None  # a staged batch is nobody's business until it goes live
        return decode_status(batch_id, raw)

    def record_outcome(
        self, batch_id: str, item: ItemRecord, keep_body: str | None = None,
        receipt: Receipt | None = None,
    ) -> bool:  # fmt: skip
        keys = [*_keys(batch_id), WEBHOOKS_DUE_KEY, HOLDS_KEY, guard_key(batch_id)]
        args: list[Any] = [
            item.index, item.status.value, item.encode(), self._retention, keep_body or "",
            batch_id, guard_mark(item),
        ]  # fmt: skip
        if receipt is not None:
            keys += [receipt.index_key, receipt.entries_key]
            if receipt.owners_key:
                keys.append(receipt.owners_key)
            args.append(receipt.tag)
        result = self._record(keys=keys, args=args)
        if receipt is not None:
            receipt.settled = True
        if result == 2:
            reason = self._redis.hget(batch_key(batch_id), "paused_reason")
            log.warning("batch %s paused itself: %s", batch_id, _text(reason or b""))
        return result in (1, 2)

    def claim(self, batch_id: str, index: int, lease: float, owner: str) -> Ticket:
        answer = self._claim(
            keys=[
                *_keys(batch_id)[:3], WEBHOOKS_DUE_KEY, bodies_key(batch_id),
                snapshots_key(batch_id), HOLDS_KEY,
            ],
            args=[index, lease, self._retention, owner, batch_id],
        )  # fmt: skip
        claim = Claim(_text(answer[0]))
        if claim is Claim.BUSY:
            return Ticket(claim, busy_for=float(answer[1]))
        if claim not in (Claim.CLAIMED, Claim.RETAKEN):
            return Ticket(claim)
        mode, force, read_first, halted = (_text(v) if v else "" for v in answer[3:7])
        rules = SendRules(
            mode=BatchMode(mode or "update"),
            force=force == "1",
            read_first=read_first != "0",
            halted_reason=halted or None,
            canary=len(answer) > 8 and _text(answer[8]) == "1",
        )
        kept = answer[7] if len(answer) > 7 else None
        return Ticket(
            claim, item=ItemRecord.decode(index, answer[2]), rules=rules,
            snapshot=json.loads(kept) if kept else None,
        )  # fmt: skip

    def release(self, batch_id: str, index: int) -> None:
        self._redis.hdel(claims_key(batch_id), str(index))

    def keep_snapshot(self, batch_id: str, index: int, snapshot: dict[str, Any]) -> dict[str, Any]:
        key, field = snapshots_key(batch_id), str(index)
        # One round trip: the first run's snapshot stays, and WAIT (same connection, so
        # it covers the HSETNX) returns once a replica has it: a failover right after
        # cannot lose a snapshot whose item was sent.
        pipe = self._redis.pipeline(transaction=False)
        pipe.hsetnx(key, field, json.dumps(snapshot, separators=(",", ":")))
        pipe.hget(key, field)
        pipe.expire(key, self._retention)
        replicated = self._has_replicas()
        if replicated:
            pipe.wait(1, REPLICA_WAIT_MS)
        answers = pipe.execute()
        if replicated and not answers[3]:
            log.warning(
                "batch %s item %d: no replica confirmed its snapshot within %d ms; sent anyway",
                batch_id, index, REPLICA_WAIT_MS,
            )  # fmt: skip
        kept: dict[str, Any] = json.loads(answers[1]) if answers[1] else snapshot
        return kept

    def _has_replicas(self) -> bool:
        """Whether the primary has a replica connected: INFO at most every few seconds."""
        checked_at, replicas = self._replicas
        now = time.monotonic()
        if now - checked_at < REPLICAS_CHECK_SECONDS:
            return replicas
        try:
            info = self._redis.info("replication")
            replicas = int(info.get("connected_slaves", 0)) > 0
        except redis.ResponseError:  # INFO refused (a locked-down server): never wait
            replicas = False
        self._replicas = (now, replicas)
        return replicas

    def cancel(self, batch_id: str) -> BatchStatus | None:
        state = _text(self._cancel(keys=[batch_key(batch_id), parked_key(batch_id)]))
        if state == "missing":
            return None
        if state == "cancelled":
            total = int(self._redis.hget(batch_key(batch_id), "total") or 0)
            for first in range(0, total, _CHUNK):
                last = min(total, first + _CHUNK) - 1
                self._sweep(
                    keys=[*_keys(batch_id), WEBHOOKS_DUE_KEY, HOLDS_KEY],
                    args=[first, last, self._retention, batch_id],
                )
        return self.status(batch_id)

    def state_of(self, batch_id: str) -> BatchState | None:
        state = self._redis.hget(batch_key(batch_id), "state")
        return BatchState(_text(state)) if state and _text(state) != STAGING else None

    def pause(self, batch_id: str) -> BatchStatus | None:
        if _text(self._pause(keys=[batch_key(batch_id)])) == "missing":
            return None
        return self.status(batch_id)

    def park(self, batch_id: str, queue: str, message: str) -> bool:
        keys = [batch_key(batch_id), parked_key(batch_id), queue]
        return bool(self._park(keys=keys, args=[message, self._retention]) == 1)

    def parked(self, batch_id: str) -> list[str]:
        return [_text(m) for m in self._redis.lrange(parked_key(batch_id), 0, -1)]

    def continue_batch(
        self, batch_id: str, queue: str, *, no_guard: bool = False
    ) -> tuple[bool, BatchStatus] | None:
        answer = self._continue(
            keys=[batch_key(batch_id), parked_key(batch_id), queue, guard_key(batch_id)],
            args=["1" if no_guard else "0"],
        )
        if len(answer) < 4:
            return None
        # The status as the continue left it: a worker may start the batch right after.
        fields = answer[3]
        raw = dict(zip(fields[::2], fields[1::2], strict=True))
        if _text(raw.get(b"state", b"")) == STAGING:
            return None  # nobody's business until it goes live
        return bool(answer[0]), decode_status(batch_id, raw)

    def bodies(self, batch_id: str, indexes: list[int]) -> dict[int, str]:
        if not indexes:
            return {}
        raws = self._redis.hmget(bodies_key(batch_id), [str(i) for i in indexes])
        return {i: _text(r) for i, r in zip(indexes, raws, strict=True) if r is not None}

    def halt(self, batch_id: str, reason: str) -> None:
        self._redis.hsetnx(batch_key(batch_id), "halted_reason", reason)

    def unfinished(self, page: int = 1000) -> Iterator[str]:
        """Live batches, oldest first, not yet seen ended (`forget_finished`), a page of
        ids at a time."""
        start = 0
        while ids := self._redis.zrange(UNFINISHED_KEY, start, start + page - 1):
            yield from (_text(i) for i in ids)
            start += page

    def forget_finished(self, batch_ids: list[str]) -> None:
        if batch_ids:
            self._redis.zrem(UNFINISHED_KEY, *batch_ids)

    def note_resumed(self, batch_id: str) -> None:
        """The workers resumed this stalled batch by themselves: its status says so."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(batch_key(batch_id), "resumed", 1)
        pipe.hset(batch_key(batch_id), "resumed_at", f"{time.time():.6f}")
        pipe.execute()

    def take_due_webhook(self, owner: str) -> str | None:
        return self._outbox.take(owner)

    def record_webhook(
        self, entry: str, status: str, attempts: int, error: str | None, *, owner: str
    ) -> None:
        self._outbox.record(entry, status, attempts, error, owner=owner)

    def give_back_webhook(self, entry: str, owner: str) -> None:
        self._outbox.give_back(entry, owner)

    def return_lapsed_webhooks(self, lapse: float) -> list[str]:
        """Webhooks in flight whose deliverer has not beaten for `lapse` seconds (or is
        not in the heartbeats at all), back in the outbox, each once; their entries."""
        return self._outbox.return_lapsed(lapse)

    def hold(
        self, batch_id: str, numbers: Iterable[tuple[str, int]], *, share: bool = False
    ) -> list[tuple[str, str]]:
        return self._holds.hold(batch_id, numbers, share=share)

    def release_holds(self, batch_id: str, numbers: Iterable[tuple[str, int]]) -> None:
        self._holds.release(batch_id, numbers)

    def link_retry(self, parent_id: str, child_id: str) -> None:
        self._link(keys=[batch_key(parent_id)], args=[child_id])

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
