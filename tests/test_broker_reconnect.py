"""A worker's broker connection torn down after Redis went away, as Celery's consumer
does it (`collect()`, then `close()`): no error but the connection errors Celery expects
(docs/upstream/kombu-reconnect.md)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue

from jobs.cli.services import free_port, start_redis_server, stop
from worker.broker import Transport

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server of the test's own, for it to stop."""
    port = free_port()
    process = start_redis_server(port, tmp_path / "redis")
    try:
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        stop(process)


def _collected_after_redis_went_away(url: str, process: Any, transport: Any) -> Connection:
    """A connection left as Celery's consumer leaves it when Redis goes away: a task
    delivered and not acked, a pop in flight, a second channel consuming a fanout queue
    (the remote control's), then `collect()`. The caller closes it."""
    connection = Connection(url, transport=transport)
    channel = connection.default_channel
    tasks = Queue("tasks", Exchange("tasks"), "tasks")
    Producer(channel).publish({"n": 1}, exchange=tasks.exchange, routing_key="tasks",
                              declare=[tasks])  # fmt: skip
    got: list[Any] = []
    Consumer(channel, [tasks], callbacks=[lambda _body, message: got.append(message)]).consume()
    control = Queue("control", Exchange("control", type="fanout"), auto_delete=True)
    Consumer(connection.channel(), [control], callbacks=[lambda *_: None]).consume()
    while not got:
        connection.drain_events(timeout=2)
    for _ in range(10):  # until a pop waits on the empty queue (the fanout's subscription
        try:  # confirmed on the way)
            connection.drain_events(timeout=0.2)
        except TimeoutError:
            break
    assert channel._in_poll  # the next pop was sent, its reply never read
    stop(process)
    # celery.worker.consumer.Consumer.on_connection_error_after_connected, in order:
    # collect(), whatever it raises ignored, then (the caller) close().
    with contextlib.suppress(Exception):
        connection.collect(socket_timeout=2)
    return connection


def test_a_connection_collected_after_redis_went_away_closes_as_celery_expects(
    server: tuple[str, Any],
) -> None:
    connection = _collected_after_redis_went_away(*server, Transport)
    channel = connection._default_channel
    connection.close()  # kombu's transport: AttributeError (the next test)
    assert channel.closed


def test_kombus_own_transport_still_fails_there(server: tuple[str, Any]) -> None:
    """kombu's bug, unchanged: when this fails, the installed kombu has fixed it and
    `Channel.close` / `Channel._get_pool` in worker/broker.py can go."""
    connection = _collected_after_redis_went_away(*server, "redis")
    with pytest.raises(AttributeError, match="hostname"):
        connection.close()


def test_a_channel_whose_transport_is_gone_says_the_connection_is_lost(
    server: tuple[str, Any],
) -> None:
    url, _ = server
    connection = Connection(url, transport=Transport)
    channel = connection.default_channel
    channel._disconnect_pools()  # kombu's close drops the pools first
    connection._do_close_transport()  # what collect() does: transport.client = None
    with pytest.raises(redis.ConnectionError):
        channel._create_client()
    assert isinstance(redis.ConnectionError(), connection.connection_errors)  # Celery ignores it
