"""Number holds in Redis: no two batches change one number at once.

`phonebatch:holds` maps a number id to the batch (and item) changing it. A submit takes
its numbers a chunk at a time (`HOLD`, all or none); the scripts that give an item its
outcome delete its hold. A hold is checked against its holder, never trusted: a holder
that ended, was cancelled or expired holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import redis

from jobs.store.guardrails import STAGED_HOLD_SECONDS
from jobs.store.keys import HOLDS_KEY, batch_key_parts, items_key_parts
from jobs.store.records import as_text as _text
from jobs.store.scripts import PRELUDE

CHUNK = 1000

# KEYS: H (number holds). ARGV: 1 batch id, 2 'take' (all or none: nothing is taken if
# any number is held), 'share' (take the free ones, leave the held ones to their
# holders) or 'check' (take nothing), 3 seconds a holder still writing its items (staged,
# or a selection adding them) holds after its creation (its writer may have died), 4 and
# 5 B's name around an id, 6 and 7 I's, then pairs of number id, item index. A number is
# held while its holder's item for it is pending (and the holder exists): a held number
# whose batch ended, was cancelled or expired is free, whatever its entry says, so nothing
# a crash leaves behind holds a number for long. O(1) a number.
# Returns the numbers held by others: {number, holder batch id, ...}.
HOLD = (
    PRELUDE
    + """
local function recent(batch_key)
  local created = tonumber(redis.call('HGET', batch_key, 'created_at') or '0') or 0
  return now - created < tonumber(ARGV[3])
end
local function holder_of(value)
  local holder, index = string.match(value, '^(.*)|(%d+)$')
  if not holder or holder == ARGV[1] then return nil end
  local batch_key = ARGV[4] .. holder .. ARGV[5]
  local state = redis.call('HGET', batch_key, 'state')
  if not state then return nil end
  if state == 'staging' then
    if recent(batch_key) then return holder end
    return nil
  end
  local item = redis.call('HGET', ARGV[6] .. holder .. ARGV[7], index)
  if not item then
    -- A selection adds its items once it has taken the holds (unless it died doing so).
    if redis.call('HGET', batch_key, 'selecting') == '2' and recent(batch_key) then
      return holder
    end
    return nil
  end
  if cjson.decode(item)['status'] == 'pending' then return holder end
  return nil
end
local held, taken = {}, {}
for i = 8, #ARGV, 2 do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  local holder = value and holder_of(value)
  if holder then
    held[#held + 1] = ARGV[i]
    held[#held + 1] = holder
    taken[ARGV[i]] = true
  end
end
if ARGV[2] == 'check' or (ARGV[2] == 'take' and #held > 0) then return held end
for i = 8, #ARGV, 2 do
  if not taken[ARGV[i]] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1] .. '|' .. ARGV[i + 1])
  end
end
return held
"""
)

# KEYS: H. ARGV: 1 batch id, then pairs of number id, item index. Each number's hold goes,
# if it is still this batch's for that item (a submission refused or failed part way).
RELEASE_HOLDS = """
local released = 0
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] .. '|' .. ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    released = released + 1
  end
end
return released
"""


class RedisHolds:
    """Take and give back a batch's holds (`ReportStore.hold`, `release_holds`)."""

    def __init__(self, client: redis.Redis) -> None:
        self._hold = client.register_script(HOLD)
        self._release = client.register_script(RELEASE_HOLDS)

    def hold(
        self, batch_id: str, numbers: Iterable[tuple[str, int]], *, share: bool = False
    ) -> list[tuple[str, str]]:
        # A chunk a script: all or none within it. A refused batch checks the rest (to
        # list every held number), then gives back the chunks it took.
        mode = "share" if share else "take"
        held: list[tuple[str, str]] = []
        taken: list[list[tuple[str, int]]] = []
        pending = iter(numbers)
        while chunk := list(islice(pending, CHUNK)):
            flat: list[str | int] = [part for pair in chunk for part in pair]
            answer = self._hold(
                keys=[HOLDS_KEY],
                args=[batch_id, mode, STAGED_HOLD_SECONDS, *batch_key_parts(),
                      *items_key_parts(), *flat],
            )  # fmt: skip
            found = [(_text(answer[i]), _text(answer[i + 1])) for i in range(0, len(answer), 2)]
            held += found
            if mode == "take" and found:
                mode = "check"
            elif mode != "check":
                taken.append(chunk)
        if held and not share:
            for chunk in taken:
                self.release(batch_id, chunk)
        return held

    def release(self, batch_id: str, numbers: Iterable[tuple[str, int]]) -> None:
        pending = iter(numbers)
        while chunk := list(islice(pending, CHUNK)):
            flat: list[str | int] = [part for pair in chunk for part in pair]
            self._release(keys=[HOLDS_KEY], args=[batch_id, *flat])
