"""Every Redis key of the task queue, ours and kombu's, in one place.

kombu's Redis transport keeps a message a worker holds in the `unacked` hash (tag ->
`[message, exchange, routing key]`) with its delivery time in the `unacked_index`
sorted set. The workers' Celery app names both keys from here (transport options), the
report store's record script settles a message in them, and `jobs.operations.recovery`
reads them and restores a dead worker's messages with `RESTORE`: kombu's own restore of
one message, so nothing else has to know the layout.
"""

from __future__ import annotations

UNACKED_KEY = "unacked"  # kombu's defaults, set explicitly by worker.app
UNACKED_INDEX_KEY = "unacked_index"

# KEYS: 1 unacked hash, 2 unacked index, 3 queue. ARGV: 1 delivery tag, 2 message.
# kombu's own restore, for one tag: the message goes back where consumers take next.
# Only the caller that removes the tag pushes, so a restore racing kombu's runs once.
RESTORE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], ARGV[2])
return 1
"""


def deferred_key(queue: str) -> str:
    """The sorted set of items handed back to `queue` with a countdown (`deferral`)."""
    return f"phonebatch:deferred:{queue}"


# KEYS: 1 a lock. ARGV: 1 the token its holder set. Deletes the lock only if it is still
# that holder's (it may have expired and been taken by another).
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
