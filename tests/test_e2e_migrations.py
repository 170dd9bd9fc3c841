"""Safe migrations end to end: dry runs, skipping numbers already right, rollback,
selector batches; real workers, the CLI, the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from simulator.state import generate_numbers
from tests.conftest import API_KEY, StartWorkers
from tests.helpers import Simulator, run_cli

pytestmark = pytest.mark.e2e


def _state(simulator: Simulator) -> dict[str, dict[str, Any]]:
    return {
        i: {k: v for k, v in n.items() if k != "updatedAt"} for i, n in simulator.numbers().items()
    }


def _write(path: Path, numbers: list[dict[str, Any]]) -> Path:
    path.write_text(
        "id,provider,assistantId,name\n"
        + "".join(f"{n['id']},{n['provider']},asst_new,Moved {n['name']}\n" for n in numbers)
    )
    return path


def _report(batch_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_cli("report", batch_id, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    items: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return items


def test_dry_run_then_run_then_again_then_rollback(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
) -> None:
    numbers = generate_numbers(100, seed=71)
    simulator.reset(numbers)
    original = _state(simulator)
    queue, _ = start_workers(count=2, concurrency=8)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    batch = _write(tmp_path / "move.csv", numbers)

    dry = run_cli("submit", str(batch), "--dry-run", "--wait", env=env)

    assert dry.returncode == 0, dry.stderr
    assert "Dry run: 100 numbers would change, 0 are already in the target state." in dry.stdout
    assert '    assistantId: "asst_initial" → "asst_new"' in dry.stdout
    assert simulator.requests("PATCH") == []
    assert _state(simulator) == original

    real = run_cli("submit", str(batch), "--wait", "--json", env=env)

    assert real.returncode == 0, real.stderr
    moved = json.loads(real.stdout)
    assert moved["counts"]["succeeded"] == 100
    assert all(n["assistantId"] == "asst_new" for n in simulator.numbers().values())
    items = _report(moved["batch_id"], env)
    assert all(i["before"]["assistantId"] == "asst_initial" for i in items)  # the snapshot
    patches_so_far = len(simulator.requests("PATCH"))

    again = run_cli("submit", str(batch), "--wait", "--json", env=env)

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["skipped"] == 100
    assert len(simulator.requests("PATCH")) == patches_so_far  # zero more
    reasons = {i["reason"] for i in _report(json.loads(again.stdout)["batch_id"], env)}
    assert reasons == {"already in the target state"}

    undo = run_cli("rollback", moved["batch_id"], "--wait", "--json", env=env)

    assert undo.returncode == 0, undo.stderr
    undone = json.loads(undo.stdout)
    assert undone["counts"]["succeeded"] == 100 and undone["rollback_of"] == moved["batch_id"]
    assert _state(simulator) == original  # every number exactly as it was


def test_rollback_leaves_numbers_changed_since_alone_unless_forced(
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
) -> None:
    numbers = generate_numbers(10, seed=72)
    simulator.reset(numbers)
    queue, _ = start_workers(count=1, concurrency=4)
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
    moved = json.loads(
        run_cli(
            "submit", str(_write(tmp_path / "m.csv", numbers)), "--wait", "--json", env=env
        ).stdout
    )
    touched = numbers[3]
    httpx.patch(
        f"{simulator.url}/phone-number/{touched['id']}",
        json={"provider": touched["provider"], "assistantId": "asst_someone_else"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).raise_for_status()

    undo = run_cli("rollback", moved["batch_id"], "--wait", "--json", env=env)

    summary = json.loads(undo.stdout)
    assert (summary["counts"]["succeeded"], summary["counts"]["skipped"]) == (9, 1)
    conflict = next(i for i in _report(summary["batch_id"], env) if i["status"] == "skipped")
    assert conflict["id"] == touched["id"] and conflict["reason"].startswith(
        "conflict: assistantId"
    )
    assert simulator.numbers()[str(touched["id"])]["assistantId"] == "asst_someone_else"

    forced = run_cli("rollback", moved["batch_id"], "--force", "--wait", "--json", env=env)

    assert json.loads(forced.stdout)["counts"]["succeeded"] >= 1
    assert simulator.numbers()[str(touched["id"])]["assistantId"] == "asst_initial"


def test_where_selects_exactly_the_numbers_on_an_assistant_across_pages(
    redis_url: str, redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    numbers = generate_numbers(250, seed=73)
    on_a = set()
    for i, number in enumerate(numbers):
        if i % 25 < 12:  # 120 of the 250
            number["assistantId"] = "asst_A"
            on_a.add(number["id"])
    simulator.reset(numbers)
    queue, _ = start_workers(count=2, concurrency=8, PHONEBATCH_LIST_PAGE_SIZE="100")
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}

    preview = run_cli(
        "submit", "--where", "assistantId=asst_A", "--set", "assistantId=asst_B",
        "--dry-run", "--wait", "--json", env=env,
    )  # fmt: skip
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["counts"]["total"] == 120
    assert simulator.requests("PATCH") == []

    result = run_cli(
        "submit", "--where", "assistantId=asst_A", "--set", "assistantId=asst_B",
        "--wait", "--json", env=env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["counts"]["succeeded"] == 120 and summary["counts"]["total"] == 120
    state = simulator.numbers()
    assert {i for i, n in state.items() if n["assistantId"] == "asst_B"} == on_a
    assert {n["id"] for n in state.values() if n["assistantId"] == "asst_initial"} == {
        n["id"] for n in numbers if n["id"] not in on_a
    }
    assert {r["id"] for r in simulator.requests("PATCH")} == on_a
    assert len(simulator.requests("LIST")) >= 6  # 3 pages for each of the two runs
    nothing = run_cli(
        "submit", "--where", "assistantId=asst_nobody", "--set", "name=x", "--wait", "--json",
        env=env,
    )  # fmt: skip
    assert nothing.returncode == 0 and json.loads(nothing.stdout)["counts"]["total"] == 0
