"""Reads in bulk, end to end: a batch reads its numbers through the listing, a page at a
time, and each task PATCHes from its number's read; real workers, the CLI, the simulator
counting every request."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.operations.recovery import is_stalled
from jobs.queue.priority import Priority, queue_key
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, run_cli, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e


def _write(path: Path, numbers: list[dict[str, Any]], assistant: str = "asst_new") -> Path:
    path.write_text(
        "id,provider,assistantId\n"
        + "".join(f"{n['id']},{n['provider']},{assistant}\n" for n in numbers)
    )
    return path


def _submit(env: dict[str, str], *args: str, exit_code: int = 0) -> dict[str, Any]:
    result = run_cli("submit", *args, "--wait", "--json", env=env)
    assert result.returncode == exit_code, result.stderr
    batch: dict[str, Any] = json.loads(result.stdout)
    report = run_cli("report", batch["batch_id"], "--format", "json", env=env)
    assert report.returncode == 0, report.stderr
    batch["items"] = json.loads(report.stdout)["items"]
    return batch


def test_a_batch_covering_the_account_reads_it_in_one_page(
    tmp_path: Path, redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(300, seed=81)
    simulator.reset(numbers)
    queue, _ = start_workers(count=1, concurrency=8)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, str(_write(tmp_path / "all.csv", numbers)))

    assert batch["counts"]["succeeded"] == 300
    methods = Counter(r["method"] for r in simulator.requests())
    assert methods == {"LIST": 1, "PATCH": 300}  # 1.003 requests per number
    assert {i["read_by"] for i in batch["items"]} == {"listing"}
    assert all(i["before"]["assistantId"] == "asst_initial" for i in batch["items"])
    assert all(i["read_at"] for i in batch["items"])


def test_a_dry_run_of_the_whole_account_costs_one_request(
    tmp_path: Path, redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(1000, seed=82)
    simulator.reset(numbers)
    queue, _ = start_workers(count=1, concurrency=8)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, str(_write(tmp_path / "all.csv", numbers)), "--dry-run")

    assert batch["counts"]["skipped"] == 1000
    assert len(simulator.requests()) <= 3  # the target: at most 3 requests in all
    assert all(i["changes"] for i in batch["items"])


def test_numbers_the_listing_did_not_show_are_read_by_get(
    tmp_path: Path, redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(40, seed=83)
    simulator.reset(numbers)
    ghost = {**numbers[0], "id": "00000000-0000-4000-8000-000000000404"}  # not in the account
    queue, _ = start_workers(count=1, concurrency=4)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, str(_write(tmp_path / "some.csv", [*numbers[:20], ghost])), exit_code=1)

    by_id = {i["id"]: i for i in batch["items"]}
    assert by_id[ghost["id"]]["status"] == "failed"
    assert by_id[ghost["id"]]["http_status"] == 404  # its GET: the API's own answer
    gets = [r["id"] for r in simulator.requests("GET")]
    assert gets == [ghost["id"]]
    assert {by_id[n["id"]]["read_by"] for n in numbers[:20]} == {"listing"}


def test_a_single_number_is_read_by_get(
    tmp_path: Path, redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(10, seed=84)
    simulator.reset(numbers)
    queue, _ = start_workers(count=1, concurrency=2)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, str(_write(tmp_path / "one.csv", numbers[:1])))

    assert batch["counts"]["succeeded"] == 1
    assert Counter(r["method"] for r in simulator.requests()) == {"GET": 1, "PATCH": 1}


def test_a_read_older_than_the_max_age_is_read_again(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
) -> None:
    numbers = generate_numbers(20, seed=85)
    simulator.reset(numbers)
    # Every read is too old by the time its task runs: each number is read again by GET.
    queue, _ = start_workers(count=1, concurrency=4, PHONEBATCH_READ_MAX_AGE="0.000001")
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, str(_write(tmp_path / "old.csv", numbers)))

    assert batch["counts"]["succeeded"] == 20
    methods = Counter(r["method"] for r in simulator.requests())
    assert methods == {"LIST": 1, "GET": 20, "PATCH": 20}
    assert {i["read_by"] for i in batch["items"]} == {"get"}


def test_a_selector_batch_sends_from_its_own_listing(
    redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(50, seed=86)
    simulator.reset(numbers)
    queue, _ = start_workers(count=1, concurrency=4)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, "--where", "provider=twilio", "--set", "assistantId=asst_sel")

    twilio = [n for n in numbers if n["provider"] == "twilio"]
    assert batch["counts"]["succeeded"] == len(twilio) == 10
    methods = Counter(r["method"] for r in simulator.requests())
    assert methods == {"LIST": 1, "PATCH": 10}


def test_a_lost_listing_task_is_stalled_and_resume_lists_again(
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
) -> None:
    numbers = generate_numbers(30, seed=87)
    simulator.reset(numbers)
    queue = "q-lost-reader"
    rows = [f"{n['id']},{n['provider']},asst_r" for n in numbers]
    store, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows)
    # The listing task (at normal's key), lost with Redis's data.
    assert redis_client.rpop(queue_key(queue, Priority.NORMAL.level)) is not None
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    status = store.status(batch_id)
    assert status is not None
    assert is_stalled(redis_client, queue, status, stale_after=-1)  # nothing can move it

    resumed = run_cli("resume", batch_id, env=env)

    assert resumed.returncode == 0, resumed.stderr
    _, workers = start_workers(count=1, concurrency=4, queue=queue)
    final = wait_for_batch(store, batch_id, workers)
    assert final.counts.succeeded == 30
    methods = Counter(r["method"] for r in simulator.requests())
    assert methods == {"LIST": 1, "PATCH": 30}  # listed again; no item twice, no GET


def test_a_rollback_read_through_the_listing_finds_no_false_conflict(
    tmp_path: Path, redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    # The batch sets squadId, which the numbers did not have: a rollback cannot put "no
    # squad" back, but it expects squadId as the batch left it. Its listing read must
    # hold squadId too, or every number would look changed since.
    numbers = generate_numbers(12, seed=88)
    simulator.reset(numbers)
    queue, _ = start_workers(count=1, concurrency=4)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    path = tmp_path / "squad.csv"
    path.write_text(
        "id,provider,assistantId,squadId\n"
        + "".join(f"{n['id']},{n['provider']},asst_new,squad_1\n" for n in numbers)
    )
    moved = _submit(env, str(path))
    assert moved["counts"]["succeeded"] == 12

    rolled = run_cli("rollback", moved["batch_id"], "--wait", "--json", env=env)

    assert rolled.returncode == 0, rolled.stderr
    back = json.loads(rolled.stdout)
    assert back["counts"]["succeeded"] == 12, back
    assert all(n["assistantId"] == "asst_initial" for n in simulator.numbers().values())
    assert Counter(r["method"] for r in simulator.requests()) == {"LIST": 2, "PATCH": 24}


def test_pages_are_read_just_ahead_of_the_sends(
    tmp_path: Path, redis_url: str, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(60, seed=89)
    simulator.reset(numbers)
    queue, _ = start_workers(
        count=1, concurrency=4, PHONEBATCH_LIST_PAGE_SIZE="10", PHONEBATCH_RATE_LIMIT="10"
    )
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    batch = _submit(env, str(_write(tmp_path / "paged.csv", numbers)))

    assert batch["counts"]["succeeded"] == 60
    log = simulator.requests()
    methods = [r["method"] for r in log]
    assert methods.count("PATCH") == 60 and "GET" not in methods
    # Pages of 10 that each repeat the last one's oldest number (the createdAt paging).
    assert 6 <= methods.count("LIST") <= 8
    lists = [n for n, m in enumerate(methods) if m == "LIST"]
    # Not all at the start: a next page waits until most of the ones before are sent.
    for page, at in enumerate(lists[1:], start=1):
        assert methods[:at].count("PATCH") >= 6 * page, (page, methods[:at].count("PATCH"))
    assert {i["read_by"] for i in batch["items"]} == {"listing"}
