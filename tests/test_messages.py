"""Hand-built task messages are what Celery itself would put on the queue."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
import redis

from jobs.queue.messages import (
    DEFAULTED,
    UPDATE_TASK,
    _envelope,
    encoded_body,
    message_template,
    new_ids,
    task_message,
    update_args,
)
from jobs.queue.priority import Priority, queue_key, queue_keys


def test_update_args_splice_the_body_unchanged() -> None:
    args = json.loads(update_args("b-1", 3, 5, 'n"1', '{"provider":"vapi","name":"x"}'))
    assert args == ["b-1", 3, 5, 'n"1', {"provider": "vapi", "name": "x"}]


def test_the_message_matches_celerys_own(redis_client: redis.Redis, redis_url: str) -> None:
    from config import load_settings
    from worker.app import create_app

    app = create_app(load_settings(redis_url=redis_url, queue="q-compare"))
    args = ["b", 0, 2, "n1", {"provider": "vapi"}]
    level = Priority.LOW.level
    app.send_task(
        UPDATE_TASK, args=args, task_id="t-1", queue="q-compare", ignore_result=True,
        priority=level,
    )  # fmt: skip
    # kombu put it on the key of its priority, where ours goes too.
    assert redis_client.llen("q-compare") == 0
    celery_made = json.loads(redis_client.rpop(queue_key("q-compare", level)) or b"")
    ours = json.loads(
        task_message(
            task_name=UPDATE_TASK, task_id="t-1", queue="q-compare", origin="o", argsrepr="r",
            args_json=update_args("b", 0, 2, "n1", '{"provider":"vapi"}'), priority=level,
        )
    )  # fmt: skip
    assert ours["properties"]["priority"] == celery_made["properties"]["priority"] == level

    def body(message: dict[str, object]) -> object:
        return json.loads(base64.b64decode(str(message["body"])))

    args, kwargs, embed = body(celery_made)  # type: ignore[misc]
    assert body(ours) == [args, kwargs, {}]
    assert set(embed.values()) == {None}  # what Celery reads with .get(): None
    assert set(ours) == set(celery_made)
    varying = {"origin", "argsrepr", "delivery_tag"}
    for part in ("headers", "properties"):
        left_out = set(celery_made[part]) - set(ours[part])
        assert left_out == set(DEFAULTED[part]), part
        assert set(ours[part]) <= set(celery_made[part]), part
        for key, value in ours[part].items():
            if key not in varying:
                assert value == celery_made[part][key], key
    # Each field left out is what Celery's worker assumes in its absence, or means the same.
    headers = celery_made["headers"]
    assert all(headers[k] is None for k in ("shadow", "eta", "expires", "group", "parent_id"))
    assert headers["group_index"] is None and headers["stamped_headers"] is None
    assert headers["timelimit"] == [None, None] and headers["kwargsrepr"] == "{}"
    assert headers["replaced_task_nesting"] == 0 and headers["stamps"] == {}
    # reply_to and correlation_id address a result to the caller: the app keeps none.
    assert app.conf.result_backend is None and app.conf.task_ignore_result


def test_argsrepr_never_carries_the_body() -> None:
    message = json.loads(
        task_message(
            task_name=UPDATE_TASK, task_id="t", queue="q", origin="o", priority=3,
            argsrepr="(batch=b, row=2, id=n1)",
            args_json=update_args("b", 0, 2, "n1", '{"twilioAuthToken":"s3cret"}'),
        )
    )  # fmt: skip
    assert "s3cret" not in json.dumps(message["headers"])


@pytest.mark.parametrize(
    ("queue", "origin", "task_id", "argsrepr"),
    [
        ("q", "o@host", "0123abcd", "(batch=b, row=2, id=n1)"),
        ('q"{x}', "o\\{{}}é", "t-1", 'id="quoted" {braces} \u2028 \x00'),
        ("{task_id}", "{body}", "{tag}", "{argsrepr}"),
    ],
)
def test_the_template_fills_in_what_a_dumped_envelope_holds(
    queue: str, origin: str, task_id: str, argsrepr: str
) -> None:
    args_json = update_args("b", 0, 2, "n1", '{"name":"é \\"x\\""}')
    template = message_template(task_name=UPDATE_TASK, queue=queue, origin=origin, priority=6)
    filled = template.fill(args_json=args_json, task_id=task_id, argsrepr=argsrepr, tag="t4g")
    envelope = _envelope(
        task_name=UPDATE_TASK, task_id=task_id, body=encoded_body(args_json), queue=queue,
        origin=origin, argsrepr=argsrepr, tag="t4g", priority=6,
    )  # fmt: skip
    assert filled == orjson.dumps(envelope).decode()
    assert template.key == queue_key(queue, 6) == f"{queue}\x06\x166"
    assert json.loads(base64.b64decode(json.loads(filled)["body"]))[0][4] == {"name": 'é "x"'}


def test_ids_are_unique_and_hex() -> None:
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_templates_are_kept_per_priority() -> None:
    def template(priority: int) -> object:
        return message_template(task_name=UPDATE_TASK, queue="q", origin="o", priority=priority)

    assert template(0) is template(0) and template(0) is not template(3)
    for level in (0, 3, 6):
        filled = task_message(
            task_name=UPDATE_TASK, task_id="t", queue="q", origin="o", argsrepr="r",
            args_json="[]", priority=level,
        )  # fmt: skip
        assert json.loads(filled)["properties"]["priority"] == level


def _probe() -> None:
    pass


def test_celery_publishes_at_normal_unless_told(redis_client: redis.Redis, redis_url: str) -> None:
    """What Celery publishes itself (beat's fire task) waits with normal work, not on the
    queue's own key, which is high's."""
    from config import load_settings
    from worker.app import create_app
    from worker.beat import FIRE_TASK, beat_schedule

    app = create_app(load_settings(redis_url=redis_url, queue="q-default"))
    probe = app.task(name="phonebatch.probe", ignore_result=True)(_probe)
    probe.apply_async(queue="q-default")  # a task of the app: task_default_priority
    # Beat sends the fire task by name (not always registered there): the entry's options.
    options = next(iter(beat_schedule([_schedule()]).values()))["options"]
    app.send_task(FIRE_TASK, args=["s"], queue="q-default", ignore_result=True, **options)
    assert [redis_client.llen(key) for key in queue_keys("q-default")] == [0, 2, 0, 0]
    normal = redis_client.lrange(queue_key("q-default", Priority.NORMAL.level), 0, -1)
    assert {json.loads(m)["properties"]["priority"] for m in normal} == {Priority.NORMAL.level}


def _schedule() -> Any:
    from config.schedules import Schedule

    return Schedule.model_construct(name="s")
