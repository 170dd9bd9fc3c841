"""Which worker processes are alive, and which broker messages each one holds.

Each worker process beats every few seconds: its id goes into `HEARTBEATS_KEY` (a sorted
set) scored with the Redis server's clock, so hosts with skewed clocks agree. When the
transport notes a message as unacknowledged it also notes its holder (`OWNERS_KEY`:
delivery tag -> process id). A process whose last beat is older than the lapse is dead:
any live worker gives its messages back to the queue (`jobs.operations.reaping`) long
before kombu's visibility timeout would, which stays as the last resort.
"""

from __future__ import annotations

HEARTBEATS_KEY = "phonebatch:heartbeats"
OWNERS_KEY = "phonebatch:unacked:owners"
REAPER_LOCK_KEY = "phonebatch:reaper"  # one reaper at a time (the restore is exact anyway)
MISSED_BEATS = 3  # a process is dead after this many beats missed in a row

# KEYS: 1 heartbeats. ARGV: 1 process id. Returns 1 when the process was not listed: its
# first beat, or it was declared dead meanwhile (its messages went back to the queue).
BEAT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
return redis.call('ZADD', KEYS[1], now, ARGV[1])
"""

# KEYS: 1 heartbeats. ARGV: 1 lapse (s). The processes whose last beat is older.
LAPSED = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
"""

# KEYS: 1 owners, 2 unacked hash. ARGV: the tags to look at. Forgets the owner of each tag
# that is no longer unacknowledged (acked by kombu's own path, restored by its visibility
# timeout); returns how many went.
PRUNE_OWNERS = """
local gone = 0
for i = 1, #ARGV do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    gone = gone + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return gone
"""

# KEYS: 1 owners, 2 unacked hash, 3 unacked index, 4 the queue, 5 heartbeats. ARGV: 1 the
# delivery tag, 2 its dead holder, 3 lapse (s), 4 the message to put back ('' if there
# was none to read). Puts one message of a dead process back, in one step and only if it
# is still that process's and the process is still silent: a message restored and taken
# by a live worker meanwhile carries that worker's note, which stays. Returns 1 if it
# went back, 0 if not (another holder now, the holder beat again, or acknowledged).
RESTORE_HELD = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local beat = tonumber(redis.call('ZSCORE', KEYS[5], ARGV[2]))
if beat and beat >= now - tonumber(ARGV[3]) then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[4] == '' or redis.call('HDEL', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[4])
return 1
"""

# KEYS: 1 heartbeats. ARGV: 1 lapse (s), 2... process ids. Forgets those still silent
# (one that beat again since it was found dead stays listed). Returns how many went.
FORGET_LAPSED = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local gone = 0
for i = 2, #ARGV do
  local beat = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  if beat and beat < now - tonumber(ARGV[1]) then
    gone = gone + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return gone
"""
