"""The simulator's fault injection: seeded, so a run repeats; each fault as configured."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from simulator.faults import Fault, FaultConfig, FaultInjector, TokenBucket
from simulator.limits import (
    RATE_LIMIT_MODES,
    FixedWindow,
    SlidingWindow,
    make_limiter,
    window_count,
)
from simulator.state import generate_numbers
from tests.conftest import API_KEY
from tests.helpers import Simulator


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


# --- the four kinds of rate limit, on a made-up clock --------------------------------

LIMIT = 4
STEP = 1 / (2 * LIMIT)  # twice the limit; 0.125 s, exact in binary, so times add up exactly


def _drive(config: FaultConfig, times: Sequence[float]) -> list[int | None]:
    """Each request's Retry-After, None where it was accepted."""
    injector = FaultInjector(config)
    answers: list[int | None] = []
    for now in times:
        decision = injector.decide("n", now)
        assert decision.fault in (None, Fault.THROTTLED)
        answers.append(decision.retry_after)
    return answers


def _accepted(times: Sequence[float], answers: Sequence[int | None]) -> list[float]:
    return [t for t, answer in zip(times, answers, strict=True) if answer is None]


def _most_in_any_second(accepted: Sequence[float]) -> int:
    """The most accepted in any window (t - 1, t]; the busiest one ends on an acceptance."""
    return max(sum(1 for a in accepted if t - 1 < a <= t) for t in accepted)


def _seconds(first: int, last: int, offsets: Sequence[float]) -> list[float]:
    return [s + o for s in range(first, last + 1) for o in offsets]


def test_sliding_window_accepts_the_limit_in_any_second_and_only_counts_acceptances() -> None:
    times = [0.5 + i * STEP for i in range(8 * 4)]  # 0.5 .. 4.375, off the whole seconds
    answers = _drive(FaultConfig(rate_limit=LIMIT, rate_limit_mode="sliding"), times)
    accepted = _accepted(times, answers)
    # The first half of each second from 0.5 on; refused knocks never push the window on.
    assert accepted == _seconds(0, 3, [0.5, 0.625, 0.75, 0.875])
    assert _most_in_any_second(accepted) == LIMIT
    assert set(answers) == {None, 1}  # at most 1 s to wait, rounded up

    window = SlidingWindow(LIMIT)
    assert [window.take(0.5 + i * STEP) for i in range(LIMIT)] == [0.0] * LIMIT
    assert window.take(1.0) == 0.5  # until the request at 0.5 leaves the window
    assert window.take(1.375) == 0.125
    assert window.take(1.5) == 0.0  # (0.5, 1.5] no longer holds the one at 0.5


def test_sliding_window_is_not_fooled_by_a_boundary() -> None:
    window = SlidingWindow(LIMIT)
    assert [window.take(0.9) for _ in range(LIMIT)] == [0.0] * LIMIT
    assert window.take(1.1) == pytest.approx(0.8)  # a fixed window would take this one
    assert window.take(1.9) == 0.0


def test_fixed_windows_accept_the_limit_per_whole_second_in_a_burst() -> None:
    times = [0.5 + i * STEP for i in range(8 * 4)]
    answers = _drive(FaultConfig(rate_limit=LIMIT, rate_limit_mode="fixed"), times)
    accepted = _accepted(times, answers)
    # [0, 1) sees only 0.5 .. 0.875; then each window takes its first four, from its start.
    assert accepted == [0.5, 0.625, 0.75, 0.875, *_seconds(1, 4, [0.0, 0.125, 0.25, 0.375])]
    assert _most_in_any_second(accepted) == 2 * LIMIT  # across a boundary: why it exists
    assert set(answers) == {None, 1}

    window = FixedWindow(LIMIT)
    assert [window.take(2.0) for _ in range(2 * LIMIT)] == [0.0] * LIMIT + [1.0] * LIMIT
    assert window.take(2.75) == 0.25  # until 3.0
    assert window.take(3.0) == 0.0


def test_bucket_burst_saves_up_one_second_then_accepts_the_rate() -> None:
    config = FaultConfig(rate_limit=LIMIT, rate_limit_mode="bucket-burst", rate_burst=50)
    times = [0.0] * (2 * LIMIT) + [i * STEP for i in range(1, 8 * 3 + 1)] + [10.0] * 8
    answers = _drive(config, times)
    accepted = _accepted(times, answers)
    steady = [i * 0.25 for i in range(1, 4 * 3 + 1)]  # L/s: every other request
    assert accepted == [0.0] * LIMIT + steady + [10.0] * LIMIT  # refilled to L, not 50
    assert set(answers) == {None, 1}


def test_bucket_saves_up_rate_burst_which_is_one_by_default() -> None:
    times = [0.0] * (2 * LIMIT) + [i * STEP for i in range(1, 8 * 3 + 1)] + [10.0] * 8
    answers = _drive(FaultConfig(rate_limit=LIMIT), times)
    steady = [i * 0.25 for i in range(1, 4 * 3 + 1)]
    assert _accepted(times, answers) == [0.0, *steady, 10.0]
    assert set(answers) == {None, 1}
    bursty = _drive(FaultConfig(rate_limit=LIMIT, rate_limit_mode="bucket", rate_burst=3), times)
    assert _accepted(times, bursty) == [0.0] * 3 + steady + [10.0] * 3
    assert FaultConfig().rate_limit_mode == "bucket"


@pytest.mark.parametrize(
    ("mode", "retry_after"),
    [
        ("sliding", [1, 1]),  # waits of 1.0 s and 0.4 s
        ("fixed", [1, 1]),  # 0.7 s and 0.1 s, to the next whole second
        ("bucket-burst", [2, 2]),  # 2.0 s and 1.4 s for the next token at 0.5/s
        ("bucket", [2, 2]),
    ],
)
def test_retry_after_rounds_the_wait_up_and_is_at_least_one(
    mode: str, retry_after: list[int]
) -> None:
    # 0.5/s: the windows still let one a second through (a whole count, at least 1).
    answers = _drive(FaultConfig(rate_limit=0.5, rate_limit_mode=mode), [0.3, 0.3, 0.9])
    assert answers == [None, *retry_after]


def test_window_counts_are_whole_and_at_least_one() -> None:
    assert [window_count(r) for r in (10.0, 4.7, 1.0, 0.5)] == [10, 4, 1, 1]
    for mode in ("sliding", "fixed"):
        answers = _drive(FaultConfig(rate_limit=10.0, rate_limit_mode=mode), [7.0] * 11)
        assert answers.count(None) == 10
        answers = _drive(FaultConfig(rate_limit=4.7, rate_limit_mode=mode), [7.0] * 6)
        assert answers.count(None) == 4


def test_unknown_rate_limit_modes_are_refused() -> None:
    assert RATE_LIMIT_MODES == ("sliding", "fixed", "bucket-burst", "bucket")
    with pytest.raises(ValueError, match=r"rate_limit_mode must be one of .*'leaky'"):
        FaultConfig.from_dict({"rate_limit": 5, "rate_limit_mode": "leaky"})
    with pytest.raises(ValueError, match="rate_limit_mode"):
        FaultConfig(rate_limit_mode="Fixed")
    with pytest.raises(ValueError, match="rate_limit_mode"):
        make_limiter("leaky", 5, 1)
    assert FaultConfig.from_dict({"rate_limit_mode": "fixed"}).as_dict()["rate_limit_mode"] == (
        "fixed"
    )


def test_the_cli_passes_the_mode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator.app
    from jobs.cli.main import app

    served: list[Any] = []
    monkeypatch.setattr(simulator.app, "serve", lambda config, *_: served.append(config))
    args = ["simulator", "--numbers", "1", "--rate-limit", "5", "--rate-limit-mode", "fixed"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (served[0].faults.rate_limit, served[0].faults.rate_limit_mode) == (5, "fixed")
    assert CliRunner().invoke(app, ["simulator", "--rate-limit-mode", "leaky"]).exit_code == 2


def test_the_server_answers_429_with_retry_after_in_fixed_mode(simulator: Simulator) -> None:
    simulator.reset(generate_numbers(1, seed=3))
    number = next(iter(simulator.numbers()))
    refused = httpx.post(f"{simulator.url}/_sim/faults", json={"rate_limit_mode": "x"}, timeout=10)
    assert refused.status_code == 400 and "rate_limit_mode" in refused.json()["error"]
    simulator.set_faults(rate_limit=5, rate_limit_mode="fixed")
    key = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=simulator.url, headers=key, timeout=10) as client:
        answers = [client.get(f"/phone-number/{number}") for _ in range(30)]
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) == {200, 429} and statuses[200] >= 5, statuses
    assert {a.headers["Retry-After"] for a in answers if a.status_code == 429} == {"1"}
