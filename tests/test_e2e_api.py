"""The HTTP API end to end: `phonebatch api` as a real server, real workers, the simulator."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from jobs.api.schemas import (
    Accepted,
    BatchDetail,
    BatchPage,
    BatchStatus,
    Problem,
    ReportPage,
)
from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.cli.services import free_port, start, stop, wait_until
from jobs.operations.producer import BatchOptions, submit_batch
from jobs.queue.priority import Priority, queue_key
from jobs.store.redis_store import RedisReportStore
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, run_cli, wait_for_batch

pytestmark = pytest.mark.e2e

TOKEN = "api-token-for-tests-7c2f"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _csv(numbers: list[dict[str, object]], assistant: str) -> str:
    return "id,provider,assistantId\n" + "".join(
        f"{n['id']},{n['provider']},{assistant}\n" for n in numbers
    )


def _start_api(redis_url: str, queue: str, tmp_path: Path, **env: str) -> tuple[str, object]:
    import sys

    port = free_port()
    full = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue, "PHONEBATCH_API_TOKEN": TOKEN, **env}
    process = start(
        [sys.executable, "-m", "jobs.cli", "api", "--port", str(port)], env=full,
        log=tmp_path / f"api-{port}.log",
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None

    wait_until(up, timeout=20, what="the API")
    assert process.poll() is None, (tmp_path / f"api-{port}.log").read_text()
    return url, process


@pytest.fixture
def api_stack(
    redis_url: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers,
    tmp_path: Path,
) -> Iterator[tuple[str, str, list[object]]]:  # fmt: skip
    queue, workers = start_workers(count=1, concurrency=8)
    url, process = _start_api(redis_url, queue, tmp_path)
    try:
        yield url, queue, workers  # type: ignore[misc]
    finally:
        stop(process)  # type: ignore[arg-type]


def test_posting_50_numbers_with_and_without_a_token(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, _, workers = api_stack
    numbers = generate_numbers(50, seed=51)
    simulator.reset(numbers)
    body = _csv(numbers, "asst_api")

    assert httpx.post(f"{url}/batches", content=body).status_code == 401
    wrong = httpx.post(f"{url}/batches", content=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert httpx.get(f"{url}/batches", headers={}).status_code == 401

    posted = httpx.post(f"{url}/batches", content=body, headers=AUTH | {"Content-Type": "text/csv"})

    assert posted.status_code == 202, posted.text
    batch_id = posted.json()["batch_id"]
    assert posted.headers["Location"] == f"/batches/{batch_id}"
    store = RedisReportStore(redis_client, retention_seconds=60)
    final = wait_for_batch(store, batch_id, workers)  # type: ignore[arg-type]
    assert final.counts.succeeded == 50 and final.source == "api"
    report = httpx.get(f"{url}/batches/{batch_id}/report", headers=AUTH).json()
    assert report["counts"]["succeeded"] == 50 and len(report["items"]) == 50
    paged = httpx.get(f"{url}/batches/{batch_id}/report?limit=20&offset=40", headers=AUTH).json()
    assert len(paged["items"]) == 10 and paged["next_offset"] is None
    first_page = httpx.get(f"{url}/batches/{batch_id}/report?limit=20", headers=AUTH).json()
    assert first_page["next_offset"] == 20
    csv_text = httpx.get(f"{url}/batches/{batch_id}/report?format=csv", headers=AUTH).text
    lines = csv_text.splitlines()
    assert len(lines) == 51 and lines[0].startswith("row,id,status")
    assert {r["status"] for r in csv.DictReader(io.StringIO(csv_text))} == {"succeeded"}
    listed = httpx.get(f"{url}/batches", headers=AUTH).json()["batches"]
    assert listed[0]["batch_id"] == batch_id
    one = httpx.get(f"{url}/batches/{batch_id}", headers=AUTH).json()
    assert one["state"] == "completed" and one["stalled"] is False


def test_the_same_idempotency_key_gives_the_same_batch_and_sends_once(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, _, workers = api_stack
    numbers = generate_numbers(20, seed=52)
    simulator.reset(numbers)
    items = [{"id": n["id"], "provider": n["provider"]} for n in numbers]
    payload = {"defaults": {"assistantId": "asst_once"}, "items": items}
    headers = AUTH | {"Idempotency-Key": "order-7781"}

    first = httpx.post(f"{url}/batches", json=payload, headers=headers)
    second = httpx.post(f"{url}/batches", json=payload, headers=headers)

    assert first.status_code == second.status_code == 202
    assert first.json()["batch_id"] == second.json()["batch_id"]
    store = RedisReportStore(redis_client, retention_seconds=60)
    wait_for_batch(store, first.json()["batch_id"], workers)  # type: ignore[arg-type]
    patches = simulator.requests("PATCH")
    assert len(patches) == 20 and len({p["id"] for p in patches}) == 20
    other = httpx.post(f"{url}/batches", json={"items": items[:1]}, headers=headers)
    assert other.status_code == 422 and "different batch" in other.json()["detail"]


def test_validation_errors_uploads_limits_cancel_and_retry(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, _, workers = api_stack
    numbers = generate_numbers(6, seed=53)
    simulator.reset(numbers[:4])
    bad = "id,provider,assistantID\nx,twilio,a\ny,vapi,b\n"
    refused = httpx.post(f"{url}/batches", content=bad, headers=AUTH | {"Content-Type": "text/csv"})
    assert refused.status_code == 422
    assert [(e["row"], e["column"]) for e in refused.json()["errors"]] == [
        (2, "assistantID"), (3, "assistantID"),
    ]  # fmt: skip
    unknown = httpx.post(
        f"{url}/batches", content="x", headers=AUTH | {"Content-Type": "text/plain"}
    )
    assert unknown.status_code == 415
    odd = httpx.post(
        f"{url}/batches", files={"file": ("numbers.txt", b"id\n", "text/plain")}, headers=AUTH
    )
    assert odd.status_code == 415 and "--format" in odd.json()["detail"]

    upload = httpx.post(
        f"{url}/batches?name=nightly",
        files={"file": ("numbers.csv", _csv(numbers, "asst_up").encode(), "text/csv")},
        headers=AUTH,
    )
    assert upload.status_code == 202, upload.text
    store = RedisReportStore(redis_client, retention_seconds=60)
    batch_id = upload.json()["batch_id"]
    final = wait_for_batch(store, batch_id, workers)  # type: ignore[arg-type]
    assert (final.name, final.counts.succeeded, final.counts.failed) == ("nightly", 4, 2)
    simulator.reset(numbers)
    retried = httpx.post(f"{url}/batches/{batch_id}/retry", headers=AUTH)
    assert retried.status_code == 202 and retried.json()["items"] == 2
    child = wait_for_batch(store, retried.json()["batch_id"], workers)  # type: ignore[arg-type]
    assert child.counts.succeeded == 2 and child.parent_id == batch_id
    done = httpx.post(f"{url}/batches/{batch_id}/cancel", headers=AUTH)
    assert done.status_code == 409 and done.json()["state"] == "completed"
    assert httpx.get(f"{url}/batches/nope", headers=AUTH).status_code == 404


def test_upload_limit_and_start_without_a_token(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    url, process = _start_api(redis_url, "q-limit", tmp_path, PHONEBATCH_API_MAX_UPLOAD_BYTES="100")
    try:
        big = "id,provider\n" + "x,vapi\n" * 50
        answer = httpx.post(
            f"{url}/batches", content=big, headers=AUTH | {"Content-Type": "text/csv"}
        )
        assert answer.status_code == 413 and "larger than 100 bytes" in answer.json()["detail"]
        # No Content-Length to trust: the body is counted as it arrives.
        chunked = httpx.post(
            f"{url}/batches",
            content=iter(
                [b"--x\r\nContent-Disposition: form-data; name=file; filename=a.csv\r\n\r\n"]
                + [b"id,provider\n" * 20] * 5
            ),
            headers=AUTH | {"Content-Type": "multipart/form-data; boundary=x"},
        )  # fmt: skip
        assert chunked.status_code == 413
        docs = httpx.get(f"{url}/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
    finally:
        stop(process)  # type: ignore[arg-type]
    refused = run_cli("api", "--port", str(free_port()), env={"REDIS_URL": redis_url})
    assert refused.returncode == 2 and "PHONEBATCH_API_TOKEN is not set" in refused.stderr
    everywhere = "0.0.0.0"  # noqa: S104 - the API must refuse it, so it is never bound
    public = run_cli(
        "api", "--host", everywhere, "--open-on-localhost", env={"REDIS_URL": redis_url}
    )
    assert public.returncode == 2 and "only binds" in public.stderr


def test_select_dry_run_and_rollback_through_the_api(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, _, workers = api_stack
    numbers = generate_numbers(30, seed=54)
    for n in numbers[:12]:
        n["assistantId"] = "asst_old"
    simulator.reset(numbers)
    store = RedisReportStore(redis_client, retention_seconds=60)
    selection = {"where": {"assistantId": "asst_old"}, "set": {"assistantId": "asst_new"}}

    preview = httpx.post(f"{url}/batches/select", json=selection | {"dry_run": True}, headers=AUTH)
    assert preview.status_code == 202, preview.text
    dry = wait_for_batch(store, preview.json()["batch_id"], workers)  # type: ignore[arg-type]
    assert (dry.counts.total, dry.counts.skipped) == (12, 12)
    assert simulator.requests("PATCH") == []

    moved = httpx.post(f"{url}/batches/select", json=selection, headers=AUTH)
    done = wait_for_batch(store, moved.json()["batch_id"], workers)  # type: ignore[arg-type]
    assert done.counts.succeeded == 12
    assert sum(n["assistantId"] == "asst_new" for n in simulator.numbers().values()) == 12

    undo = httpx.post(f"{url}/batches/{done.batch_id}/rollback", headers=AUTH)
    assert undo.status_code == 202 and undo.json()["items"] == 12
    wait_for_batch(store, undo.json()["batch_id"], workers)  # type: ignore[arg-type]
    assert sum(n["assistantId"] == "asst_old" for n in simulator.numbers().values()) == 12
    bad = httpx.post(f"{url}/batches/select", json={"where": {}, "set": {}}, headers=AUTH)
    assert bad.status_code == 422


def _aside(client: redis.Redis, numbers: list[dict[str, object]]) -> tuple[RedisReportStore, str]:
    """A batch (sent without reading first) whose tasks wait on a queue no worker reads."""
    intake = read_batch(io.StringIO(_csv(numbers, "asst_held")), Format.CSV)
    store = RedisReportStore(client, retention_seconds=60)
    batch_id = submit_batch(
        intake.items, store=store, broker=client, queue="q-aside", name="held", source="api",
        options=BatchOptions(read_first=False),
    )  # fmt: skip
    return store, batch_id


def test_pause_and_continue_through_the_api(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, queue, workers = api_stack
    numbers = generate_numbers(20, seed=55)
    simulator.reset(numbers)
    # Its tasks go to a queue no worker reads, until the test moves them: the batch is
    # certainly paused before a worker sees any of them.
    store, batch_id = _aside(redis_client, numbers)

    assert httpx.post(f"{url}/batches/{batch_id}/pause").status_code == 401
    paused = httpx.post(f"{url}/batches/{batch_id}/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert paused.json()["paused_at"] is not None
    again = httpx.post(f"{url}/batches/{batch_id}/pause", headers=AUTH)
    assert again.status_code == 200 and again.json()["state"] == "paused"
    shown = httpx.get(f"{url}/batches/{batch_id}", headers=AUTH).json()
    assert shown["state"] == "paused" and shown["stalled"] is False
    normal = Priority.NORMAL.level  # the batch's tasks wait on normal's key
    while redis_client.lmove(
        queue_key("q-aside", normal), queue_key(queue, normal), "RIGHT", "LEFT"
    ):
        pass  # now the workers take them, and park them
    deadline = time.monotonic() + 20
    while len(store.parked(batch_id)) < 20:
        assert time.monotonic() < deadline, f"parked: {len(store.parked(batch_id))}"
        time.sleep(0.05)
    assert simulator.requests() == []

    went_on = httpx.post(f"{url}/batches/{batch_id}/continue", headers=AUTH)

    assert went_on.status_code == 200, went_on.text
    assert went_on.json()["state"] == "queued"  # nothing had started
    assert went_on.json()["paused_at"] is None
    final = wait_for_batch(store, batch_id, workers)  # type: ignore[arg-type]
    assert final.counts.succeeded == 20
    assert len(simulator.requests("PATCH")) == 20
    ended = httpx.post(f"{url}/batches/{batch_id}/continue", headers=AUTH)
    assert ended.status_code == 409 and ended.json()["state"] == "completed"
    late = httpx.post(f"{url}/batches/{batch_id}/pause", headers=AUTH)
    assert late.status_code == 409 and late.json()["state"] == "completed"
    for action in ("pause", "continue"):
        assert httpx.post(f"{url}/batches/nope/{action}", headers=AUTH).status_code == 404

    _, other = _aside(redis_client, numbers[:2])
    running = httpx.post(f"{url}/batches/{other}/continue", headers=AUTH)
    assert running.status_code == 409 and running.json()["state"] == "queued"  # not paused
    httpx.post(f"{url}/batches/{other}/pause", headers=AUTH)
    cancelled = httpx.post(f"{url}/batches/{other}/cancel", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json()["counts"]["cancelled"] == 2
    assert httpx.post(f"{url}/batches/{other}/pause", headers=AUTH).status_code == 409
    assert httpx.post(f"{url}/batches/{other}/continue", headers=AUTH).status_code == 409


def test_the_api_report_is_the_cli_report_key_for_key(
    api_stack: tuple[str, str, list[object]],
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
) -> None:
    """One report shape: a script that reads `phonebatch report --format json` reads
    `GET /batches/{id}/report` too; the API adds only its paging fields."""
    url, _, workers = api_stack
    numbers = generate_numbers(30, seed=53)
    simulator.reset(numbers)
    simulator.set_faults(always_404=[numbers[3]["id"]])
    headers = AUTH | {"Content-Type": "text/csv"}
    posted = httpx.post(f"{url}/batches", content=_csv(numbers, "asst_same"), headers=headers)
    batch_id = posted.json()["batch_id"]
    store = RedisReportStore(redis_client, retention_seconds=60)
    final = wait_for_batch(store, batch_id, workers)  # type: ignore[arg-type]
    assert final.counts.failed == 1 and final.counts.succeeded == 29

    cli = run_cli("report", batch_id, "--format", "json", env={"REDIS_URL": redis_url})
    api = httpx.get(f"{url}/batches/{batch_id}/report?limit=5000", headers=AUTH).json()

    assert cli.returncode == 0, cli.stderr
    from_cli = json.loads(cli.stdout)
    paging = {"offset": 0, "limit": 5000, "next_offset": None}
    assert {k: api[k] for k in paging} == paging
    assert {k: v for k, v in api.items() if k not in paging} == from_cli
    assert set(from_cli) >= {"batch_id", "state", "counts", "items"}
    ReportPage.model_validate(api)  # the answer is what the OpenAPI document says


def test_the_openapi_document_describes_every_route_and_what_it_answers(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, _, workers = api_stack
    document = httpx.get(f"{url}/openapi.json", headers=AUTH).json()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            answers = operation["responses"]
            ok = [code for code in answers if code.startswith("2")]
            assert ok, where
            assert any(answers[c].get("content") for c in ok) or path == "/metrics", where
            if path != "/healthz":
                assert "401" in answers, where
            if "{batch_id}" in path:
                assert "404" in answers, where
    batches = document["paths"]["/batches"]["post"]
    assert {"413", "415", "422"} <= set(batches["responses"])
    assert {"application/json", "text/csv", "multipart/form-data"} <= set(
        batches["requestBody"]["content"]
    )

    # Real answers are what the document says.
    numbers = generate_numbers(5, seed=57)
    simulator.reset(numbers)
    headers = AUTH | {"Content-Type": "text/csv"}
    posted = httpx.post(f"{url}/batches", content=_csv(numbers, "asst_doc"), headers=headers)
    Accepted.model_validate(posted.json())
    batch_id = posted.json()["batch_id"]
    store = RedisReportStore(redis_client, retention_seconds=60)
    wait_for_batch(store, batch_id, workers)  # type: ignore[arg-type]
    BatchPage.model_validate(httpx.get(f"{url}/batches", headers=AUTH).json())
    BatchDetail.model_validate(httpx.get(f"{url}/batches/{batch_id}", headers=AUTH).json())
    ended = httpx.post(f"{url}/batches/{batch_id}/cancel", headers=AUTH)
    assert ended.status_code == 409  # it had finished
    BatchStatus.model_validate(ended.json())
    missing = httpx.get(f"{url}/batches/nope", headers=AUTH)
    assert missing.status_code == 404
    Problem.model_validate(missing.json())


def test_auth_comes_before_the_body_and_bodies_are_bounded(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis
) -> None:
    url, _, _ = api_stack
    select = f"{url}/batches/select"
    json_type = {"Content-Type": "application/json"}
    # Malformed JSON without a token: 401, not a parse error.
    assert httpx.post(select, content=b"{not json", headers=json_type).status_code == 401
    # A large body without a token: refused before it is read.
    big = b"[" + b"1," * 2_000_000 + b"1]"
    refused = httpx.post(select, content=big, headers=json_type, timeout=30)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    # With the token: a selection is small; past 64 KiB it is refused unparsed.
    assert httpx.post(select, content=big, headers=AUTH | json_type).status_code == 413
    # Text that cannot be sent is a 422 naming the field, and queues nothing.
    bad = {"where": {"assistantId": "a"}, "set": {"name": "x\ud800"}}
    body = json.dumps(bad).encode()  # the JSON escape of a lone surrogate, as a client sends it
    answer = httpx.post(select, content=body, headers=AUTH | json_type)
    assert answer.status_code == 422 and "set.name" in answer.json()["detail"]
    assert redis_client.zcard("phonebatch:batches") == 0
    # The health check answers without a token and says only up or down.
    assert httpx.get(f"{url}/healthz").json() == {"ok": True, "redis": "ok"}


def test_out_of_range_input_is_a_4xx_never_a_500(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis
) -> None:
    url, _, _ = api_stack
    huge = httpx.get(f"{url}/batches?offset=9223372036854775807", headers=AUTH)
    assert huge.status_code == 422
    json_type = AUTH | {"Content-Type": "application/json"}
    for value in (2**64, "[" * 40 + "]" * 40):
        body = json.dumps({"where": {"assistantId": "a"}, "set": {"name": value}})
        # The nested text goes in as JSON text (a JSON body cannot hold raw nesting here).
        raw = body.replace('"' + "[" * 40 + "]" * 40 + '"', "[" * 40 + "]" * 40)
        answer = httpx.post(f"{url}/batches/select", content=raw, headers=json_type)
        assert answer.status_code == 422, answer.text
    typo = {"where": {"assistantId": "a"}, "set": {"assistantID": "b"}}
    refused = httpx.post(f"{url}/batches/select", json=typo, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["column"] == "--set assistantID"
    rows = '[{"id": "n1", "provider": "vapi", "name": ' + "9" * 5000 + "}]"
    posted = httpx.post(f"{url}/batches", content=rows, headers=json_type)
    assert posted.status_code == 422 and "out of range" in posted.json()["detail"]
    assert redis_client.zcard("phonebatch:batches") == 0


def test_guardrails_through_the_api(
    api_stack: tuple[str, str, list[object]], redis_client: redis.Redis, simulator: Simulator
) -> None:
    url, _queue, workers = api_stack
    numbers = generate_numbers(30, seed=57)
    simulator.reset(numbers)
    body = _csv(numbers, "asst_api_canary")
    csv_type = AUTH | {"Content-Type": "text/csv"}

    posted = httpx.post(f"{url}/batches?canary=3&priority=high", content=body, headers=csv_type)
    assert posted.status_code == 202, posted.text
    batch_id = posted.json()["batch_id"]
    store = RedisReportStore(redis_client, retention_seconds=60)
    deadline = time.monotonic() + 20
    while (status := store.status(batch_id)) is None or status.counts.succeeded < 3:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    shown = httpx.get(f"{url}/batches/{batch_id}", headers=AUTH).json()
    BatchDetail.model_validate(shown)
    assert shown["state"] == "paused" and shown["paused_by"] == "canary" and shown["canary"] == 3
    assert shown["priority"] == "high" and shown["guard"] == {"threshold": 0.2, "window": 50}

    # Its 27 unsent numbers are held: an overlapping batch is refused, naming them.
    overlapping = httpx.post(f"{url}/batches", content=body, headers=csv_type)
    assert overlapping.status_code == 409, overlapping.text
    held = overlapping.json()["held"]
    assert len(held) == 27 and {h["batch_id"] for h in held} == {batch_id}
    wrong = httpx.post(f"{url}/batches?priority=urgent", content=body, headers=csv_type)
    assert wrong.status_code == 422

    went_on = httpx.post(f"{url}/batches/{batch_id}/continue?no_guard=true", headers=AUTH)
    assert went_on.status_code == 200 and went_on.json()["guard"] is None
    final = wait_for_batch(store, batch_id, workers)  # type: ignore[arg-type]
    assert final.counts.succeeded == 30 and len(simulator.requests("PATCH")) == 30
    again = httpx.post(f"{url}/batches?allow_overlap=true", content=body, headers=csv_type)
    assert again.status_code == 202
