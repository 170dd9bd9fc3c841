"""The simulator's fault injection: seeded, so a run repeats; each fault as configured."""

from __future__ import annotations

from collections import Counter

import pytest

from simulator.faults import Fault, FaultConfig, FaultInjector, TokenBucket


def test_token_bucket_allows_the_rate_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=10, burst=2)
    assert [bucket.take(0.0), bucket.take(0.0)] == [0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0
    assert bucket.take(5.0) == 0.0 and bucket.take(5.0) == 0.0  # refilled to the burst only
    assert bucket.take(5.0) > 0


def test_probabilities_and_seed() -> None:
    config = FaultConfig(p429=0.15, p5xx=0.10, p_hang=0.03, p_drop=0.02, seed=4)
    injector = FaultInjector(config)
    faults = Counter(injector.decide("n", 0.0).fault for _ in range(20_000))
    assert faults[Fault.RANDOM_429] / 20_000 == pytest.approx(0.15, abs=0.01)
    assert faults[Fault.SERVER_ERROR] / 20_000 == pytest.approx(0.10, abs=0.01)
    assert faults[Fault.HANG] / 20_000 == pytest.approx(0.03, abs=0.005)
    assert faults[Fault.DROP] / 20_000 == pytest.approx(0.02, abs=0.005)
    first, second = FaultInjector(config), FaultInjector(config)
    assert [first.decide("n", 0.0) for _ in range(50)] == [
        second.decide("n", 0.0) for _ in range(50)
    ]


def test_missing_ids_auth_and_rate_limit() -> None:
    assert FaultInjector(FaultConfig(always_404=["x"])).decide("x", 0).status == 404
    assert FaultInjector(FaultConfig(fail_auth=True)).decide("y", 0).status == 401
    limited = FaultInjector(FaultConfig(rate_limit=2, rate_burst=1))
    assert limited.decide("a", 0.0).fault is None
    throttled = limited.decide("a", 0.1)
    assert (throttled.status, throttled.retry_after) == (429, 1)
    hang = FaultInjector(FaultConfig(p_hang=1.0, hang_seconds=9, latency_ms=100)).decide("a", 0)
    assert hang.fault is Fault.HANG and hang.delay == pytest.approx(9.1)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="p_500"):
        FaultConfig.from_dict({"p_500": 0.1})
