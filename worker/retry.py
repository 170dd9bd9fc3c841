"""The retry policy: what to retry, how long to wait, when to give up or hand back.

Built once from settings (`RetryPolicy.from_settings`), run with tenacity. Waits are
exponential with full jitter and a cap; after a 429 the request waits its Retry-After,
the limiter learns the pace the API accepts from it (`worker.limiter`), and it spends its
own, larger budget. A wait longer than a worker may hold a slot raises `Deferred`: the
item goes back to the queue with a countdown and keeps its counts. `sleep` and the
random source are parameters, so tests check every wait without sleeping.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

from config import Settings
from worker import timeline
from worker.errors import DeliveryError, RateLimited, is_retryable
from worker.limiter import Limiter, Slot, Throttled
from worker.metrics import LIMITER_WAIT_SECONDS, RATE_LIMITED, RETRIES

T = TypeVar("T")


@dataclass
class Attempts:
    """An item's attempts so far; travels with the item when it is handed back."""

    total: int = 0
    failures: int = 0  # transient failures other than 429
    rate_limited: int = 0
    reads: int = 0  # of `total`, the GETs that read the number before its update

    @property
    def updates(self) -> int:
        return self.total - self.reads

    def as_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "failures": self.failures,
            "rate_limited": self.rate_limited,
            "reads": self.reads,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Attempts:
        data = data or {}
        fields = ("total", "failures", "rate_limited", "reads")
        return cls(**{name: int(data.get(name, 0)) for name in fields})


class Deferred(Exception):
    """Come back in `delay` seconds: waiting here would hold a worker slot idle."""

    def __init__(self, delay: float, attempts: Attempts) -> None:
        super().__init__(f"deferred for {delay:.1f} s")
        self.delay = delay
        self.attempts = attempts


class Stopped(Deferred):
    """The batch was cancelled or paused while its item waited to be sent: send nothing
    more now. A `Deferred` with no delay, so it carries the attempts so far the same way
    (reads told apart from updates) to whoever records or parks the item."""

    def __init__(self, state: str, attempts: Attempts | None = None) -> None:
        super().__init__(0.0, attempts or Attempts())
        self.args = (f"the batch is {state}",)
        self.state = state


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long an item is tried again: attempts, backoff, and the waits a
    task may sit out before it hands the item back to the queue."""

    max_attempts: int = 6
    max_rate_limited: int = 30
    base: float = 0.5
    cap: float = 30.0
    inline_limit: float = 3.0
    budget: float = 60.0  # seconds of waiting one task may spend before handing back
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            max_rate_limited=settings.max_rate_limited_attempts,
            base=settings.backoff_base,
            cap=settings.backoff_cap,
            inline_limit=settings.inline_wait_limit,
            budget=settings.task_time_budget,
        )

    def backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(failures-1))]."""
        ceiling = min(self.cap, self.base * 2 ** max(0, failures - 1))
        return self.rng.uniform(0, ceiling)

    def pause_for(self, error: RateLimited, rate_limited: int) -> float:
        """How long everyone waits after a 429: its Retry-After, else a backoff."""
        if error.retry_after is not None:
            return max(0.0, error.retry_after)
        return max(1.0, self.backoff(rate_limited))

    def gives_up(self, attempts: Attempts) -> bool:
        return (
            attempts.failures >= self.max_attempts or attempts.rate_limited >= self.max_rate_limited
        )


class RetryingSender:
    """Runs one API call: limiter slot, attempt, classify, wait or defer, again."""

    def __init__(
        self,
        policy: RetryPolicy,
        limiter: Limiter,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        in_flight: Callable[[float], AbstractContextManager[None]] | None = None,
    ) -> None:
        self.policy = policy
        self.limiter = limiter
        self._sleep = sleep
        self._clock = clock
        self._in_flight = in_flight or (lambda _: nullcontext())

    def run(
        self,
        call: Callable[[], T],
        attempts: Attempts,
        gate: Callable[[], None] | None = None,
    ) -> tuple[T, Attempts]:
        """The call's result and the attempts so far, or the last error (with
        `attempts` set on it), or `Deferred`.

        `gate`, if given, runs before every attempt, after the waits (limiter, in-flight
        place, backoff) and right before the call: it raises to send nothing. A `Stopped`
        it raises leaves with the attempts so far."""
        one = _OneCall(self, call, Attempts(**attempts.as_dict()), gate)
        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            stop=lambda _: self.policy.gives_up(one.tracker),
            wait=lambda state: self._wait(one.tracker, state, one.pauses),
            after=one.after,
            sleep=one.sleep,
            reraise=True,
        )
        try:
            return retrying(one.attempt), one.tracker
        except DeliveryError as exc:
            exc.attempts = one.tracker.total
            raise

    def _count(
        self, tracker: Attempts, state: RetryCallState, slot: Slot | None, pauses: list[float]
    ) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited):
            RATE_LIMITED.inc()
            RETRIES.labels("429").inc()
            tracker.rate_limited += 1
            pauses.append(self.policy.pause_for(error, tracker.rate_limited))
            # The limiter learns the pace the API accepts from it; the others go on.
            self.limiter.backend.rate_limited(pauses[-1], slot)
        elif error is not None and is_retryable(error):
            RETRIES.labels(type(error).__name__).inc()
            tracker.failures += 1

    def _wait(self, tracker: Attempts, state: RetryCallState, pauses: list[float]) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimited) and pauses:
            # This request waits the API's Retry-After itself (a longer one hands the
            # item back); it then takes a slot at the pace learned meanwhile.
            return pauses[-1]
        return self.policy.backoff(tracker.failures)


class _OneCall(Generic[T]):
    """What one `RetryingSender.run` keeps between its attempts: the attempts counted,
    when it started (every wait counts against the task's budget, so a task never holds
    its item longer than its claim lease), the slot of each attempt and the wait each
    429 asked for."""

    def __init__(
        self,
        sender: RetryingSender,
        call: Callable[[], T],
        tracker: Attempts,
        gate: Callable[[], None] | None,
    ) -> None:
        self.sender, self.call, self.tracker, self.gate = sender, call, tracker, gate
        self.started = sender._clock()
        self.slots: list[Slot] = []  # the last is the slot of the attempt that just ended
        self.pauses: list[float] = []  # the last is the wait the last 429 asked for

    def left(self) -> float:
        return max(0.0, self.sender.policy.budget - (self.sender._clock() - self.started))

    def attempt(self) -> T:
        try:
            slot = self.sender.limiter.acquire(budget=self.left())
            LIMITER_WAIT_SECONDS.observe(slot.wait)
            self.slots.append(slot)
            with self.sender._in_flight(self.left()):
                if self.gate is not None:
                    self.gate()
                self.tracker.total += 1
                return self._counted()
        except Throttled as exc:
            raise Deferred(exc.delay, self.tracker) from exc
        except Stopped as exc:
            exc.attempts = self.tracker
            raise

    def _counted(self) -> T:
        """The call, counted for its batch's timeline: a request, and a 429 or an error."""
        timeline.count("requests")
        try:
            return self.call()
        except RateLimited:
            timeline.count("limited")
            raise
        except DeliveryError:
            timeline.count("errors")
            raise

    def after(self, state: RetryCallState) -> None:
        slot = self.slots[-1] if self.slots else None
        self.sender._count(self.tracker, state, slot, self.pauses)

    def sleep(self, seconds: float) -> None:
        policy = self.sender.policy
        spent = self.sender._clock() - self.started
        if seconds > policy.inline_limit or spent + seconds > policy.budget:
            raise Deferred(seconds, self.tracker)
        self.sender._sleep(seconds)
