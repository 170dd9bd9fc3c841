"""Items handed back to the queue with a countdown, without Celery's ETA.

A Celery countdown on the Redis transport keeps the message unacknowledged in a worker
until it is due; past the transport's visibility timeout it is delivered again
(kombu#337, celery#5935). Instead, a deferred item waits in a sorted set scored by its
due time (the Redis server's clock), and every worker moves due items back to the queue
in one atomic script, each to its own priority's key (read from the message, as kombu
reads it). Nothing waits inside a worker, and Redis persistence keeps them.
"""

from __future__ import annotations

import redis

from jobs.queue.keys import deferred_key
from jobs.queue.priority import queue_keys

# KEYS: 1 deferred sorted set. ARGV: 1 delay (s), 2 message.
DEFER = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[2])
return 1
"""

# KEYS: 1 deferred sorted set, 2..5 the queue's keys for kombu's priority steps 0, 3, 6
# and 9 (`queue_keys`). ARGV: 1 how many at most. Each message goes to the key of its
# `properties.priority` (0-9, step by step as kombu's `_q_for_pri`; none or unreadable:
# 0, as kombu reads it). Returns how many messages were moved to the queue.
RELEASE_DUE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, message in ipairs(due) do
  local step = 0
  local ok, decoded = pcall(cjson.decode, message)
  if ok and type(decoded) == 'table' and type(decoded['properties']) == 'table' then
    local priority = tonumber(decoded['properties']['priority'])
    if priority then step = math.floor(math.max(0, math.min(9, priority)) / 3) end
  end
  redis.call('LPUSH', KEYS[2 + step], message)
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
        keys = [deferred_key(self._queue), *queue_keys(self._queue)]
        moved = self._release(keys=keys, args=[limit])
        return int(moved)

    def waiting(self) -> int:
        return int(self._client.zcard(deferred_key(self._queue)))
