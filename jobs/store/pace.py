"""The shared pace as front ends see it: the keys workers keep their limiter under, and a
reader of each limiter's rate now, a hold in force, and the rate learned from 429s.

Workers write these (`worker.limiter_redis`, by Lua scripts on the Redis server's clock);
front ends only read them. A limiter is per API and key: its Redis key is a fingerprint
of both, never the key, and each worker lists its limiter in `LIMITERS_KEY` with the
API's base URL, so a front end (which has no API key) can find it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import redis

LIMITERS_KEY = "phonebatch:limiters"  # hash: limiter key -> the API's base URL
IN_FLIGHT_KEY = "phonebatch:in-flight"  # sorted set: places in flight -> lease expiry


def limiter_key(base_url: str, api_key: str) -> str:
    """The limiter of one API and key: a fingerprint of both, never the key itself."""
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{api_key}".encode()).hexdigest()
    return f"phonebatch:limiter:{digest[:16]}"


def learned_key(limiter: str) -> str:
    """Beside a limiter's state: the rate learned there, "rate|at", kept a week."""
    return f"{limiter}:learned"


@dataclass(frozen=True, slots=True)
class PaceReading:
    """One limiter as it stands: requests/s in force (0 before the first request or with
    no limit), seconds every worker still holds after repeated 429s, and the rate learned
    from the API's 429s with its age in seconds (None before any)."""

    api: str
    rate: float
    held_for: float
    learned: float | None
    learned_age: float | None


def read_paces(client: redis.Redis) -> list[PaceReading]:
    """Every limiter workers have listed that still has state or a learned rate."""
    listed: dict[bytes, bytes] = client.hgetall(LIMITERS_KEY)  # type: ignore[assignment]
    seconds, micros = client.time()  # the clock the limiter keeps
    now = seconds + micros / 1_000_000
    readings = []
    for key, api in sorted(listed.items()):
        limiter = key.decode()
        rate, pause_until = client.hmget(limiter, "rate", "pause_until")
        learned = client.get(learned_key(limiter))
        if rate is None and learned is None:
            continue  # expired: a limiter unused for a week
        value, at = _learned(learned)
        held_for = max(0.0, float(pause_until or 0) - now)
        age = None if at is None else max(0.0, now - at)
        readings.append(PaceReading(api.decode(), float(rate or 0), held_for, value, age))
    return readings


def _learned(raw: object) -> tuple[float | None, float | None]:
    if not isinstance(raw, bytes | str):
        return None, None
    text = raw.decode() if isinstance(raw, bytes) else raw
    rate, _, at = text.partition("|")
    try:
        return float(rate), float(at)
    except ValueError:
        return None, None
