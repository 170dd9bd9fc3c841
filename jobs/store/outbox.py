"""The webhook outbox in Redis: the scripts that take an entry into flight, record its
outcome, give it back, and put back the entries of deliverers that died.

An entry is a batch's end (`<id>`) or a pause of its own (`<id>|paused`,
`jobs.store.interface.webhook_entry`); its state lives in the batch hash.
"""

from __future__ import annotations

import redis

from jobs.queue.liveness import HEARTBEATS_KEY
from jobs.store.guardrails import webhook_entry
from jobs.store.keys import WEBHOOKS_DELIVERING_KEY, WEBHOOKS_DUE_KEY, batch_key, batch_key_parts
from jobs.store.records import as_text as _text
from jobs.store.scripts import PRELUDE

# The webhook outbox. A batch's end puts its id in the due set (`ended` above, in the step
# that completes it), a pause of its own `<id>|paused` (`self_pause`); a deliverer moves an
# entry into the in-flight hash (entry -> owner, a worker process) and out again with the
# outcome. An entry's state is in B: `webhook_status` for the end, `pause_webhook_status`
# for the pause. ARGV 2 and 3 of the first and last are what comes before and after a
# batch id in B's name.
_ENTRY = """
-- An outbox entry's batch hash and the field holding its state.
local function webhook_of(entry, before, after)
  local batch_id, kind = string.match(entry, '^([^|]*)|?(.*)$')
  local field = 'webhook_status'
  if kind == 'paused' then field = 'pause_webhook_status' end
  return before .. batch_id .. after, field
end
"""

# KEYS: due webhooks set, webhooks in flight. ARGV: 1 owner, 2 and 3 B's name around the id.
# One due entry, now in flight as the owner's (its state: 'delivering'); the entry, or
# false when none is due. One whose batch is gone or has its outcome already is dropped.
TAKE_WEBHOOK = (
    _ENTRY
    + """
for _ = 1, 100 do
  local id = redis.call('SPOP', KEYS[1])
  if not id then return false end
  local batch_key, field = webhook_of(id, ARGV[2], ARGV[3])
  if redis.call('HGET', batch_key, field) == 'pending' then
    redis.call('HSET', KEYS[2], id, ARGV[1])
    redis.call('HSET', batch_key, field, 'delivering')
    return id
  end
end
return false
"""
)

# KEYS: B, webhooks in flight, due webhooks set. ARGV: 1 entry, 2 owner, 3 outcome
# ('delivered' | 'failed'), 4 attempts, 5 error ('' for none), 6 the entry's field prefix
# in B ('webhook' or 'pause_webhook').
# The outcome goes into B and the entry leaves the outbox: the owner's entry in flight,
# and the due set if it was put back meanwhile (its owner was taken for dead). Another
# process's entry stays: that delivery goes on, with the same delivery id. A 'failed'
# never overwrites a 'delivered' (a deliverer taken for dead may finish last).
# Returns 1 when B took the outcome, 0 when it did not (gone, or delivered already).
RECORD_WEBHOOK = """
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
redis.call('SREM', KEYS[3], ARGV[1])
local current = redis.call('HGET', KEYS[1], ARGV[6] .. '_status')
if not current or (current == 'delivered' and ARGV[3] ~= 'delivered') then return 0 end
redis.call('HSET', KEYS[1], ARGV[6] .. '_status', ARGV[3], ARGV[6] .. '_attempts', ARGV[4],
  ARGV[6] .. '_error', ARGV[5])
return 1
"""

# KEYS: B, webhooks in flight, due webhooks set. ARGV: 1 entry, 2 owner, 3 the entry's
# field prefix in B. The owner's delivery, ended without an outcome, back in the outbox
# ('pending'); nothing if it is no longer the owner's (put back already, or recorded).
# Returns 1 if it went.
GIVE_BACK_WEBHOOK = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], ARGV[3] .. '_status') ~= 'delivering' then return 0 end
redis.call('HSET', KEYS[1], ARGV[3] .. '_status', 'pending')
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# KEYS: webhooks in flight, due webhooks set, heartbeats (`jobs.queue.liveness`). ARGV:
# 1 lapse (s), 2 and 3 B's name around the id.
# Every entry in flight whose owner has not beaten for the lapse goes back to the due
# set ('pending' again). An owner missing from the heartbeats counts as dead too: a
# process beats before it takes anything, and the reaper forgets dead processes, maybe
# before this runs. Each entry leaves the hash in this one step, so it goes back once
# however many workers sweep; one whose batch is gone or has its outcome is dropped.
# Returns the entries put back.
RETURN_WEBHOOKS = (
    PRELUDE
    + _ENTRY
    + """
local entries = redis.call('HGETALL', KEYS[1])
local back = {}
for i = 1, #entries, 2 do
  local id, owner = entries[i], entries[i + 1]
  local beat = tonumber(redis.call('ZSCORE', KEYS[3], owner))
  if not beat or beat < now - tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], id)
    local batch_key, field = webhook_of(id, ARGV[2], ARGV[3])
    if redis.call('HGET', batch_key, field) == 'delivering' then
      redis.call('HSET', batch_key, field, 'pending')
      redis.call('SADD', KEYS[2], id)
      back[#back + 1] = id
    end
  end
end
return back
"""
)


class RedisOutbox:
    """The outbox's steps, each one script."""

    def __init__(self, client: redis.Redis) -> None:
        self._take = client.register_script(TAKE_WEBHOOK)
        self._record = client.register_script(RECORD_WEBHOOK)
        self._return = client.register_script(RETURN_WEBHOOKS)
        self._give_back = client.register_script(GIVE_BACK_WEBHOOK)

    def take(self, owner: str) -> str | None:
        keys = [WEBHOOKS_DUE_KEY, WEBHOOKS_DELIVERING_KEY]
        taken = self._take(keys=keys, args=[owner, *batch_key_parts()])
        return _text(taken) if taken else None

    def record(
        self, entry: str, status: str, attempts: int, error: str | None, *, owner: str
    ) -> None:
        target = webhook_entry(entry)
        keys = [batch_key(target.batch_id), WEBHOOKS_DELIVERING_KEY, WEBHOOKS_DUE_KEY]
        args: list[str | int] = [entry, owner, status, attempts, error or "", target.prefix]
        self._record(keys=keys, args=args)

    def give_back(self, entry: str, owner: str) -> None:
        target = webhook_entry(entry)
        keys = [batch_key(target.batch_id), WEBHOOKS_DELIVERING_KEY, WEBHOOKS_DUE_KEY]
        self._give_back(keys=keys, args=[entry, owner, target.prefix])

    def return_lapsed(self, lapse: float) -> list[str]:
        keys = [WEBHOOKS_DELIVERING_KEY, WEBHOOKS_DUE_KEY, HEARTBEATS_KEY]
        back = self._return(keys=keys, args=[lapse, *batch_key_parts()])
        return [_text(b) for b in back]
