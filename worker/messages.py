"""Celery task messages built by hand, so the producer can push thousands per round trip.

`task_message` gives exactly what `Task.apply_async` would put on a Redis list (Celery
message protocol 2 in kombu's Redis envelope); `tests/test_messages.py` checks it
against a message Celery itself wrote, and the end-to-end tests have real workers run it.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import orjson

UPDATE_TASK = "phonebatch.update_phone_number"
SELECT_TASK = "phonebatch.select_numbers"
_EMBED = '{"callbacks":null,"errbacks":null,"chain":null,"chord":null}'


def new_id() -> str:
    """A unique id for a task or a delivery: 128 random bits, as uuid4 but cheaper."""
    return os.urandom(16).hex()


def task_message(
    *,
    task_name: str,
    task_id: str,
    args_json: str,
    queue: str,
    origin: str,
    argsrepr: str,
    kwargs_json: str = "{}",
) -> str:
    """The Redis list entry for one task call.

    `args_json` is the JSON array of positional arguments, already serialized: a body
    validated and dumped once at intake is spliced in as it is. `argsrepr` is what
    monitoring tools show instead of the arguments: never a secret.
    """
    body = f"[{args_json},{kwargs_json},{_EMBED}]"
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr,
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {
        "correlation_id": task_id,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": new_id(),
    }
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    }
    return orjson.dumps(envelope).decode()


def update_args(batch_id: str, index: int, row: int, number_id: str, body_json: str) -> str:
    """The update task's arguments: (batch_id, index, row, number_id, body)."""
    head = orjson.dumps([batch_id, index, row, number_id]).decode()
    return f"{head[:-1]},{body_json}]"
