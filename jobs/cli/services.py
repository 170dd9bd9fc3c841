"""Start and stop the local processes phonebatch runs with: a private redis-server, the
simulator and workers. Used by `phonebatch demo` and by the end-to-end tests.

Every process starts in its own process group so that stopping it stops its children
too (a Celery worker's pool, for one).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx
import redis

from jobs.store.connection import connect


class ServiceError(RuntimeError):
    """Raised when a local process cannot start or does not come up in time."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(url: str, timeout: float = 1.0, *, sentinel_master: str | None = None) -> bool:
    """Whether the Redis at `url` answers a PING (through the sentinels, for sentinel://)."""
    client = connect(
        url, sentinel_master=sentinel_master, socket_connect_timeout=timeout,
        socket_timeout=timeout,
    )  # fmt: skip
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not come up within {timeout:.0f} s")


def start(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    with open(log or os.devnull, "ab") as out:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def start_redis_server(
    port: int, directory: Path, *, appendonly: bool = False
) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceError(
            "no Redis answers and redis-server is not installed: "
            "run `docker compose up -d redis` or install the redis-server package"
        )
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "yes" if appendonly else "no",
    ]  # fmt: skip
    process = start(argv, log=directory / "redis.log")
    wait_until(
        lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), timeout=10, what="redis-server"
    )
    return process


def start_simulator(
    port: int, *, numbers: int, seed: int, api_key: str, latency_ms: float = 0.0,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    argv = [
        sys.executable, "-m", "jobs.cli", "simulator", "--port", str(port),
        "--numbers", str(numbers), "--seed", str(seed), "--api-key", api_key,
        "--latency-ms", str(latency_ms),
    ]  # fmt: skip
    process = start(argv, log=log)
    url = f"http://127.0.0.1:{port}/_sim/health"
    wait_until(
        lambda: _http_ok(url) or process.poll() is not None, timeout=20, what="the simulator"
    )
    if process.poll() is not None:
        raise ServiceError(f"the simulator exited at start (code {process.returncode})")
    return process


def start_worker(
    *, env: Mapping[str, str], concurrency: int = 8, extra: Sequence[str] = (),
    log: Path | None = None, processes: int = 1,
) -> subprocess.Popen[bytes]:  # fmt: skip
    argv = [
        sys.executable, "-m", "jobs.cli", "worker", "--processes", str(processes),
        "--concurrency", str(concurrency), "--loglevel", "INFO", *extra,
    ]  # fmt: skip
    return start(argv, env=env, log=log)


def start_api(
    port: int, *, env: Mapping[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """`phonebatch api` (the JSON API and the pages) on 127.0.0.1:`port`, once it answers."""
    argv = [sys.executable, "-m", "jobs.cli", "api", "--port", str(port)]
    process = start(argv, env=env, log=log)
    url = f"http://127.0.0.1:{port}/healthz"
    wait_until(lambda: _http_ok(url) or process.poll() is not None, timeout=20, what="the API")
    if process.poll() is not None:
        raise ServiceError(f"the API exited at start (code {process.returncode})")
    return process


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
