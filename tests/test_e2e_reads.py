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

from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, run_cli

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
