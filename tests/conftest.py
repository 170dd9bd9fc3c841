"""Shared fixtures: a private redis-server, the simulator and a Celery worker, all real.

Redis missing: tests that need it are skipped locally and fail in CI (CI=true).
Every process a fixture starts is stopped when its scope ends, pass or fail.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from jobs.cli.services import (
    on_free_port,
    redis_answers,
    start_redis_server,
    start_worker,
    stop,
)
from jobs.store.interface import ReportStore
from jobs.store.memory_store import MemoryReportStore
from jobs.store.redis_store import RedisReportStore
from tests.helpers import Simulator, WorkerProcess

IN_CI = os.environ.get("CI") == "true"
API_KEY = "test-key-4f1c9a7e2b"
QUEUE = "phonebatch-test"
_OUR_ENV = ("VAPI_API_KEY", "VAPI_BASE_URL", "REDIS_URL")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name in _OUR_ENV or name.startswith("PHONEBATCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server"):
        directory = tmp_path_factory.mktemp("redis")
        port, process = on_free_port(lambda port: start_redis_server(port, directory))
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process)
        return
    url = _database_of_this_process(
        os.environ.get("PHONEBATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    if redis_answers(url):
        yield url
        return
    message = f"no redis-server binary and no Redis answering at {url}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _database_of_this_process(url: str) -> str:
    """Under `pytest -n N` each test process takes the database N below the last one's
    (gw0 the one given, gw1 the one before...): tests flush theirs at will."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw")) if worker.startswith("gw") else 0
    if index == 0:
        return url
    base, _, database = url.rpartition("/")
    number = int(database) - index if database.isdigit() else -1
    if not base.startswith("redis") or number < 0:
        pytest.fail(f"no database of its own for {worker} below {url}: run fewer processes")
    return f"{base}/{number}"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def simulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    from jobs.cli.services import start_simulator

    log = tmp_path_factory.mktemp("sim") / "simulator.log"
    port, process = on_free_port(
        lambda port: start_simulator(port, numbers=0, seed=1, api_key=API_KEY, log=log)
    )
    try:
        yield Simulator(f"http://127.0.0.1:{port}", log)
    finally:
        stop(process)


@pytest.fixture
def simulator(simulator_server: Simulator) -> Simulator:
    simulator_server.reset([])
    return simulator_server


def worker_env(redis_url: str, simulator: Simulator, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "VAPI_BASE_URL": simulator.url,
        "VAPI_API_KEY": API_KEY,
        "PHONEBATCH_QUEUE": QUEUE,
        "PHONEBATCH_RATE_LIMIT": "0",  # tests that pace say so
        **extra,
    }


StartWorkers = Callable[..., tuple[str, list[WorkerProcess]]]


@pytest.fixture
def start_workers(redis_url: str, simulator: Simulator, tmp_path: Path) -> Iterator[StartWorkers]:
    """Start workers of this test's own (on a queue of their own), stopped at its end."""
    started: list[WorkerProcess] = []

    def start(
        count: int = 1,
        concurrency: int = 8,
        queue: str | None = None,
        processes: int = 1,
        **env: str,
    ) -> tuple[str, list[WorkerProcess]]:
        queue = queue or f"phonebatch-test-{uuid.uuid4().hex[:8]}"
        full_env = worker_env(redis_url, simulator, PHONEBATCH_QUEUE=queue, **env)
        group = []
        for n in range(count):
            log = tmp_path / f"worker-{len(started)}-{n}.log"
            process = start_worker(
                env=full_env, concurrency=concurrency, log=log, processes=processes
            )
            group.append(WorkerProcess(process, log))
        started.extend(group)
        return queue, group

    try:
        yield start
    finally:
        for worker_process in started:
            stop(worker_process.process)


@pytest.fixture(scope="session")
def worker(
    redis_url: str, simulator_server: Simulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    env = worker_env(redis_url, simulator_server)
    process = start_worker(env=env, concurrency=8, log=log)
    try:
        yield WorkerProcess(process, Path(log))
    finally:
        stop(process)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[ReportStore]:
    """Each report store backend in turn: what holds for one must hold for the other."""
    if request.param == "memory":
        yield MemoryReportStore()
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    yield RedisReportStore(client, retention_seconds=3600)
