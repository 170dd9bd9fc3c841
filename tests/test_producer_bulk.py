"""Bulk writes to Redis: packed commands, the streaming writer, and what submit leaves there.

The packed bytes are compared with redis-py's own packing, and what `create_batch` and
`enqueue_items` write is compared with what redis-py's generic commands write for the
same batch: the workers and the reports read it, so it must not change by a byte.
"""

from __future__ import annotations

import base64
import json
from functools import partial
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

from jobs.batch.validation import BatchItem
from jobs.operations.producer import enqueue_items, new_batch, seeds_of
from jobs.queue import resp
from jobs.queue.bulk import BulkWriter
from jobs.queue.messages import UPDATE_TASK
from jobs.queue.priority import Priority, queue_key, queue_length
from jobs.store.interface import ItemRecord, ItemSeed
from jobs.store.keys import bodies_key, expect_key, items_key
from jobs.store.redis_store import RedisReportStore, pending_encoder

ARGS = st.one_of(
    st.text(max_size=30),
    st.binary(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70),
)


# --- packing ----------------------------------------------------------------------------


NAMES = st.sampled_from(["HSET", "LPUSH", b"SET", "CONFIG GET", b"CLIENT LIST"])


@settings(max_examples=300, deadline=None, database=None)
@given(name=NAMES, rest=st.lists(ARGS, max_size=8))
def test_packed_commands_are_the_bytes_redis_py_sends(name: str | bytes, rest: list[Any]) -> None:
    args = [name, *rest]
    assert resp.command(args) == b"".join(Connection().pack_command(*args))


def test_several_commands_pack_one_after_another() -> None:
    batch: list[list[resp.Arg]] = [["HSET", "k", "0", "é"], ["EXPIRE", "k", 60]]
    assert resp.commands(batch) == resp.command(batch[0]) + resp.command(batch[1])


@pytest.mark.parametrize("bad", [True, 1.5, None, ["x"]])
def test_arguments_redis_py_refuses_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        resp.command(["SET", "k", bad])


def test_a_command_needs_a_name() -> None:
    with pytest.raises(ValueError, match="name"):
        resp.command([])


# --- the writer -------------------------------------------------------------------------


def test_the_writer_applies_every_blob_in_order(redis_client: redis.Redis) -> None:
    confirmed: list[int] = []
    with BulkWriter(redis_client, window=2) as writer:
        for n in range(5):
            blob = resp.commands([["RPUSH", "l", str(n)], ["INCR", "c"]])
            writer.send(blob, replies=2, on_confirmed=partial(confirmed.append, n))
    assert redis_client.lrange("l", 0, -1) == [b"0", b"1", b"2", b"3", b"4"]
    assert redis_client.get("c") == b"5"
    assert confirmed == [0, 1, 2, 3, 4]


def test_an_error_reply_is_raised_and_the_pool_stays_usable(redis_client: redis.Redis) -> None:
    redis_client.hset("h", "f", "v")
    blob = resp.commands([["SET", "a", "1"], ["LPUSH", "h", "x"], ["SET", "b", "2"]])
    with BulkWriter(redis_client) as writer:
        writer.send(blob, 3)
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            writer.finish()
        with pytest.raises(RuntimeError, match="failed already"):
            writer.send(blob, 3)
    # The blob's other commands ran, as in a pipeline; the next command reads its own reply.
    assert redis_client.mget("a", "b") == [b"1", b"2"]
    assert redis_client.ping() is True


def _drop_other_connections(client: redis.Redis) -> None:
    listed = client.execute_command("CLIENT", "LIST", "TYPE", "normal")
    for line in listed.splitlines():  # every connection but the one that lists them goes
        client_id = line.split()[0].split(b"=")[1].decode()
        client.execute_command("CLIENT", "KILL", "ID", client_id, "SKIPME", "yes")


def test_a_dropped_connection_is_retried_as_the_client_says(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 2))
    client.delete("h")
    with BulkWriter(client, window=4) as writer:
        writer.send(resp.command(["HSET", "h", "0", "a"]), 1)
        writer.finish()
        _drop_other_connections(redis.Redis.from_url(redis_url))
        writer.send(resp.command(["HSET", "h", "1", "b"]), 1)
        writer.send(resp.command(["HSET", "h", "2", "c"]), 1)
    assert client.hgetall("h") == {b"0": b"a", b"1": b"b", b"2": b"c"}


def test_without_retries_a_dropped_connection_is_an_error(redis_client: redis.Redis) -> None:
    with BulkWriter(redis_client, window=0) as writer:
        writer.send(resp.command(["HSET", "h", "0", "a"]), 1)
        _drop_other_connections(redis_client)
        with pytest.raises(redis.ConnectionError):
            writer.send(resp.command(["HSET", "h", "1", "b"]), 1)
    assert redis_client.hgetall("h") == {b"0": b"a"}  # and the pool makes a new connection


def test_the_writer_is_a_context_manager() -> None:
    writer = BulkWriter(redis.Redis())
    with pytest.raises(RuntimeError, match="context manager"):
        writer.send(b"*1\r\n$4\r\nPING\r\n", 1)


# --- what the store writes --------------------------------------------------------------


@settings(max_examples=200, deadline=None, database=None)
@given(row=st.integers(min_value=0, max_value=2**40), number_id=st.text(max_size=20))
def test_pending_records_are_what_item_record_encodes(row: int, number_id: str) -> None:
    seed = ItemSeed(3, row, number_id)
    assert pending_encoder()(seed) == ItemRecord(3, row, number_id).encode()


def _written_by_redis_py(client: redis.Redis, batch_id: str, seeds: list[ItemSeed]) -> None:
    """What `_write_items` wrote before it packed its own commands."""
    pipe = client.pipeline(transaction=False)
    pipe.hset(
        items_key(batch_id),
        mapping={s.index: ItemRecord(s.index, s.row, s.number_id).encode() for s in seeds},
    )
    pipe.hset(bodies_key(batch_id), mapping={s.index: s.body for s in seeds})
    expected = {s.index: s.expect for s in seeds if s.expect}
    if expected:
        pipe.hset(expect_key(batch_id), mapping=expected)  # type: ignore[arg-type]
        pipe.expire(expect_key(batch_id), 3600)
    pipe.expire(items_key(batch_id), 3600)
    pipe.expire(bodies_key(batch_id), 3600)
    pipe.execute()


def _contents(client: redis.Redis, batch_id: str) -> dict[str, Any]:
    keys = (items_key(batch_id), bodies_key(batch_id), expect_key(batch_id))
    return {
        key.replace(batch_id, "B"): (client.hgetall(key), client.ttl(key) > 3500) for key in keys
    }


def test_create_batch_writes_what_redis_py_would(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobs.store.redis_store._CHUNK", 7)  # several blobs
    seeds = [
        ItemSeed(i, i + 2, f'n"{i}é', json.dumps({"name": f"Line {i} ü"}),
                 json.dumps({"name": "was"}) if i % 3 == 0 else None)
        for i in range(30)
    ]  # fmt: skip
    store = RedisReportStore(redis_client, retention_seconds=3600)
    store.create_batch(new_batch("ours", "n", "cli", len(seeds)), seeds)
    _written_by_redis_py(redis_client, "theirs", seeds)
    assert _contents(redis_client, "ours") == _contents(redis_client, "theirs")
    assert len(redis_client.hgetall(items_key("ours"))) == 30


# --- what the producer enqueues ---------------------------------------------------------


def test_every_item_becomes_one_task_in_order(redis_client: redis.Redis) -> None:
    items = [BatchItem(i + 2, f"n{i}", json.dumps({"name": f"é{i}"})) for i in range(2500)]
    seen: list[int] = []
    pushed = enqueue_items(
        redis_client, "q", "b-1", items, on_progress=seen.append, priority=Priority.LOW
    )
    assert pushed == 2500
    assert seen == [1000, 2000, 2500]
    key = queue_key("q", Priority.LOW.level)  # the batch's priority's key, and only it
    assert queue_length(redis_client, "q") == redis_client.llen(key) == 2500
    messages = [json.loads(m) for m in reversed(redis_client.lrange(key, 0, -1))]
    assert {m["properties"]["priority"] for m in messages} == {Priority.LOW.level}
    args = [json.loads(base64.b64decode(m["body"]))[0] for m in messages]
    assert args == [["b-1", i, i + 2, f"n{i}", {"name": f"é{i}"}] for i in range(2500)]
    assert {m["headers"]["task"] for m in messages} == {UPDATE_TASK}
    ids = [m["headers"]["id"] for m in messages] + [
        m["properties"]["delivery_tag"] for m in messages
    ]
    assert len(set(ids)) == 5000  # every task and delivery has its own id
    assert all(m["headers"]["id"] == m["headers"]["root_id"] for m in messages)


def test_resumed_items_keep_their_own_indexes(redis_client: redis.Redis) -> None:
    items = [BatchItem(9, "n7", "{}"), BatchItem(12, "n10", "{}")]
    enqueue_items(redis_client, "q", "b-1", items, indexes=[7, 10], priority=Priority.HIGH)
    messages = [json.loads(m) for m in redis_client.lrange("q", 0, -1)]  # high's key
    bodies = [json.loads(base64.b64decode(m["body"])) for m in messages]
    assert sorted(b[0][1] for b in bodies) == [7, 10]


def test_seeds_carry_the_items(redis_client: redis.Redis) -> None:
    items = [BatchItem(2, "n1", '{"name":"x"}', expect='{"name":"y"}')]
    assert list(seeds_of(items)) == [ItemSeed(0, 2, "n1", '{"name":"x"}', '{"name":"y"}')]


class _Breaks(list[BatchItem]):
    """A batch whose items run out part way: as if the submitter failed mid-write."""

    def __init__(self, items: list[BatchItem], after: int) -> None:
        super().__init__(items)
        self._after = after

    def __iter__(self) -> Any:
        for n, item in enumerate(super().__iter__()):
            if n == self._after:
                raise ConnectionError("the submitter lost its way after writing part of it")
            yield item


@pytest.mark.parametrize("read_first", [True, False])
def test_a_submission_that_fails_part_way_leaves_nothing(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, read_first: bool
) -> None:
    from jobs.operations.producer import BatchOptions, submit_batch

    monkeypatch.setattr("jobs.store.redis_store._CHUNK", 7)  # several chunks written first
    items = [BatchItem(i + 2, f"n{i}", '{"provider":"vapi"}') for i in range(50)]
    store = RedisReportStore(redis_client, retention_seconds=3600)

    with pytest.raises(ConnectionError):
        submit_batch(
            _Breaks(items, after=30), store=store, broker=redis_client, queue="q", name="t",
            source="cli", batch_id="b-broken", options=BatchOptions(read_first=read_first),
        )  # fmt: skip

    assert list(redis_client.scan_iter("phonebatch:{b-broken}*")) == []
    assert redis_client.llen("q") == 0 and store.status("b-broken") is None
    assert redis_client.zcard("phonebatch:batches") == 0
