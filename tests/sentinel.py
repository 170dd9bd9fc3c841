"""A Redis Sentinel group on this machine, for tests: a primary, a replica of it and three
sentinels (quorum 2), each a real process on a free port, started without Docker.

The sentinels call the primary down after `DOWN_AFTER_MS` without an answer, so a failover
takes a few seconds. `SentinelGroup.stop` stops every process it started, whatever state
the group is in; `start_sentinel_group` stops what it started if the group fails to form.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from jobs.cli.services import ServiceError, free_port, redis_answers, start, stop, wait_until

MASTER = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class SentinelGroup:
    """The processes of one group and where they listen."""

    directory: Path
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    master: str = MASTER
    link: LinkProxy | None = None  # the replica's way to the primary
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # by port

    @property
    def url(self) -> str:
        """REDIS_URL for the group: every sentinel, the database in the first address."""
        first, *rest = (f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports)
        return ";".join([first + "/0", *rest])

    def sentinel(self, port: int | None = None) -> redis.Redis:
        port = port or self.sentinel_ports[0]
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)

    def primary_port_now(self) -> int | None:
        """The primary's port as the first sentinel that answers says it."""
        for port in self.sentinel_ports:
            if (primary := self._primary_of(port)) is not None:
                return primary
        return None

    def kill_primary(self) -> int:
        """SIGKILL the primary of now (no shutdown, no last write); its port."""
        port = self.primary_port_now()
        assert port is not None, "no sentinel names a primary"
        process = self.processes[port]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        return port

    @contextmanager
    def replication_held(self) -> Iterator[None]:
        """Nothing the primary sends reaches the replica meanwhile, and at the end the
        link is cut with what was held: writes the primary acknowledged in that time are
        never replicated, as with a replica lagging behind when the primary dies."""
        assert self.link is not None
        self.link.hold()
        try:
            yield
        finally:
            self.link.cut()

    def wait_for_failover(self, old_port: int, timeout: float = 30) -> float:
        """Seconds until every sentinel names a new primary that answers as one."""
        began = time.monotonic()

        def promoted() -> bool:
            ports = {self._primary_of(port) for port in self.sentinel_ports}
            if len(ports) != 1 or None in ports or old_port in ports:
                return False
            (port,) = ports
            assert port is not None
            server = redis.Redis(port=port, socket_timeout=1)
            role: Any = server.execute_command("ROLE")  # type: ignore[no-untyped-call]
            return bool(role and role[0] == b"master")

        wait_until(promoted, timeout=timeout, what="a promoted replica")
        return time.monotonic() - began

    def _primary_of(self, sentinel_port: int) -> int | None:
        try:
            # The raw reply: redis-py 6.4's parser of it fails (see `_sentinels_ready`).
            address: Any = self.sentinel(sentinel_port).execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master
            )
            return int(address[1])
        except (redis.ConnectionError, redis.TimeoutError, TypeError):
            return None

    def stop(self) -> None:
        for process in self.processes.values():
            stop(process, timeout=5)
        if self.link is not None:
            self.link.close()


class LinkProxy:
    """A TCP relay from the replica to the primary that can hold the primary's stream
    (stop reading it) and then cut the link without passing on what it held."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._flowing.clear()

    def cut(self) -> None:
        """Close every relayed connection; new ones flow again (to a dead primary)."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._sockets.clear()
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                replica, _ = self._listener.accept()
            except OSError:
                continue
            try:
                primary = socket.create_connection(("127.0.0.1", self._target), timeout=2)
            except OSError:  # the primary is dead: the replica's attempt ends here
                replica.close()
                continue
            primary.settimeout(None)
            self._sockets += [replica, primary]
            threading.Thread(target=self._pump, args=(primary, replica, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(replica, primary, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, held: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if held:
                    self._flowing.wait()  # held: the bytes wait in `data`, then are dropped
                    if source not in self._sockets:
                        return
                sink.sendall(data)


def start_sentinel_group(directory: Path) -> SentinelGroup:
    """Start the group and wait until every sentinel knows the replica and the others."""
    group = SentinelGroup(directory, free_port(), free_port(), [free_port() for _ in range(3)])
    try:
        _start_server(group, group.primary_port)
        group.link = LinkProxy(group.primary_port)
        _start_server(group, group.replica_port, replica_of=group.link.port)
        wait_until(lambda: _replica_in_sync(group), timeout=20, what="the replica's sync")
        for port in group.sentinel_ports:
            _start_sentinel(group, port)
        wait_until(lambda: _sentinels_ready(group), timeout=30, what="the sentinels")
    except BaseException:
        group.stop()
        raise
    return group


def _start_server(group: SentinelGroup, port: int, *, replica_of: int | None = None) -> None:
    binary = _binary("redis-server")
    where = group.directory / f"redis-{port}"
    where.mkdir(parents=True, exist_ok=True)
    argv = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(where),
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    if replica_of is not None:
        argv += ["--replicaof", "127.0.0.1", str(replica_of)]
    group.processes[port] = start(argv, log=where / "redis.log")
    wait_until(lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), timeout=10, what="redis")


def _start_sentinel(group: SentinelGroup, port: int) -> None:
    where = group.directory / f"sentinel-{port}"
    where.mkdir(parents=True, exist_ok=True)
    config = where / "sentinel.conf"  # a sentinel rewrites its own file as it learns
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {where}\n"
        f"sentinel monitor {group.master} 127.0.0.1 {group.primary_port} 2\n"
        f"sentinel down-after-milliseconds {group.master} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {group.master} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {group.master} 1\n"
    )
    sentinel = shutil.which("redis-sentinel")  # else redis-server in sentinel mode, the same
    argv = [sentinel, str(config)] if sentinel else [_binary("redis-server"), str(config)]
    argv += [] if sentinel else ["--sentinel"]
    group.processes[port] = start(argv, log=where / "sentinel.log")


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name} is not installed (apt-get install redis-server)")
    return found


def _replica_in_sync(group: SentinelGroup) -> bool:
    info = redis.Redis(port=group.replica_port, socket_timeout=1).info("replication")
    return info.get("master_link_status") == "up"


def _sentinels_ready(group: SentinelGroup) -> bool:
    """Each sentinel sees the primary, the replica and the two other sentinels: only then
    can they agree the primary is down and elect one of them to fail over."""
    for port in group.sentinel_ports:
        try:
            client = group.sentinel(port)
            # The raw replies: redis-py 6.4's own parsers of these two fail (a keyword
            # argument they do not take), and make compat runs 6.4.
            replicas: Any = client.execute_command("SENTINEL", "REPLICAS", group.master)
            others: Any = client.execute_command("SENTINEL", "SENTINELS", group.master)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        if len(replicas) != 1 or len(others) != len(group.sentinel_ports) - 1:
            return False
        first = replicas[0]  # a dict (RESP3, or a parser on the way) or a flat list
        fields = (
            first if isinstance(first, dict) else dict(zip(first[::2], first[1::2], strict=True))
        )
        flags = set(str(fields.get("flags", "")).split(","))
        if "slave" not in flags or "s_down" in flags:
            return False
    return True
