"""Batch priorities and where their task messages wait.

Priorities ride on kombu's own Redis priority support: a message's `properties.priority`
(0-9) picks one of the queue's keys, `queue` itself for 0 and `queue<SEP><step>` for the
other steps of kombu's `priority_steps` (0, 3, 6, 9), and kombu's consumer polls the keys
lowest number first. So high is 0, normal 3, low 6: kombu's own transport (the fallback)
serves them in that order, strictly (low waits while anything else does), and kombu's own
restore of a message (visibility timeout, a requeue) puts it back on its priority's key,
read from the message.

Our transport (`worker.broker`) takes in a weighted order instead (`take_order`): of every
`TURNS` messages a worker process takes while several priorities wait, at most 8 are
high, and low gets at least one whatever else waits, so no priority starves.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import redis


class Priority(StrEnum):
    """How urgent a batch is: its tasks are taken before those of lower priorities."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def level(self) -> int:
        """The kombu priority its task messages carry (lower is taken first)."""
        return LEVELS[self]

    @classmethod
    def of_level(cls, level: int) -> Priority:
        """The priority whose key a message of kombu priority `level` waits on (kombu's
        last step, 9, which none of ours uses, counts as low)."""
        step = step_of(level)
        return cls.HIGH if step == 0 else cls.NORMAL if step == 3 else cls.LOW


LEVELS = {Priority.HIGH: 0, Priority.NORMAL: 3, Priority.LOW: 6}
SEP = "\x06\x16"  # kombu's Redis transport's separator between a queue and its step
STEPS = (0, 3, 6, 9)  # kombu's default `priority_steps`


def step_of(level: int) -> int:
    """The step a message priority falls in, as kombu's `Channel.priority` bisects."""
    clamped = max(0, min(9, level))
    return max(step for step in STEPS if step <= clamped)


def queue_key(queue: str, level: int) -> str:
    """The Redis list a message of this kombu priority waits on (kombu's `_q_for_pri`)."""
    step = step_of(level)
    return f"{queue}{SEP}{step}" if step else queue


def queue_keys(queue: str) -> list[str]:
    """Every key of `queue`, highest priority first."""
    return [queue_key(queue, step) for step in STEPS]


def level_of(message: dict[str, Any]) -> int:
    """A task message's kombu priority (0 when it has none, as kombu reads it)."""
    properties = message.get("properties")
    value = properties.get("priority") if isinstance(properties, dict) else None
    try:
        return max(0, min(9, int(value))) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def queue_length(client: redis.Redis, queue: str) -> int:
    """How many messages wait on `queue`, every priority's key together."""
    with client.pipeline(transaction=False) as pipe:
        for key in queue_keys(queue):
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


# The order a worker process looks at the steps for its next message, by turn: 8 turns of
# 10 strictly (high, normal, low), the 5th normal first, the 10th low first. An empty
# step's turn goes to the next lower step (wrapping to high last), so while high waits,
# normal and low share 2 turns of 10 (one each when both wait); while only normal and low
# wait, low gets 1 of 10. Steps 0/3/6/9: high, normal, low, and kombu's 9 (unused here).
TURNS = 10
_STRICT = (0, 3, 6, 9)
_ORDERS = (_STRICT,) * 4 + ((3, 6, 9, 0),) + (_STRICT,) * 4 + ((6, 9, 3, 0),)


def take_order(turn: int) -> tuple[int, ...]:
    """The steps to look at, in order, for a process's `turn`-th message (0, 1, 2 ...)."""
    return _ORDERS[turn % TURNS]
