"""Faults the simulator can inject: latency, its own rate limit, random errors, hangs,
dropped connections, ids that always 404, a refused key. Seeded, so runs repeat.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Fault(Enum):
    AUTH = "auth"  # 401 for everything: the key is wrong
    MISSING = "missing"  # 404: an id that always fails
    THROTTLED = "throttled"  # 429 from the simulator's own rate limit
    RANDOM_429 = "random-429"
    SERVER_ERROR = "server-error"  # 500 / 502 / 503 / 504
    HANG = "hang"  # answers only after `hang_seconds`, past a client's timeout
    DROP = "drop"  # the connection closes in the middle of the answer


@dataclass
class FaultConfig:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_limit: float = 0.0  # requests per second the simulator accepts; 0 = no limit
    rate_burst: float = 1.0  # how many it accepts at once after an idle spell
    p429: float = 0.0
    retry_after: int = 1  # the Retry-After of a random 429
    p5xx: float = 0.0
    p_hang: float = 0.0
    hang_seconds: float = 30.0
    p_drop: float = 0.0
    always_404: list[str] = field(default_factory=list)
    fail_auth: bool = False
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.at: float | None = None

    def take(self, now: float) -> float:
        """0 if a token was taken, else seconds until one is free."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True)
class Decision:
    fault: Fault | None
    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0  # seconds to wait before answering (latency, a hang)


class FaultInjector:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._missing = set(config.always_404)
        self._bucket = (
            TokenBucket(config.rate_limit, config.rate_burst) if config.rate_limit else None
        )

    def decide(self, number_id: str, now: float) -> Decision:
        c = self.config
        delay = max(0.0, c.latency_ms + self._rng.uniform(-c.jitter_ms, c.jitter_ms)) / 1000
        if c.fail_auth:
            return Decision(Fault.AUTH, 401, delay=delay)
        if number_id in self._missing:
            return Decision(Fault.MISSING, 404, delay=delay)
        if self._bucket is not None:
            wait = self._bucket.take(now)
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
