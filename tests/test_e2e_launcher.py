"""`phonebatch worker --processes N`: N real Celery worker processes under one command,
sharing the work, one that dies started again, all stopped by one SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
import redis

from jobs.cli.services import ServiceError, free_port, wait_until
from simulator.state import generate_numbers
from tests.conftest import StartWorkers
from tests.helpers import Simulator, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(child) for child in listed.split()}


def _items_done(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    lines = [line for line in text.splitlines() if line.startswith("phonebatch_items_total{")]
    return sum(float(line.split()[-1]) for line in lines)


def _bindable(port: int) -> bool:
    """Nothing listens on the port (a Redis or another server would not answer HTTP, but
    would take the port a worker process needs for its metrics)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_one_command_runs_processes_that_share_the_work_and_come_back(
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    tmp_path: Path,
) -> None:
    numbers = generate_numbers(60, seed=91)
    simulator.reset(numbers)
    simulator.set_faults(latency_ms=30)  # long enough that both processes get work
    port = free_port()
    while not (_bindable(port) and _bindable(port + 1)):
        port = free_port()
    queue, (launcher,) = start_workers(
        processes=2, concurrency=4, PHONEBATCH_METRICS_PORT=str(port)
    )
    try:
        wait_until(lambda: _answers(port) and _answers(port + 1), timeout=60, what="both")
    except ServiceError as exc:
        raise AssertionError(f"{exc}\n{launcher.log_tail()}") from None
    first = _children(launcher.process.pid)
    assert len(first) == 2, launcher.log_tail()

    rows = [f"{n['id']},{n['provider']},asst_l" for n in numbers]
    store, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows)
    status = wait_for_batch(store, batch_id, [launcher])
    assert status.counts.succeeded == 60
    shares = [_items_done(port), _items_done(port + 1)]
    assert sum(shares) == 60 and all(share > 0 for share in shares), shares

    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: len(_children(launcher.process.pid) - first) == 1,
        timeout=30,
        what="a new worker process in place of the killed one",
    )
    wait_until(lambda: _answers(port) and _answers(port + 1), timeout=60, what="both again")
    again = generate_numbers(10, seed=92)
    simulator.reset(again)
    rows = [f"{n['id']},{n['provider']},asst_m" for n in again]
    store, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows)
    assert wait_for_batch(store, batch_id, [launcher]).counts.succeeded == 10

    everyone = _children(launcher.process.pid)
    launcher.process.send_signal(signal.SIGTERM)
    assert launcher.process.wait(timeout=30) == 0, launcher.log_tail()
    time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in everyone)
    assert "exited with code -9; starting it again" in launcher.log.read_text()
