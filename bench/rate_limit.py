"""How well the global rate limit holds, as the simulator sees it.

    .venv/bin/python -m bench.rate_limit

1. Two worker processes (concurrency 8 each), PHONEBATCH_RATE_LIMIT=20, 300 numbers:
   the most requests in any sliding 1-second window, utilization (achieved rate / limit),
   and 429s (none are expected: the simulator has no limit of its own here).
2. The simulator limited to 10/s (a token bucket, burst 5), ours still set to 20/s:
   achieved rate / 10 and the share of requests answered 429.
"""

from __future__ import annotations

from typing import Any

from bench.stack import Stack, local_stack
from simulator.stats import most_in_one_second


def _run(stack: Stack, count: int, **faults: Any) -> tuple[list[dict[str, Any]], float]:
    numbers = stack.reset_simulator(count, seed=7, **faults)
    with stack.workers(2, 8, PHONEBATCH_RATE_LIMIT="20") as queue:
        batch_id = stack.submit(numbers, queue, "asst_bench")
        final = stack.wait(batch_id)
    assert final.counts.succeeded == count, final
    log = stack.requests()  # every request counts against the limit: reads and updates
    ok = sorted(r["at"] for r in log if r["status"] == 200)
    rate = (len(ok) - 1) / (ok[-1] - ok[0])
    return log, rate


def main() -> None:
    with local_stack() as stack:
        log, rate = _run(stack, 300)
        stamps = [r["at"] for r in log]
        print("limit 20/s, 2 workers x 8, 300 numbers, simulator without a limit")
        print(f"  most requests in any 1 s window : {most_in_one_second(stamps)} (goal <= 21)")
        print(f"  achieved rate                   : {rate:.2f}/s")
        print(f"  utilization (rate / 20)         : {rate / 20:.3f} (goal >= 0.97)")
        print(f"  429 answers                     : {sum(r['status'] == 429 for r in log)}")

        log, rate = _run(stack, 300, rate_limit=10, rate_burst=5)
        throttled = sum(r["status"] == 429 for r in log)
        print("simulator limited to 10/s (burst 5), ours set to 20/s, 300 numbers")
        print(f"  achieved rate                   : {rate:.2f}/s")
        print(f"  achieved / 10                   : {rate / 10:.3f} (goal >= 0.85)")
        print(f"  answered 429                    : {throttled} of {len(log)} = "
              f"{throttled / len(log):.1%} (goal <= 5%)")  # fmt: skip


if __name__ == "__main__":
    main()
