"""Hand-built task messages are what Celery itself would put on the queue."""

from __future__ import annotations

import base64
import json

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


def test_update_args_splice_the_body_unchanged() -> None:
    args = json.loads(update_args("b-1", 3, 5, 'n"1', '{"provider":"vapi","name":"x"}'))
    assert args == ["b-1", 3, 5, 'n"1', {"provider": "vapi", "name": "x"}]


def test_the_message_matches_celerys_own(redis_client: redis.Redis, redis_url: str) -> None:
    from config import load_settings
    from worker.app import create_app

    app = create_app(load_settings(redis_url=redis_url, queue="q-compare"))
    args = ["b", 0, 2, "n1", {"provider": "vapi"}]
    app.send_task(UPDATE_TASK, args=args, task_id="t-1", queue="q-compare", ignore_result=True)
    celery_made = json.loads(redis_client.rpop("q-compare") or b"")
    ours = json.loads(
        task_message(
            task_name=UPDATE_TASK, task_id="t-1", queue="q-compare", origin="o", argsrepr="r",
            args_json=update_args("b", 0, 2, "n1", '{"provider":"vapi"}'),
        )
    )  # fmt: skip

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
            task_name=UPDATE_TASK, task_id="t", queue="q", origin="o",
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
    filled = message_template(task_name=UPDATE_TASK, queue=queue, origin=origin).fill(
        args_json=args_json, task_id=task_id, argsrepr=argsrepr, tag="t4g"
    )
    envelope = _envelope(
        task_name=UPDATE_TASK, task_id=task_id, body=encoded_body(args_json), queue=queue,
        origin=origin, argsrepr=argsrepr, tag="t4g",
    )  # fmt: skip
    assert filled == orjson.dumps(envelope).decode()
    assert json.loads(base64.b64decode(json.loads(filled)["body"]))[0][4] == {"name": 'é "x"'}


def test_ids_are_unique_and_hex() -> None:
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
