"""Workers on kombu's own Redis transport: when the installed kombu lacks a hook that
`worker.broker` overrides, or when PHONEBATCH_BROKER_TRANSPORT=kombu says so, a batch
still runs to the end, every item counted once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from jobs.cli.services import wait_until
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e

# Runs first in every Python process that has this directory on its path: the workers
# start as with a kombu that lacks one of the names our transport overrides. (Deleting
# one of kombu 5.7's own would break kombu itself, which calls them; `make compat` runs
# the real thing, kombu 5.6, where two of them do not exist yet.)
SITECUSTOMIZE = """
import worker.broker

worker.broker.CHANNEL_HOOKS += ("_a_hook_this_kombu_lacks",)
"""
WARNING = "kombu.transport.redis.Channel._a_hook_this_kombu_lacks"


def _rows(count: int, seed: int, simulator: Simulator) -> list[str]:
    numbers = generate_numbers(count, seed=seed)
    simulator.reset(numbers)
    return [f"{n['id']},{n['provider']},asst_fallback" for n in numbers]


@pytest.mark.parametrize("how", ["hook missing", "asked for"])
def test_a_batch_runs_to_the_end_on_kombus_own_transport(
    how: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    tmp_path: Path,
) -> None:
    env: dict[str, str] = {}
    if how == "hook missing":
        site = tmp_path / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(site), os.environ.get("PYTHONPATH")) if p
        )
    else:
        env["PHONEBATCH_BROKER_TRANSPORT"] = "kombu"
    rows = _rows(60, 71, simulator)
    queue, workers = start_workers(count=1, concurrency=8, processes=2, **env)

    store, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows)
    final = wait_for_batch(store, batch_id, workers, timeout=90)

    assert final.counts.succeeded == 60 and final.counts.total == 60, final
    patched = [r["id"] for r in simulator.requests("PATCH")]
    assert len(patched) == 60 and len(set(patched)) == 60  # each number once
    assert all(n["assistantId"] == "asst_fallback" for n in simulator.numbers().values())
    log = workers[0].log.read_text(errors="replace")
    if how == "hook missing":
        # Each worker process says it once, in one line.
        assert log.count(WARNING) == 2, log[-3000:]
    else:
        assert WARNING not in log
    # kombu acks each message after its task returned, so just after the batch's last
    # outcome some acks may still be on their way: every one arrives.
    wait_until(lambda: redis_client.hlen("unacked") == 0, timeout=15, what="every ack")


def test_the_installed_kombu_runs_a_batch_on_the_transport_it_can(
    redis_client: redis.Redis, simulator: Simulator, start_workers: StartWorkers
) -> None:
    """With the kombu this venv has: ours when it has every hook (the suite's pinned
    kombu), kombu's own with one warning when not (`make compat` runs this with kombu 5.6)."""
    from worker.broker import missing_hooks

    rows = _rows(40, 73, simulator)
    queue, workers = start_workers(count=1, concurrency=8)

    store, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows)
    final = wait_for_batch(store, batch_id, workers, timeout=90)

    assert final.counts.succeeded == 40, final
    assert len(simulator.requests("PATCH")) == 40
    said = workers[0].log.read_text(errors="replace").count("use kombu's own Redis transport")
    assert said == (1 if missing_hooks() else 0)
