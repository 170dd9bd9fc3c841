"""Send packed commands (`jobs.queue.resp`) on one connection of a client's pool, streaming.

A bulk write is a series of blobs of several commands each. While Redis applies one
blob the next is being built: up to `window` blobs are sent before their replies are
read. An error reply is raised as redis-py raises it (`redis.ResponseError`), once the
blob's other replies are read. A lost connection is retried by the client's own retry
policy, as redis-py retries a pipeline: the blobs not yet confirmed are sent again, so,
as with a pipeline, a blob Redis applied just before the connection dropped may be
applied twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, cast

import redis
from redis.retry import Retry

Confirmed = Callable[[], object] | None


class _Connection(Protocol):
    """The part of redis-py's `Connection` used here (redis-py leaves it untyped)."""

    retry: Retry

    def send_packed_command(self, command: list[bytes], check_health: bool = True) -> None: ...

    def read_response(self) -> Any: ...

    def disconnect(self) -> None: ...


class BulkWriter:
    """Use as a context manager; leaving it waits for the last replies. After an error
    the connection is dropped, as a socket may still hold replies, and the writer is done."""

    def __init__(self, client: redis.Redis, *, window: int = 1) -> None:
        self._pool = client.connection_pool
        self._window = window
        self._unconfirmed: deque[tuple[bytes, int, Confirmed]] = deque()
        self._taken: Any = None  # the pool's own connection object, to give back
        self._conn: _Connection | None = None
        self._failed = False

    def __enter__(self) -> BulkWriter:
        self._taken = self._pool.get_connection()
        self._conn = cast(_Connection, self._taken)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if self._conn is not None and not self._failed:
                if error is None:
                    self.finish()
                else:
                    self._fail()
        finally:
            self._pool.release(self._taken)
            self._conn = self._taken = None

    def send(self, blob: bytes, replies: int, on_confirmed: Confirmed = None) -> None:
        """Send commands that give `replies` replies; raises errors of earlier blobs.

        `on_confirmed` is called once all of this blob's replies are in, none an error."""
        conn = self._connection()
        # A health check's PING would read a reply meant for an earlier blob.
        check_health = not self._unconfirmed
        self._unconfirmed.append((blob, replies, on_confirmed))
        try:
            self._guarded(lambda: conn.send_packed_command([blob], check_health), sends=True)
            self._confirm(keep=self._window)
        except BaseException:
            self._fail()
            raise

    def finish(self) -> None:
        """Wait for every reply; raises the first error among them."""
        self._connection()
        try:
            self._confirm(keep=0)
        except BaseException:
            self._fail()
            raise

    def _connection(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("use BulkWriter as a context manager")
        if self._failed:
            raise RuntimeError("this bulk write failed already")
        return self._conn

    def _fail(self) -> None:
        self._failed = True
        self._unconfirmed.clear()
        if self._conn is not None:
            self._conn.disconnect()

    def _confirm(self, *, keep: int) -> None:
        conn = self._connection()
        while len(self._unconfirmed) > keep:
            _, replies, on_confirmed = self._unconfirmed[0]
            failure = self._guarded(_reader(conn, replies), sends=False)
            self._unconfirmed.popleft()
            if failure is not None:
                raise failure
            if on_confirmed is not None:
                on_confirmed()

    def _guarded(self, step: Callable[[], Any], *, sends: bool) -> Any:
        """`step`, retried on a new connection once the unconfirmed blobs are sent again.

        A sending step's blob is the last unconfirmed one: sending them again sends it."""
        conn = self._connection()
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                return step()
            for blob, _, _ in self._unconfirmed:
                conn.send_packed_command([blob], False)
            return None if sends else step()

        return conn.retry.call_with_retry(attempt, lambda _error: conn.disconnect())


def _reader(conn: _Connection, replies: int) -> Callable[[], redis.ResponseError | None]:
    def read() -> redis.ResponseError | None:
        """Read `replies` replies; the first error reply, if any, once all are read."""
        first: redis.ResponseError | None = None
        for _ in range(replies):
            try:
                conn.read_response()
            except redis.ResponseError as error:
                first = first or error
        return first

    return read
