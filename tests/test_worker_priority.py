"""A task queued again by a worker keeps its priority: Celery hands the task the priority
its message came with, and hand-backs and parks put the item back on that priority's key."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from celery.app.task import Context
from celery.worker.request import Request
from kombu import Connection
from kombu.transport.virtual import Message

from config import load_settings
from jobs.queue.deferral import Deferrals
from jobs.queue.messages import UPDATE_TASK, task_message, update_args
from jobs.queue.priority import Priority, queue_key, queue_keys
from jobs.store.interface import ItemSeed, NewBatch
from jobs.store.redis_store import RedisReportStore
from worker.delivery import WorkItem
from worker.retry import Attempts, Deferred
from worker.runtime import Runtime

QUEUE = "q-keeps"
LOW = Priority.LOW.level


class _Task:
    def __init__(self, request: Context) -> None:
        self.request = request


def test_a_task_is_told_the_priority_its_message_came_with() -> None:
    from worker.app import app
    from worker.tasks import level_of_task

    raw = task_message(
        task_name=UPDATE_TASK, task_id="t-1", queue=QUEUE, origin="o", argsrepr="r",
        args_json=update_args("b", 0, 2, "n0", "{}"), priority=LOW,
    )  # fmt: skip
    with Connection("memory://") as connection:
        # What a worker's consumer builds from the message, then the task's context.
        message = Message(json.loads(raw), channel=connection.default_channel)
        request = Request(message, app=app, task=app.tasks[UPDATE_TASK])
    task: Any = _Task(Context(request.request_dict))
    assert level_of_task(task) == LOW
    none: Any = _Task(Context({}))
    assert level_of_task(none) == Priority.NORMAL.level


def _runtime(client: redis.Redis) -> Runtime:
    store = RedisReportStore(client, retention_seconds=600)
    settings = load_settings(queue=QUEUE)
    parts: Any = None  # the API and the sender: a hand-back or a park uses neither
    return Runtime(settings, parts, store, parts, Deferrals(client, QUEUE))


def _where(client: redis.Redis) -> list[list[int]]:
    """The priority of each message on each of the queue's keys."""
    return [
        [json.loads(m)["properties"]["priority"] for m in client.lrange(key, 0, -1)]
        for key in queue_keys(QUEUE)
    ]


def test_a_hand_back_and_a_park_keep_the_items_priority(redis_client: redis.Redis) -> None:
    runtime = _runtime(redis_client)
    runtime.store.create_batch(
        NewBatch("b", name="t", source="cli", total=2, priority=Priority.LOW),
        [ItemSeed(i, i + 2, f"n{i}", "{}") for i in range(2)],
    )
    item = WorkItem("b", 0, 2, "n0", {"provider": "vapi"})

    runtime.hand_back(item, Deferred(0.0, Attempts()), LOW)
    time.sleep(0.01)
    assert runtime.deferrals.release_due() == 1
    assert _where(redis_client) == [[], [], [LOW], []]

    runtime.store.pause("b")
    runtime.park(WorkItem("b", 1, 3, "n1", {"provider": "vapi"}), Attempts(), LOW)
    answer = runtime.store.continue_batch("b", QUEUE)  # QUEUE: high's key, if none noted
    assert answer is not None and answer[0]
    assert _where(redis_client) == [[], [], [LOW, LOW], []]
    assert redis_client.llen(queue_key(QUEUE, LOW)) == 2
