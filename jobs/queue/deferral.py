"""Items handed back to the queue with a countdown, without Celery's ETA.

A Celery countdown on the Redis transport keeps the message unacknowledged in a worker
until it is due; past the transport's visibility timeout it is delivered again
(kombu#337, celery#5935). Instead, a deferred item waits in a sorted set scored by its
due time (the Redis server's clock), and every worker moves due items back to the queue
in one atomic script. Nothing waits inside a worker, and Redis persistence keeps them.
"""

from __future__ import annotations

import redis

from jobs.queue.keys import deferred_key

# KEYS: 1 deferred sorted set. ARGV: 1 delay (s), 2 message.
DEFER = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
return 1
"""

# KEYS: 1 deferred sorted set, 2 queue list. ARGV: 1 how many at most.
# Returns how many messages were moved to the queue.
RELEASE_DUE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, message in ipairs(due) do
  redis.call('LPUSH', KEYS[2], message)
  redis.call('ZREM', KEYS[1], message)
end
return #due
"""


class Deferrals:
    """A queue's deferred items: hands them back with a delay and releases the due ones."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self._client = client
        self._queue = queue
        self._defer = client.register_script(DEFER)
        self._release = client.register_script(RELEASE_DUE)

    def defer(self, message: str, delay: float) -> None:
        self._defer(keys=[deferred_key(self._queue)], args=[max(0.0, delay), message])

    def release_due(self, limit: int = 500) -> int:
        moved = self._release(keys=[deferred_key(self._queue), self._queue], args=[limit])
        return int(moved)

    def waiting(self) -> int:
        return int(self._client.zcard(deferred_key(self._queue)))
