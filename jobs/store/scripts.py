"""The report store's Lua scripts: each step that must be atomic is one script.

Every script reads the Redis server's clock, so hosts with skewed clocks agree. Keys of a
batch: B = batch hash, I = items hash, C = claims hash (index -> "lease expiry|owner",
the owner being the task id of the run holding it), D = bodies hash (index -> request
body), P = parked list (a paused batch's task messages, kept until it continues). Item
records are JSON; Redis's cjson reads and writes them.
"""

PRELUDE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local stamp = string.format('%.6f', now)
-- A batch that has just ended: if it names a webhook, queue the summary, once.
local function ended(batch_key, due_key, batch_id)
  local url = redis.call('HGET', batch_key, 'webhook_url')
  if url and url ~= '' and redis.call('HSETNX', batch_key, 'webhook_status', 'pending') == 1 then
    redis.call('SADD', due_key, batch_id)
  end
end
-- The batch pauses itself (a canary done, the failure guard): saying why, and telling its
-- webhook's receiver (`batch.paused`) if it has one.
local function self_pause(batch_key, due_key, batch_id, kind, reason)
  redis.call('HSET', batch_key, 'state', 'paused', 'paused_at', stamp, 'paused_by', kind,
    'paused_reason', reason)
  redis.call('HINCRBY', batch_key, 'pauses', 1)
  local url = redis.call('HGET', batch_key, 'webhook_url')
  if url and url ~= '' then
    redis.call('HSET', batch_key, 'pause_webhook_status', 'pending')
    redis.call('SADD', due_key, batch_id .. '|paused')
  end
end
-- The number an item changes is this batch's no more (its item has an outcome).
local function unhold(holds_key, number, batch_id, index)
  if redis.call('HGET', holds_key, number) == batch_id .. '|' .. index then
    redis.call('HDEL', holds_key, number)
  end
end
local function lease_of(claim)
  if not claim then return nil, nil end
  local expiry, owner = string.match(claim, '^([^|]+)|(.*)$')
  return tonumber(expiry), owner
end
"""

# KEYS: B, I, C, D, due webhooks set, H (number holds), G (the guard's window), and with
# a broker receipt kombu's unacked index (sorted set), unacked hash and (if noted) the
# holders hash. ARGV: 1 item index, 2 new status, 3 item record (JSON), 4 retention (s),
# 5 the body to keep from now on ('' to keep it as it is: a sent item's secrets go),
# 6 batch id, 7 what the failure guard counts: '1' failed for good (4xx but 429), '0'
# any other outcome, '' nothing (cancelled), 8 the receipt's delivery tag (optional).
# Returns 1 when the item moved out of `pending`, 2 when it did and the failure guard
# paused the batch, 0 when it already had an outcome, -1 when there is no such item. The
# receipt goes in every case: the task is done with its message (kombu's ack does the
# same ZREM and HDEL).
RECORD_OUTCOME = (
    PRELUDE
    + """
if ARGV[8] then
  redis.call('ZREM', KEYS[8], ARGV[8])
  redis.call('HDEL', KEYS[9], ARGV[8])
  if KEYS[10] then redis.call('HDEL', KEYS[10], ARGV[8]) end
end
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return -1 end
local item = cjson.decode(current)
if item['status'] ~= 'pending' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], ARGV[5]) end
unhold(KEYS[6], item['id'], ARGV[6], ARGV[1])
local pending = redis.call('HINCRBY', KEYS[1], 'pending', -1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
redis.call('HSET', KEYS[1], 'active_at', stamp)
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', stamp)
  state = 'running'
end
if pending <= 0 then
  if state == 'running' or state == 'paused' then
    redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', stamp)
    redis.call('HDEL', KEYS[1], 'paused_at')
  end
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
  redis.call('DEL', KEYS[7])
  ended(KEYS[1], KEYS[5], ARGV[6])
  return 1
end
local window = tonumber(redis.call('HGET', KEYS[1], 'guard_window') or '0') or 0
if window <= 0 or ARGV[7] == '' then return 1 end
-- The failure guard: the last `window` outcomes, and how many of them failed for good.
redis.call('LPUSH', KEYS[7], ARGV[7])
local fails = redis.call('HINCRBY', KEYS[1], 'guard_fails', tonumber(ARGV[7]))
local seen = redis.call('LLEN', KEYS[7])
if seen > window then
  -- 0 - n, not -n: Lua's -0 reaches Redis as '-0', which HINCRBY refuses.
  local oldest = tonumber(redis.call('RPOP', KEYS[7])) or 0
  fails = redis.call('HINCRBY', KEYS[1], 'guard_fails', 0 - oldest)
  seen = window
end
redis.call('EXPIRE', KEYS[7], ARGV[4])
local threshold = tonumber(redis.call('HGET', KEYS[1], 'guard_threshold') or '1') or 1
if state == 'running' and seen >= window and fails > threshold * window then
  self_pause(KEYS[1], KEYS[5], ARGV[6], 'guard', string.format(
    'guard: %d of the last %d outcomes failed for good (HTTP 4xx other than 429), '
    .. 'more than the %g%% allowed', fails, window, threshold * 100))
  return 2
end
return 1
"""
)

# KEYS: B, I, C, due webhooks set, D, S (snapshots: index -> the number's values before
# the item's first send), H (number holds). ARGV: 1 item index, 2 lease (s), 3 retention
# (s), 4 owner (a task id), 5 batch id
# Returns {claim, seconds, item record, mode, force, read_first, halted_reason, snapshot,
# canary ('1' when this claim is one of the batch's canary numbers)}:
# a `Claim` value; for 'busy' how long the other run's lease has left; for 'claimed' and
# 'retaken' what a worker needs to know of the item and the batch, so it reads nothing
# else. In a
# cancelled batch the item is marked cancelled here, so no run can send it whatever the
# order of events. In a paused batch nobody takes it ('paused': the worker parks the task);
# a claim of the same owner, or an expired one, goes. The same owner claiming again (a
# redelivered task, a retried command) gets the item back. A batch with a canary lets
# that many first claims through (`canary_left`) and pauses itself at the next one.
CLAIM = (
    PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not state or not current then return {'missing', '0'} end
local item = cjson.decode(current)
if item['status'] ~= 'pending' then return {'done', '0'} end
if state == 'cancelled' then
  item['status'] = 'cancelled'
  item['finished_at'] = now
  redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(item))
  redis.call('HDEL', KEYS[3], ARGV[1])
  if KEYS[5] then redis.call('HDEL', KEYS[5], ARGV[1]) end  -- its body: never to be sent
  if KEYS[7] then unhold(KEYS[7], item['id'], ARGV[5], ARGV[1]) end
  redis.call('HINCRBY', KEYS[1], 'cancelled', 1)
  if redis.call('HINCRBY', KEYS[1], 'pending', -1) <= 0 then ended(KEYS[1], KEYS[4], ARGV[5]) end
  return {'cancelled', '0'}
end
local lease, owner = lease_of(redis.call('HGET', KEYS[3], ARGV[1]))
if state == 'paused' then
  -- Only this run's own claim goes (its task is parked under a new id). Another run's
  -- lapsed claim stays: it tells the next run it retakes an item perhaps already sent.
  if lease and owner == ARGV[4] then redis.call('HDEL', KEYS[3], ARGV[1]) end
  return {'paused', '0'}
end
if lease and lease > now and owner ~= ARGV[4] then return {'busy', tostring(lease - now)} end
local taken = lease and 'retaken' or 'claimed'
local canary = '0'
if not lease then  -- a first claim: the canary counts it
  local left = tonumber(redis.call('HGET', KEYS[1], 'canary_left') or '')
  if left and left <= 0 then
    self_pause(KEYS[1], KEYS[4], ARGV[5], 'canary', string.format(
      'canary: the first %s numbers were taken; check them, then continue or cancel',
      redis.call('HGET', KEYS[1], 'canary') or '?'))
    return {'paused', '0'}
  elseif left then
    redis.call('HINCRBY', KEYS[1], 'canary_left', -1)
    canary = '1'
  end
end
local claim = string.format('%.6f', now + tonumber(ARGV[2])) .. '|' .. ARGV[4]
redis.call('HSET', KEYS[3], ARGV[1], claim)
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'active_at', stamp)
if state == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', stamp)
end
local rules = redis.call('HMGET', KEYS[1], 'mode', 'force', 'read_first', 'halted_reason')
local kept = KEYS[6] and redis.call('HGET', KEYS[6], ARGV[1]) or false
return {taken, '0', current, rules[1], rules[2], rules[3], rules[4], kept, canary}
"""
)

# KEYS: B, P (the batch's parked task messages). Returns the state the batch is in
# afterwards ('missing' if there is none). A paused batch's parked messages go: their items
# are pending and unclaimed, so the sweep that follows marks them cancelled.
CANCEL = (
    PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'completed' or state == 'cancelled' then return state end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', stamp, 'active_at', stamp)
redis.call('HDEL', KEYS[1], 'paused_at')
redis.call('DEL', KEYS[2])
return 'cancelled'
"""
)

# KEYS: B. Returns the state afterwards ('missing' if there is no batch): a queued or
# running batch becomes paused, a paused one stays so, an ended one is left as it is.
PAUSE = (
    PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' or state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'paused', 'paused_at', stamp)
  return 'paused'
end
return state
"""
)

# KEYS: B, P, the queue list. ARGV: 1 task message, 2 retention (s).
# Keeps the message while the batch is paused (1), noting the workers' queue for the
# continue; otherwise (a continue came first, or a cancel) it goes straight back on the
# queue (0), so nothing is lost whatever the order.
PARK = """
if redis.call('HGET', KEYS[1], 'state') == 'paused' then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('HSET', KEYS[1], 'parked_queue', KEYS[3])
  return 1
end
redis.call('LPUSH', KEYS[3], ARGV[1])
return 0
"""

# KEYS: B, P, the queue list, G (the guard's window). ARGV: 1 '1' to turn the failure
# guard off. Returns {1 if it was paused else 0, state afterwards, messages moved, B's
# fields and values as they are then} ({0, 'missing', 0} if there is no batch): read in
# the same step, as a worker may take a moved message at once. A paused batch goes back to `running`
# (`queued` if nothing had started) and its parked messages to the front of the queue
# they came from (the one given, if none was noted), oldest first, in the same step. A
# canary that paused it is over; the guard starts a fresh window (its old one would
# pause the batch again at the next outcome).
CONTINUE = (
    PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {0, 'missing', 0} end
if state ~= 'paused' then return {0, state, 0, redis.call('HGETALL', KEYS[1])} end
local started = redis.call('HGET', KEYS[1], 'started_at')
local resumed = 'queued'
if started and started ~= '' then resumed = 'running' end
redis.call('HSET', KEYS[1], 'state', resumed, 'active_at', stamp, 'guard_fails', 0)
redis.call('HDEL', KEYS[1], 'paused_at', 'paused_reason', 'paused_by')
if redis.call('HGET', KEYS[1], 'canary_left') == '0' then
  redis.call('HDEL', KEYS[1], 'canary_left')
end
redis.call('DEL', KEYS[4])
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'guard_window', 0) end
local target = redis.call('HGET', KEYS[1], 'parked_queue')
if not target or target == '' then target = KEYS[3] end
local parked = redis.call('LLEN', KEYS[2])
for first = 0, parked - 1, 1000 do
  redis.call('RPUSH', target, unpack(redis.call('LRANGE', KEYS[2], first, first + 999)))
end
redis.call('DEL', KEYS[2])
return {1, resumed, parked, redis.call('HGETALL', KEYS[1])}
"""
)

# KEYS: B, I, C, D, due webhooks set, H (number holds). ARGV: 1 first index, 2 last index,
# 3 retention (s), 4 batch id
# Marks every pending item of the range that no live run holds as cancelled.
SWEEP_CANCELLED = (
    PRELUDE
    + """
local swept = 0
for index = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local current = redis.call('HGET', KEYS[2], index)
  if current then
    local item = cjson.decode(current)
    local lease = lease_of(redis.call('HGET', KEYS[3], index))
    if item['status'] == 'pending' and not (lease and lease > now) then
      item['status'] = 'cancelled'
      item['finished_at'] = now
      redis.call('HSET', KEYS[2], index, cjson.encode(item))
      redis.call('HDEL', KEYS[3], index)
      -- Never to be sent: its body (which may hold secrets) goes with it.
      redis.call('HDEL', KEYS[4], index)
      unhold(KEYS[6], item['id'], ARGV[4], index)
      swept = swept + 1
    end
  end
end
if swept > 0 then
  redis.call('HINCRBY', KEYS[1], 'cancelled', swept)
  if redis.call('HINCRBY', KEYS[1], 'pending', -swept) <= 0 then
    for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
    ended(KEYS[1], KEYS[5], ARGV[4])
  end
end
return swept
"""
)

# KEYS: B. ARGV: 1 limit, 2 reason. Returns 1 if the batch is halted.
NOTE_AUTH_FAILURE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local failures = redis.call('HINCRBY', KEYS[1], 'auth_failures', 1)
local halted = redis.call('HGET', KEYS[1], 'halted_reason')
if halted and halted ~= '' then return 1 end
if failures >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'halted_reason', ARGV[2])
  return 1
end
return 0
"""

# KEYS: parent B. ARGV: 1 child batch id.
LINK_RETRY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local children = redis.call('HGET', KEYS[1], 'retried_by')
if children and children ~= '' then children = children .. ',' .. ARGV[1]
else children = ARGV[1] end
redis.call('HSET', KEYS[1], 'retried_by', children)
return 1
"""

# KEYS: B, due webhooks set. ARGV: 1 items added, 2 batch id, 3 retention (s)
# A selector batch's listing is done: its items count from now on (none: it is complete).
FINISH_SELECTION = (
    PRELUDE
    + """
redis.call('HINCRBY', KEYS[1], 'total', ARGV[1])
local pending = redis.call('HINCRBY', KEYS[1], 'pending', ARGV[1])
redis.call('HSET', KEYS[1], 'selecting', '0', 'active_at', stamp)
if pending <= 0 and redis.call('HGET', KEYS[1], 'state') ~= 'cancelled' then
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finished_at', stamp)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  ended(KEYS[1], KEYS[2], ARGV[2])
end
return pending
"""
)

# KEYS: B. Returns 1 for the one run that may add a selector batch's items, 0 after.
BEGIN_SELECTION = """
if redis.call('HGET', KEYS[1], 'selecting') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'selecting', '2')
return 1
"""

# KEYS: B, I, C, D, E (expectations), the batches index, the unfinished index. ARGV:
# 1 retention (s), 2 batch id, 3 the time now. A staged batch (all its items written)
# goes live in one step: listed, queued, and kept for the retention instead of the
# staging TTL; O(1) whatever its size.
# Returns 1, or 0 if it was not staged (gone, or live already).
GO_LIVE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'staging' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued')
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[2])
return 1
"""
