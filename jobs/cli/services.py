"""Start and stop the local processes phonebatch runs with: a private redis-server, the
simulator and workers. Used by `phonebatch demo` and by the end-to-end tests.

Every process starts in its own process group so that stopping it stops its children
too (a Celery worker's pool, for one).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import redis

from jobs.store.connection import connect


class ServiceError(RuntimeError):
    """Raised when a local process cannot start or does not come up in time."""


T = TypeVar("T")


class PortTaken(ServiceError):
    """Raised when a server could not have the port it was given: another process took it
    between `free_port` and the server's bind. Start it again on another port."""


_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_handed_out: set[int] = set()
_random = random.SystemRandom()  # not `random`'s: tests seed that, alike in every process


def free_port() -> int:
    """A port nothing listens on, for a server about to start on it.

    The port is drawn at random from below the kernel's ephemeral range (Linux's
    ip_local_port_range), where neither the local end of an outgoing connection nor another
    program's bind to port 0 lands, and is never handed out twice by one process. So several
    test processes at once (`pytest -n`), or other suites on the machine, seldom draw the
    same one; a server that finds its port taken all the same raises `PortTaken` at start
    (`start_redis_server`, `start_simulator`) rather than sharing another's.
    """
    low = _ephemeral_low()
    if low > 3024:
        for _ in range(200):
            port = _random.randrange(max(1024, low - 12288), low)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket() as sock:  # no such range (not Linux), or all of it busy
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        _handed_out.add(found)
        return found


def on_free_port(start: Callable[[int], T], *, attempts: int = 3) -> tuple[int, T]:
    """`start(port)` on a `free_port()`, on another one if that one was taken meanwhile."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return port, start(port)
        except PortTaken:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(
            lambda: process.poll() is not None or _redis_pid(url, loaded=True) == process.pid,
            timeout=10, what="redis-server",
        )  # fmt: skip
    except ServiceError:
        stop(process)
        if _redis_pid(url) is not None:  # another Redis answers there, not ours
            raise PortTaken(f"port {port} is another Redis's") from None
        raise
    if process.poll() is not None:  # most likely its port was taken: the log says
        log = (directory / "redis.log").read_text(errors="replace").strip().splitlines()
        raise PortTaken(f"redis-server on port {port} exited at start: {log[-1:]}")
    return process


def _redis_pid(url: str, *, loaded: bool = False) -> int | None:
    """The process id of the Redis answering at `url`, if one does (with `loaded`, only
    once it has loaded its data: INFO answers while it loads, every other command fails)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        info = client.info()
        if loaded and int(info.get("loading", 0)):
            return None
        return int(info["process_id"])
    except (redis.ConnectionError, redis.TimeoutError, OSError, KeyError):
        return None
    finally:
        client.close()


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
    # Its own answer: another simulator on that port (it took the port first) is not it.
    wait_until(
        lambda: _health_pid(url) == process.pid or process.poll() is not None,
        timeout=20, what="the simulator",
    )  # fmt: skip
    if process.poll() is not None:
        raise PortTaken(
            f"the simulator exited at start (code {process.returncode}); port {port} taken?"
        )
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


def _health_pid(url: str) -> int | None:
    try:
        pid = httpx.get(url, timeout=0.5).json().get("pid")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None
