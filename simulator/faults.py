"""Faults the simulator can inject: latency, its own rate limit, random errors, hangs,
dropped connections, ids that always 404, a refused key. Seeded, so runs repeat.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from simulator.limits import RATE_LIMIT_MODES, RateLimiter, make_limiter
from simulator.limits import TokenBucket as TokenBucket  # re-exported: it used to live here


class Fault(Enum):
    """A kind of fault the simulator injects; the value is its name in the request log."""

    AUTH = "auth"  # 401 for everything: the key is wrong
    MISSING = "missing"  # 404: an id that always fails
    THROTTLED = "throttled"  # 429 from the simulator's own rate limit
    RANDOM_429 = "random-429"
    SERVER_ERROR = "server-error"  # 500 / 502 / 503 / 504
    HANG = "hang"  # answers only after `hang_seconds`, past a client's timeout
    DROP = "drop"  # the connection closes in the middle of the answer


@dataclass
class FaultConfig:
    """Which faults to inject and how often: latency, a rate limit, error odds, a seed."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_limit: float = 0.0  # requests per second the simulator accepts; 0 = no limit
    rate_burst: float = 1.0  # how many it accepts at once after an idle spell ("bucket")
    # How the limit counts (simulator.limits): "sliding", "fixed", "bucket-burst" or
    # "bucket"; "bucket" (a token bucket of `rate_burst`) is the default, as it always was.
    rate_limit_mode: str = "bucket"
    p429: float = 0.0
    retry_after: int = 1  # the Retry-After of a random 429
    p5xx: float = 0.0
    p_hang: float = 0.0
    hang_seconds: float = 30.0
    p_drop: float = 0.0
    always_404: list[str] = field(default_factory=list)
    fail_auth: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse an unknown mode now, where the caller can be told, not at the first
        request."""
        if self.rate_limit_mode not in RATE_LIMIT_MODES:
            raise ValueError(
                f"rate_limit_mode must be one of {', '.join(RATE_LIMIT_MODES)}: "
                f"{self.rate_limit_mode!r}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """What to do with one request: which fault (None: answer normally), and after how long."""

    fault: Fault | None
    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0  # seconds to wait before answering (latency, a hang)


class FaultInjector:
    """Decides each request's fault from a `FaultConfig`, with a seeded random source."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._missing = set(config.always_404)
        self._limiter: RateLimiter | None = (
            make_limiter(config.rate_limit_mode, config.rate_limit, config.rate_burst)
            if config.rate_limit
            else None
        )

    def decide(self, number_id: str, now: float) -> Decision:
        c = self.config
        delay = max(0.0, c.latency_ms + self._rng.uniform(-c.jitter_ms, c.jitter_ms)) / 1000
        if c.fail_auth:
            return Decision(Fault.AUTH, 401, delay=delay)
        if number_id in self._missing:
            return Decision(Fault.MISSING, 404, delay=delay)
        if self._limiter is not None:
            wait = self._limiter.take(now)
            if wait > 0:
                return Decision(
                    Fault.THROTTLED, 429, retry_after=max(1, math.ceil(wait)), delay=delay
                )
        roll = self._rng.random()
        for fault, chance in (
            (Fault.RANDOM_429, c.p429),
            (Fault.SERVER_ERROR, c.p5xx),
            (Fault.HANG, c.p_hang),
            (Fault.DROP, c.p_drop),
        ):
            if roll < chance:
                return self._fault(fault, delay)
            roll -= chance
        return Decision(None, delay=delay)

    def _fault(self, fault: Fault, delay: float) -> Decision:
        if fault is Fault.RANDOM_429:
            return Decision(fault, 429, retry_after=self.config.retry_after, delay=delay)
        if fault is Fault.SERVER_ERROR:
            return Decision(fault, self._rng.choice((500, 502, 503, 504)), delay=delay)
        if fault is Fault.HANG:
            return Decision(fault, delay=delay + self.config.hang_seconds)
        return Decision(fault, delay=delay)
