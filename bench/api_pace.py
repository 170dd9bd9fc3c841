"""How close to an API's own rate limit phonebatch gets, beside Vapi's official SDK.

    .venv/bin/python -m bench.api_pace [--rounds 3] [--modes sliding,fixed] [--numbers 300]

Needs the bench extra (`make bench`, or `.venv/bin/pip install -c constraints.txt -e
'.[dev,bench]'`). One private stack (bench.stack.local_stack); the simulator answers
after 20 ms and accepts L = 10 requests/s, counted in each of its four ways
(`rate_limit_mode`: "sliding", "fixed", "bucket-burst", "bucket" with no burst). For
each mode, in every round:

(a) phonebatch, reads on (the default: it reads the numbers, then PATCHes those that
    differ), PHONEBATCH_RATE_LIMIT=20 (above L, so the API's 429s must slow it), two
    worker commands of 8 threads (as bench.rate_limit);
(b) the same with PHONEBATCH_RATE_LIMIT absent from the workers' environment (the
    rate learner's "auto"; before it, the setting's default);
(c) the peer: a sequential loop over Vapi's official Python SDK, one
    `client.phone_numbers.update(id, request=...)` per number (assistantId to a new
    value), with the SDK's documented default of 2 retries. A number whose call still
    raises after them is not changed.

Every figure comes from the simulator's request log, the same way for both sides:
numbers changed/s = numbers whose final state has the new assistantId ÷ (the last
accepted PATCH - the first request logged); accepted requests/s ÷ L; the share of
requests answered 429; requests per number (all requests logged ÷ numbers); the most
requests in any 1-s window. Medians of `--rounds` rounds.

Then, without a server limit (20 ms latency, PHONEBATCH_RATE_LIMIT=20):
(d) 300 numbers: numbers/s and the most requests in any 1-s window (reads on; and, for
    comparison, `--no-read`, one request per number);
(e) 400 numbers: `phonebatch cancel` once 60 items are done: PATCHes that arrived after
    the command returned, and the latest of them; then `phonebatch pause`, PATCHes more
    than 0.2 s after it returned, `phonebatch continue`, and whether every item was
    counted once and which numbers were PATCHed twice. Both run as a user runs them: the
    CLI in a subprocess against the stack's Redis.

The SDK's retries, read in the installed `vapi/core/http_client.py` (vapi-server-sdk
1.9.0, the newest release that installs beside our pydantic-core: 1.9.1, 1.11.1 and
3.0.0 want pydantic-core < 2.44): `HttpClient.request` retries 429, 408, 409 and every
5xx, sleeping for `Retry-After` when it is given and at most 30 s (else 0.5 s × 2^n
with jitter), but its recursion counter `retries` starts at 2 and it retries only while
`max_retries > retries`, with `max_retries` 0 unless request_options give one. So as
installed it never retries (max_retries=N gives N - 2 retries: fern-api/fern#17337,
fixed in Fern's generator by fern-api/fern#11227; vapi-server-sdk 3.0.0 starts the
counter at 0, defaults to 2 retries and honours Retry-After up to 60 s). This script
gives the SDK the 2 retries it documents: it reads where the installed counter starts
and asks for that many more (`--sdk-retries 0` runs 1.9.0 as it is installed). The
update DTOs of 1.9.0 have no `provider`, which the API's schema requires (the simulator
answers 400 without it); they take extra fields, so the loop passes
`provider=` to the DTO of the number's provider.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench.stack import API_KEY, Stack, local_stack, settle, wait_for_done
from jobs.operations.producer import BatchOptions
from jobs.store.interface import BatchStatus
from jobs.store.redis_store import RedisReportStore
from simulator.stats import most_in_one_second

try:
    from vapi import (
        UpdateByoPhoneNumberDto,
        UpdateTelnyxPhoneNumberDto,
        UpdateTwilioPhoneNumberDto,
        UpdateVapiPhoneNumberDto,
        UpdateVonagePhoneNumberDto,
        Vapi,
    )
    from vapi.core.api_error import ApiError
    from vapi.core.http_client import HttpClient
except ImportError as exc:  # pragma: no cover - a message, not a traceback
    raise SystemExit(
        "bench.api_pace needs the bench extra: make bench, or "
        ".venv/bin/pip install -c constraints.txt -e '.[dev,bench]'"
    ) from exc

LIMIT, LATENCY_MS = 10, 20  # the API's limit (requests/s) and its answer time
OURS_LIMIT = "20"  # PHONEBATCH_RATE_LIMIT for (a), (d), (e): above the API's limit in (a)
MODES = ("sliding", "fixed", "bucket-burst", "bucket")
SEED = 11
OURS_TARGET, SDK_TARGET = "asst_bench", "asst_sdk"  # the numbers start at asst_initial
DTOS: dict[str, Any] = {
    "byo-phone-number": UpdateByoPhoneNumberDto,
    "twilio": UpdateTwilioPhoneNumberDto,
    "vonage": UpdateVonagePhoneNumberDto,
    "vapi": UpdateVapiPhoneNumberDto,
    "telnyx": UpdateTelnyxPhoneNumberDto,
}
# Goals for (a)/(b): issue 12's, for every kind of server limit.
UTILIZATION_GOAL, THROTTLED_GOAL, PER_NUMBER_GOAL = 0.9, 0.03, 1.05
STEADY_RATE_GOAL, STEADY_WINDOW_GOAL, STOP_GOAL = 19, 21, 0.2


@dataclass(frozen=True)
class Pace:
    """One run as the simulator saw it."""

    numbers: int
    changed: int
    wall: float  # first request logged -> last accepted PATCH
    requests: int
    accepted: int
    throttled: int
    most_in_1s: int
    failed: int  # ours: items failed; the SDK: calls that raised after their retries

    @property
    def per_second(self) -> float:
        return self.changed / self.wall if self.wall > 0 else 0.0

    @property
    def utilization(self) -> float:
        """Accepted requests/s ÷ L."""
        return (self.accepted - 1) / self.wall / LIMIT if self.wall > 0 else 0.0

    @property
    def share_429(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0

    @property
    def per_number(self) -> float:
        return self.requests / self.numbers


def measure(stack: Stack, numbers: Sequence[dict[str, Any]], target: str, failed: int) -> Pace:
    log = stack.requests()
    now = stack.numbers_now()
    changed = sum(now[n["id"]].get("assistantId") == target for n in numbers)
    stamps = sorted(r["at"] for r in log)
    accepted_patches = [r["at"] for r in log if r["method"] == "PATCH" and r["status"] == 200]
    wall = max(accepted_patches) - stamps[0] if accepted_patches else 0.0
    return Pace(
        numbers=len(numbers),
        changed=changed,
        wall=wall,
        requests=len(log),
        accepted=sum(r["status"] == 200 for r in log),
        throttled=sum(r["status"] == 429 for r in log),
        most_in_1s=most_in_one_second(stamps),
        failed=failed,
    )


def _wait(stack: Stack, batch_id: str, count: int) -> BatchStatus:
    # Generous: at 10/s, two requests a number and a 429's pause now and then.
    return stack.wait(batch_id, timeout=max(600.0, count * 3.0))


def ours(
    stack: Stack, count: int, limit: str | None, faults: dict[str, Any], read_first: bool = True
) -> Pace:
    """One batch, two worker commands (8 threads each) started after the reset: a cold
    start, nothing learned. `limit` None: PHONEBATCH_RATE_LIMIT unset."""
    numbers = stack.reset_simulator(count, seed=SEED, **faults)
    with stack.workers(2, 8, PHONEBATCH_RATE_LIMIT=limit) as queue:
        options = None if read_first else BatchOptions(read_first=False)
        batch_id = stack.submit(numbers, queue, OURS_TARGET, options)
        final = _wait(stack, batch_id, count)
    return measure(stack, numbers, OURS_TARGET, failed=final.counts.failed)


SDK_RETRIES = 2  # what Fern documents as the default, and what fixed SDKs do


def sdk_options(provider: str, retries: int) -> dict[str, Any]:
    """request_options that make the installed SDK retry `retries` times."""
    # An internal of the generated client: if it is not there (another generator's
    # output), take the SDK at its word and let it count from 0, as its docs say.
    counter = inspect.signature(HttpClient.request).parameters.get("retries")
    counter_start = (
        counter.default if counter is not None and isinstance(counter.default, int) else 0
    )
    if counter_start == 0 and retries == SDK_RETRIES:
        return {}  # a fixed SDK: its own default
    return {"max_retries": counter_start + retries}


def sdk_loop(stack: Stack, count: int, retries: int, faults: dict[str, Any]) -> Pace:
    numbers = stack.reset_simulator(count, seed=SEED, **faults)
    client = Vapi(token=API_KEY, base_url=stack.sim_url)
    raised = 0
    for number in numbers:
        provider = number["provider"]
        request = DTOS[provider](assistant_id=SDK_TARGET, provider=provider)
        try:
            client.phone_numbers.update(
                number["id"], request=request, request_options=sdk_options(provider, retries)
            )
        except (ApiError, httpx.HTTPError):
            raised += 1
    return measure(stack, numbers, SDK_TARGET, failed=raised)


def _line(name: str, pace: Pace) -> str:
    failed = "raised" if name.startswith("Vapi") else "failed"
    return (
        f"{name:<22} {pace.per_second:6.2f} numbers/s ({pace.changed}/{pace.numbers} changed)"
        f"  accepted/L {pace.utilization:5.3f}  429 {pace.share_429:6.1%}"
        f"  req/number {pace.per_number:5.2f}  most in 1 s {pace.most_in_1s:3d}"
        f"  {failed} {pace.failed}"
    )


@dataclass(frozen=True)
class Medians:
    """The medians of one side's rounds, figure by figure."""

    per_second: float
    utilization: float
    share_429: float
    per_number: float
    most_in_1s: float
    changed: float
    numbers: int

    @classmethod
    def of(cls, runs: Sequence[Pace]) -> Medians:
        def median(read: Callable[[Pace], float]) -> float:
            return statistics.median(read(r) for r in runs)

        return cls(
            per_second=median(lambda r: r.per_second),
            utilization=median(lambda r: r.utilization),
            share_429=median(lambda r: r.share_429),
            per_number=median(lambda r: r.per_number),
            most_in_1s=median(lambda r: r.most_in_1s),
            changed=median(lambda r: r.changed),
            numbers=runs[0].numbers,
        )


SIDES = (
    ("ours", f"phonebatch, limit {OURS_LIMIT}"),
    ("auto", "phonebatch, limit unset"),
    ("sdk", "Vapi SDK loop"),
)


def mode_faults(stack: Stack, mode: str) -> dict[str, Any] | None:
    """The simulator's settings for `mode`; None if this simulator cannot count that way."""
    faults: dict[str, Any] = {"rate_limit": LIMIT, "latency_ms": LATENCY_MS}
    if "rate_limit_mode" in stack.fault_settings():
        return faults | {"rate_limit_mode": mode}
    return faults if mode == "bucket" else None  # before the modes: a bucket of burst 1


def _run_side(stack: Stack, side: str, count: int, retries: int, faults: dict[str, Any]) -> Pace:
    if side == "sdk":
        return sdk_loop(stack, count, retries, faults)
    return ours(stack, count, OURS_LIMIT if side == "ours" else None, faults)


def pace(
    stack: Stack, modes: Sequence[str], rounds: int, count: int, retries: int
) -> dict[str, dict[str, Medians]]:
    faults = {m: mode_faults(stack, m) for m in modes}
    for mode in [m for m in modes if faults[m] is None]:
        print(f"mode {mode}: this simulator has no rate_limit_mode yet, skipped")
    modes = [m for m in modes if faults[m] is not None]
    runs: dict[str, dict[str, list[Pace]]] = {m: {s: [] for s, _ in SIDES} for m in modes}
    for round_number in range(1, rounds + 1):
        for mode in modes:
            print(
                f"round {round_number}, mode {mode} (L = {LIMIT}/s, {LATENCY_MS} ms, {count} numbers)"
            )
            # Ours and the SDK in turns: the VM's swings hit both alike.
            for side in ("ours", "sdk", "auto"):
                runs[mode][side].append(_run_side(stack, side, count, retries, faults[mode] or {}))
                print("  " + _line(dict(SIDES)[side], runs[mode][side][-1]))
    medians = {m: {s: Medians.of(r) for s, r in by_side.items()} for m, by_side in runs.items()}
    for mode, by_side in medians.items():
        print(f"mode {mode}: medians of {rounds} rounds")
        for side, name in SIDES:
            m = by_side[side]
            goals = side != "sdk"
            print(
                f"  {name:<26}: {m.per_second:6.2f} numbers/s"
                f" ({m.changed:.0f}/{m.numbers} changed{', goal all' if goals else ''})"
            )
            print(
                f"  {'':<26}  accepted/L {m.utilization:.3f}"
                f"{f' (goal >= {UTILIZATION_GOAL})' if goals else ''}"
                f", 429 {m.share_429:.1%}{f' (goal <= {THROTTLED_GOAL:.0%})' if goals else ''}"
                f", {m.per_number:.2f} requests/number"
                f"{f' (goal <= {PER_NUMBER_GOAL})' if goals else ''}"
                f", most in 1 s {m.most_in_1s:.0f}"
            )
        sdk = by_side["sdk"].per_second
        if sdk > 0:
            print(
                f"  numbers/s ours ÷ SDK loop: {by_side['ours'].per_second / sdk:.2f} (limit "
                f"{OURS_LIMIT}), {by_side['auto'].per_second / sdk:.2f} (unset)"
            )
    return medians


def steady(stack: Stack) -> list[tuple[str, Pace]]:
    """(d): no server limit, ours at 20/s."""
    found = []
    print(f"(d) no server limit, PHONEBATCH_RATE_LIMIT={OURS_LIMIT}, 300 numbers, {LATENCY_MS} ms")
    for name, read_first in (("reads on (default)", True), ("--no-read", False)):
        run = ours(stack, 300, OURS_LIMIT, {"latency_ms": LATENCY_MS}, read_first=read_first)
        found.append((name, run))
        requests_per_s = (run.requests - 1) / run.wall if run.wall > 0 else 0.0
        print(
            f"  {name:<19}: {run.per_second:6.2f} numbers/s (goal >= {STEADY_RATE_GOAL}),"
            f" {requests_per_s:6.2f} requests/s, most in any 1 s {run.most_in_1s}"
            f" (goal <= {STEADY_WINDOW_GOAL}), {run.changed}/{run.numbers} changed"
        )
    return found


def _cli(stack: Stack, queue: str, *args: str) -> tuple[float, float]:
    """Runs `phonebatch ARGS`; the wall times (time.time()) when it began and returned."""
    began = time.time()
    done = stack.cli(*args, queue=queue)
    returned = time.time()
    outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}"
    print(f"  phonebatch {' '.join(args[:1])}: {outcome} after {returned - began:.2f} s")
    if done.returncode != 0:
        print("    " + (done.stderr or done.stdout).strip().replace("\n", "\n    "))
    return began, returned


@dataclass(frozen=True)
class Stop:
    """How a cancel or a pause held: PATCHes after the command returned, and how late."""

    name: str
    after: int  # PATCHes that arrived after the command returned
    late: int  # of them, more than 0.2 s after
    latest: float  # the latest arrival minus the return time (0 if none)
    counted: str | None = None  # pause: items counted after `continue`, of all
    twice: int | None = None  # pause: numbers PATCHed (accepted) more than once


def _stop_figures(
    name: str, log: list[dict[str, Any]], began: float, returned: float, until: float
) -> Stop:
    during = sum(r["method"] == "PATCH" and began < r["at"] <= returned for r in log)
    after = [
        r["at"] - returned for r in log if r["method"] == "PATCH" and returned < r["at"] < until
    ]
    stop = Stop(name, len(after), sum(a > STOP_GOAL for a in after), max(after, default=0.0))
    print(
        f"  PATCHes after {name} returned: {stop.after}, {stop.late} of them later than "
        f"{STOP_GOAL} s (goal 0); latest +{stop.latest:.3f} s; while it ran: {during}"
    )
    return stop


def stopping(stack: Stack) -> list[Stop]:
    """(e): cancel, then pause and continue, each once 60 items are done."""
    found: list[Stop] = []
    count, done_before = 400, 60
    store = RedisReportStore(stack.client, retention_seconds=3600)
    print(
        f"(e) cancel: {count} numbers, no server limit, limit {OURS_LIMIT}, at {done_before} done"
    )
    numbers = stack.reset_simulator(count, seed=SEED, latency_ms=LATENCY_MS)
    with stack.workers(2, 8, PHONEBATCH_RATE_LIMIT=OURS_LIMIT) as queue:
        batch_id = stack.submit(numbers, queue, OURS_TARGET)
        wait_for_done(store, batch_id, done_before, timeout=120)
        began, returned = _cli(stack, queue, "cancel", batch_id)
        final = settle(store, batch_id)
    found.append(_stop_figures("cancel", stack.requests(), began, returned, float("inf")))
    if final is not None:
        print(f"  final: {final.state.value}, {final.counts.as_dict()}")

    if stack.cli("pause", "--help").returncode != 0:
        print("pause: not available")
        return found
    print(f"(e) pause and continue: {count} numbers, at {done_before} done, paused 2 s")
    numbers = stack.reset_simulator(count, seed=SEED, latency_ms=LATENCY_MS)
    with stack.workers(2, 8, PHONEBATCH_RATE_LIMIT=OURS_LIMIT) as queue:
        batch_id = stack.submit(numbers, queue, OURS_TARGET)
        wait_for_done(store, batch_id, done_before, timeout=120)
        began, returned = _cli(stack, queue, "pause", batch_id)
        time.sleep(2.0)
        continued = time.time()
        resumed = stack.cli("continue", batch_id, queue=queue).returncode == 0
        print(f"  phonebatch continue: {'ok' if resumed else 'failed'}")
        final = settle(store, batch_id, timeout=300) if resumed else store.status(batch_id)
    log = stack.requests()
    paused = _stop_figures("pause", log, began, returned, continued)
    counted = 0
    if final is not None:
        c = final.counts
        counted = c.succeeded + c.skipped
        print(
            f"  final: {final.state.value}, succeeded {c.succeeded} + skipped {c.skipped} = "
            f"{counted} of {c.total} (goal: all){'' if counted == c.total else '  ✗'}"
        )
    patched = Counter(r["id"] for r in log if r["method"] == "PATCH" and r["status"] == 200)
    twice = sum(n > 1 for n in patched.values())
    print(f"  numbers PATCHed (accepted) more than once: {twice} (goal 0)")
    found.append(dataclasses.replace(paused, counted=f"{counted}/{count}", twice=twice))
    return found


def markdown(
    medians: dict[str, dict[str, Medians]], rounds: int, count: int,
    steady_runs: list[tuple[str, Pace]], stops: list[Stop],
) -> str:  # fmt: skip
    lines: list[str] = []
    if medians:
        lines += [
            f"L = {LIMIT}/s, {LATENCY_MS} ms latency, {count} numbers, medians of {rounds} "
            "rounds; phonebatch with reads on (the default), two workers × 8 threads.",
            "",
            "| server limit | client | numbers changed/s | accepted/s ÷ L | answered 429 "
            "| requests/number | most in 1 s |",
            "|---|---|---|---|---|---|---|",
        ]
    for mode, by_side in medians.items():
        for side, name in SIDES:
            m = by_side[side]
            lines.append(
                f"| {mode} | {name} | {m.per_second:.2f} ({m.changed:.0f}/{m.numbers}) "
                f"| {m.utilization:.3f} | {m.share_429:.1%} | {m.per_number:.2f} "
                f"| {m.most_in_1s:.0f} |"
            )
    if steady_runs or stops:
        if lines:
            lines.append("")
        lines += ["| no server limit, phonebatch at 20/s | measured | goal |", "|---|---|---|"]
    for name, run in steady_runs:
        lines.append(
            f"| 300 numbers, {name}: numbers/s, most requests in 1 s "
            f"| {run.per_second:.2f}, {run.most_in_1s} "
            f"| ≥ {STEADY_RATE_GOAL}, ≤ {STEADY_WINDOW_GOAL} |"
        )
    for stop in stops:
        what = f"| 400 numbers, `{stop.name}` at 60 done: PATCHes after it returned, latest"
        measured = f"{stop.after}, +{stop.latest:.3f} s"
        goal = f"none later than {STOP_GOAL} s"
        if stop.counted is not None:
            what += "; after `continue`: items counted, numbers PATCHed twice"
            measured += f"; {stop.counted}, {stop.twice}"
            goal += "; all, 0"
        lines.append(f"{what} | {measured} | {goal} |")
    return "\n".join(lines)


SCENARIOS = ("pace", "steady", "stop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--numbers", type=int, default=300, help="for (a)-(c)")
    parser.add_argument("--sdk-retries", type=int, default=SDK_RETRIES)
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS),
        help="pace: (a)-(c), steady: (d), stop: (e); comma-separated",
    )  # fmt: skip
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [m for m in modes if m not in MODES] + [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    medians: dict[str, dict[str, Medians]] = {}
    steady_runs: list[tuple[str, Pace]] = []
    stops: list[Stop] = []
    with local_stack() as stack:
        if "pace" in scenarios:
            medians = pace(stack, modes, args.rounds, args.numbers, args.sdk_retries)
        if "steady" in scenarios:
            steady_runs = steady(stack)
        if "stop" in scenarios:
            stops = stopping(stack)
    print()
    print(markdown(medians, args.rounds, args.numbers, steady_runs, stops))


if __name__ == "__main__":
    main()
