"""Celery task messages built by hand, so the producer can push thousands per round trip.

`task_message` gives what `Task.apply_async` would put on a Redis list (Celery message
protocol 2 in kombu's Redis envelope) less the fields a Celery worker reads with a default
equal to the value Celery writes (`DEFAULTED`): a queued task is most of the Redis memory
a batch takes, and those fields were a quarter of it (1,176 bytes a queued update task
before, 748 after). `tests/test_messages.py` checks it field by field against a message
Celery itself wrote, and the end-to-end tests have real workers run it.
A `MessageTemplate` is that same message with the parts that vary per task left open:
a batch of 100,000 tasks fills one template instead of dumping 100,000 envelopes.
Every message carries its batch's priority (`properties.priority`, kombu's 0-9) and waits
on that priority's key of the queue (`jobs.queue.priority.queue_key`).
"""

from __future__ import annotations

import binascii
import os
import re
import secrets
from functools import lru_cache
from typing import Any

import orjson

from jobs.queue.priority import queue_key

UPDATE_TASK = "phonebatch.update_phone_number"
SELECT_TASK = "phonebatch.select_numbers"
READ_TASK = "phonebatch.read_numbers"
_EMBED = "{}"  # Celery writes callbacks, errbacks, chain and chord as null; it reads .get()
# Headers and properties Celery writes that its worker reads with `.get()` (or `in`) and a
# default that means the same for a task with no result, no canvas, no time limit and no
# eta: left out. Not `root_id` (a default None is not the task id) nor `retries`.
DEFAULTED = {
    "headers": (
        "shadow", "eta", "expires", "group", "group_index", "timelimit", "parent_id",
        "kwargsrepr", "replaced_task_nesting", "stamped_headers", "stamps",
    ),
    "properties": ("correlation_id", "reply_to"),
}  # fmt: skip
_ID_BYTES = 16


def new_id() -> str:
    """A unique id for a task or a delivery: 128 random bits, as uuid4 but cheaper."""
    return os.urandom(_ID_BYTES).hex()


def new_ids(count: int) -> list[str]:
    """`count` ids as `new_id` makes them, from one read of the system's randomness."""
    text = os.urandom(_ID_BYTES * count).hex()
    step = 2 * _ID_BYTES
    return [text[start : start + step] for start in range(0, step * count, step)]


def _envelope(
    *,
    task_name: str,
    task_id: str,
    body: str,
    queue: str,
    origin: str,
    argsrepr: str,
    tag: str,
    priority: int,
) -> dict[str, Any]:
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "retries": 0,
        "root_id": task_id,
        "argsrepr": argsrepr,
        "origin": origin,
        "ignore_result": True,
    }
    properties = {
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": priority,
        "body_encoding": "base64",
        "delivery_tag": tag,
    }
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }


def encoded_body(args_json: str, kwargs_json: str = "{}") -> str:
    """The message body: (args, kwargs, embed) as JSON, base64 as kombu's Redis sends it."""
    body = f"[{args_json},{kwargs_json},{_EMBED}]".encode()
    return binascii.b2a_base64(body, newline=False).decode()


class MessageTemplate:
    """The Redis list entry of one task, queue and priority, with the per-call parts to
    fill in. It goes on `self.key`, the queue's key for its priority."""

    # Where the per-call parts fall in the envelope's JSON, in order.
    _SLOTS = ("body", "task_id", "task_id", "argsrepr", "tag")

    def __init__(self, *, task_name: str, queue: str, origin: str, priority: int) -> None:
        self._task_name, self._queue, self._origin = task_name, queue, origin
        self._priority = priority
        self.key = queue_key(queue, priority)
        # A random word no task name, queue or origin holds marks each part's place.
        word = secrets.token_hex(16)
        markers = {slot: f"{word}-{slot}" for slot in self._SLOTS}
        segments, slots = _split(self._dump(**markers), markers)
        if slots != list(self._SLOTS):
            raise RuntimeError(f"task message parts are not where expected: {slots}")
        self._segments = tuple(segments)

    def _dump(self, *, body: str, task_id: str, argsrepr: str, tag: str) -> str:
        envelope = _envelope(
            task_name=self._task_name, task_id=task_id, body=body, queue=self._queue,
            origin=self._origin, argsrepr=argsrepr, tag=tag, priority=self._priority,
        )  # fmt: skip
        return orjson.dumps(envelope).decode()

    def fill(
        self, *, args_json: str, task_id: str, argsrepr: str, tag: str, kwargs_json: str = "{}"
    ) -> str:
        """The message: what `task_message` gives for the same values."""
        s0, s1, s2, s3, s4, s5 = self._segments
        task = _json_text(task_id)
        body = encoded_body(args_json, kwargs_json)  # base64: nothing in it to escape
        return "".join(
            (s0, '"', body, '"', s1, task, s2, task, s3, _json_text(argsrepr), s4,
             _json_text(tag), s5)
        )  # fmt: skip


def _split(text: str, markers: dict[str, str]) -> tuple[list[str], list[str]]:
    """The text around the markers (as JSON strings), and the slot of each marker found."""
    quoted = {f'"{marker}"': slot for slot, marker in markers.items()}
    segments, slots, start = [], [], 0
    for found in re.finditer("|".join(map(re.escape, quoted)), text):
        segments.append(text[start : found.start()])
        slots.append(quoted[found.group()])
        start = found.end()
    segments.append(text[start:])
    return segments, slots


def _json_text(value: str) -> str:
    if value.isascii() and value.isalnum():  # an id: a JSON string as it is
        return f'"{value}"'
    return orjson.dumps(value).decode()


@lru_cache(maxsize=32)
def message_template(*, task_name: str, queue: str, origin: str, priority: int) -> MessageTemplate:
    return MessageTemplate(task_name=task_name, queue=queue, origin=origin, priority=priority)


def task_message(
    *,
    task_name: str,
    task_id: str,
    args_json: str,
    queue: str,
    origin: str,
    argsrepr: str,
    priority: int,
    kwargs_json: str = "{}",
) -> str:
    """The Redis list entry for one task call, to push on `queue_key(queue, priority)`.

    `args_json` is the JSON array of positional arguments, already serialized: a body
    validated and dumped once at intake is spliced in as it is. `argsrepr` is what
    monitoring tools show instead of the arguments: never a secret. `priority` is the
    kombu priority (`jobs.queue.priority`: a batch's `Priority.level`).
    """
    template = message_template(task_name=task_name, queue=queue, origin=origin, priority=priority)
    return template.fill(
        args_json=args_json,
        task_id=task_id,
        argsrepr=argsrepr,
        tag=new_id(),
        kwargs_json=kwargs_json,
    )


def update_args(batch_id: str, index: int, row: int, number_id: str, body_json: str) -> str:
    """The update task's arguments: (batch_id, index, row, number_id, body)."""
    head = orjson.dumps([batch_id, index, row, number_id]).decode()
    return f"{head[:-1]},{body_json}]"
