"""The core pipeline end to end: the real CLI, a real Celery worker, the simulator, Redis."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.queue.priority import queue_length
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import API_KEY, QUEUE
from tests.helpers import Simulator, WorkerProcess, run_cli

pytestmark = pytest.mark.e2e

HOOK = [
    {
        "on": "call.ringing",
        "filters": [{"type": "startsWith", "key": "number", "startsWith": ["+1555"]}],
        "do": [{"type": "say", "exact": "Please hold"}],
    },
    {
        "on": "call.ending",
        "filters": [
            {"type": "oneOf", "key": "call.endedReason", "oneOf": "assistant-request-failed"}
        ],
        "do": {
            "type": "transfer",
            "destination": {"type": "sip", "sipUri": "sip:desk@example.com"},
        },
    },
]
FALLBACK = {
    "type": "number",
    "number": "+15550001111",
    "message": {
        "type": "custom-message",
        "contents": [{"type": "text", "text": "Transferring", "language": "en"}],
    },
    "transferPlan": {
        "mode": "warm-transfer-say-summary",
        "sipVerb": "refer",
        "summaryPlan": {"enabled": True, "timeoutSeconds": 5},
        "contextEngineeringPlan": {"type": "lastNMessages", "maxMessages": 10},
        "fallbackPlan": {"message": "Sorry, nobody is free", "endCallEnabled": False},
    },
}
COLUMNS = [
    "id", "provider", "assistantId", "name", "server.url", "server.timeoutSeconds",
    "server.headers.X-Api-Key", "hooks", "fallbackDestination", "smsEnabled",
    "numberE164CheckEnabled", "authentication.username", "authentication.password",
]  # fmt: skip


def _row_for(
    number: dict[str, Any], i: int, rng: random.Random
) -> tuple[list[str], dict[str, Any]]:
    """A CSV row for one number and the body it must produce."""
    cells = dict.fromkeys(COLUMNS, "")
    cells["id"], cells["provider"] = number["id"], number["provider"]
    body: dict[str, Any] = {"provider": number["provider"], "assistantId": f"asst_new_{i % 7}"}
    cells["assistantId"] = body["assistantId"]
    if i % 3 == 0:
        cells["name"] = body["name"] = f"Moved {i}"
    if i % 4 == 0:
        cells["server.url"] = f"https://hooks.example.com/{i}"
        cells["server.timeoutSeconds"] = str(10 + i % 20)
        cells["server.headers.X-Api-Key"] = f"secret-{i}"
        body["server"] = {
            "url": cells["server.url"],
            "timeoutSeconds": 10 + i % 20,
            "headers": {"X-Api-Key": f"secret-{i}"},
        }
    if i % 5 == 1:
        cells["hooks"], body["hooks"] = json.dumps(HOOK), HOOK
    if i % 6 == 2:
        cells["fallbackDestination"], body["fallbackDestination"] = json.dumps(FALLBACK), FALLBACK
    provider = number["provider"]
    if provider == "twilio" and rng.random() < 0.5:
        cells["smsEnabled"], body["smsEnabled"] = "false", False
    if provider == "byo-phone-number" and rng.random() < 0.5:
        cells["numberE164CheckEnabled"], body["numberE164CheckEnabled"] = "true", True
    if provider == "vapi" and rng.random() < 0.5:
        cells["authentication.username"] = "sip-user"
        cells["authentication.password"] = f"pw-{i}"
        body["authentication"] = {"username": "sip-user", "password": f"pw-{i}"}
    return [cells[c] for c in COLUMNS], body


def _write_csv(path: Path, numbers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rng = random.Random(5)
    expected = {}
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for i, number in enumerate(numbers):
            cells, body = _row_for(number, i, rng)
            writer.writerow(cells)
            expected[number["id"]] = body
    return expected


def _env(redis_url: str) -> dict[str, str]:
    # The producer side needs Redis and the queue name, never the API key.
    return {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": QUEUE}


def _assert_key_nowhere_in_redis(client: redis.Redis) -> None:
    needle = API_KEY.encode()
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [k + v for k, v in client.hgetall(key).items()]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        assert all(needle not in v for v in [key, *values]), f"API key found in {key!r}"


def test_mixed_csv_of_300_numbers_lands_exactly(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    worker: WorkerProcess,
) -> None:
    numbers = generate_numbers(300, seed=11)
    simulator.reset(numbers)
    expected = _write_csv(tmp_path / "batch.csv", numbers)
    assert {n["provider"] for n in numbers} == {
        "byo-phone-number", "twilio", "vonage", "vapi", "telnyx",
    }  # fmt: skip

    result = run_cli("submit", str(tmp_path / "batch.csv"), "--wait", "--json", env=_env(redis_url))

    assert result.returncode == 0, result.stderr + worker.log_tail()
    summary = json.loads(result.stdout)
    assert summary["state"] == "completed"
    assert summary["counts"] == {
        "total": 300, "pending": 0, "succeeded": 300, "failed": 0, "skipped": 0, "cancelled": 0,
    }  # fmt: skip
    patches = simulator.requests("PATCH")
    assert len(patches) == 300
    assert {p["id"]: p["body"] for p in patches} == expected  # nothing the row did not set
    final = simulator.numbers()
    for number in numbers:
        want = {**number, **expected[number["id"]]}
        got = {k: v for k, v in final[number["id"]].items() if k != "updatedAt"}
        assert got == {k: v for k, v in want.items() if k != "updatedAt"}

    report = run_cli("report", summary["batch_id"], "--format", "json", env=_env(redis_url))
    assert report.returncode == 0, report.stderr
    items = json.loads(report.stdout)["items"]
    assert len(items) == 300
    assert {i["status"] for i in items} == {"succeeded"}
    assert {i["http_status"] for i in items} == {200}
    assert {i["attempts"] for i in items} == {1}
    sent_headers = [i["sent"]["server"]["headers"] for i in items if "server" in i["sent"]]
    assert sent_headers and all(h == {"X-Api-Key": "***"} for h in sent_headers)
    assert "secret-" not in report.stdout and "pw-" not in report.stdout
    _assert_key_nowhere_in_redis(redis_client)


def test_bad_rows_are_all_named_and_nothing_is_sent(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis, simulator: Simulator
) -> None:
    numbers = generate_numbers(10, seed=3)
    simulator.reset(numbers)
    ids = [n["id"] for n in numbers]
    rows = [
        ["id", "provider", "assistantID", "fallbackDestination", "server.timeoutSeconds",
         "smsEnabled"],
        [ids[0], "twilio", "", "", "", "true"],  # fine
        [ids[1], "vapi", "asst_1", "", "", ""],  # unknown field assistantID
        [ids[2], "vonage", "", '{"type": "phone", "number": "+1"}', "", ""],  # bad enum
        [ids[3], "telnyx", "", "", "soon", ""],  # wrong type
        [ids[0], "twilio", "", "", "", ""],  # duplicate id
        ["", "twilio", "", "", "", ""],  # missing id
        [ids[4], "vonage", "", "", "", "true"],  # another provider's field
        [ids[5], "twilio", "", '{"type": "number",', "", ""],  # broken JSON cell
    ]  # fmt: skip
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as stream:
        csv.writer(stream).writerows(rows)

    result = run_cli("submit", str(path), env=_env(redis_url))

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    for row, column, words in [
        (3, "assistantID", "did you mean 'assistantId'"),
        (4, "fallbackDestination", "'phone' is not one of: number, sip"),
        (5, "server.timeoutSeconds", "expected a number"),
        (6, "id", "listed twice: rows 2 and 6"),
        (7, "id", "missing"),
        (8, "smsEnabled", "field of twilio numbers, not of vonage"),
        (9, "fallbackDestination", "not valid JSON"),
    ]:
        assert any(
            line.strip().startswith(f"row {row}, column {column}:") and words in line
            for line in lines
        ), f"row {row} not reported as expected:\n{result.stderr}"
    assert "7 of 8 rows are invalid" in result.stderr
    assert simulator.requests() == []
    assert queue_length(redis_client, QUEUE) == 0
    assert RedisReportStore(redis_client, retention_seconds=60).list_batches() == []


def test_json_and_jsonl_batches_with_defaults_and_nested_fields(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    worker: WorkerProcess,
) -> None:
    numbers = generate_numbers(20, seed=8)
    simulator.reset(numbers)
    json_items = [{"id": n["id"], "provider": n["provider"], "hooks": HOOK} for n in numbers[:10]]
    (tmp_path / "batch.json").write_text(
        json.dumps(
            {
                "defaults": {"squadId": "squad_1", "server": {"timeoutSeconds": 15}},
                "items": json_items,
            }
        )
    )
    with (tmp_path / "batch.jsonl").open("w") as stream:
        for n in numbers[10:]:
            item = {
                "id": n["id"],
                "fallbackDestination": FALLBACK,
                "server.url": "https://x.example",
            }
            stream.write(json.dumps(item) + "\n\n")

    first = run_cli("submit", str(tmp_path / "batch.json"), "--wait", "--json", env=_env(redis_url))
    # JSONL rows carry no provider: --provider gives it, and the simulator refuses a
    # provider that is not the number's own, so use the numbers that match.
    second = run_cli(
        "submit", str(tmp_path / "batch.jsonl"), "--provider", "twilio", "--set", "name=Night line",
        "--wait", "--json", env=_env(redis_url),
    )  # fmt: skip

    assert first.returncode == 0, first.stderr + worker.log_tail()
    assert json.loads(first.stdout)["counts"]["succeeded"] == 10
    final = simulator.numbers()
    for n in numbers[:10]:
        assert final[n["id"]]["hooks"] == HOOK
        assert final[n["id"]]["squadId"] == "squad_1"
        assert final[n["id"]]["server"] == {"timeoutSeconds": 15}
    assert second.returncode == 1  # only the twilio numbers match their provider
    summary = json.loads(second.stdout)
    twilio = [n for n in numbers[10:] if n["provider"] == "twilio"]
    assert summary["counts"]["succeeded"] == len(twilio) == 2
    assert summary["counts"]["failed"] == 8
    for n in twilio:
        assert final[n["id"]]["name"] == "Night line"
        assert final[n["id"]]["fallbackDestination"] == FALLBACK
        assert final[n["id"]]["server"] == {"url": "https://x.example"}
    report = run_cli(
        "report", summary["batch_id"], "--format", "csv", "--only", "failed", env=_env(redis_url)
    )
    failed = list(csv.DictReader(report.stdout.splitlines()))
    assert len(failed) == 8
    assert all(r["http_status"] == "400" and "does not match" in r["error"] for r in failed)
    assert {int(r["row"]) for r in failed} == {
        2 * k + 1 for k, n in enumerate(numbers[10:]) if n["provider"] != "twilio"
    }  # JSONL rows are line numbers: every item is followed by a blank line


def test_unknown_number_fails_with_the_apis_message(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    worker: WorkerProcess,
) -> None:
    numbers = generate_numbers(3, seed=4)
    simulator.reset(numbers)
    path = tmp_path / "b.csv"
    path.write_text(
        "id,provider,assistantId\n"
        + "".join(f"{n['id']},{n['provider']},asst_x\n" for n in numbers)
        + "no-such-number,vapi,asst_x\n"
    )

    result = run_cli("submit", str(path), "--wait", env=_env(redis_url))

    assert result.returncode == 1, result.stderr
    assert "3 succeeded, 1 failed" in result.stdout
    assert "row 5 (no-such-number): Phone number no-such-number not found" in result.stdout
    status = run_cli("list", "--json", env=_env(redis_url))
    assert [b["counts"]["failed"] for b in json.loads(status.stdout)] == [1]
