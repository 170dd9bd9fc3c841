"""Does each change of worker/broker.py still pay for reaching into kombu's internals?

    .venv/bin/python -m bench.transport [--rounds 3] [--numbers 2000]

bench.throughput's scenario (the simulator answering after 50 ms, the default
`phonebatch worker`, PHONEBATCH_RATE_LIMIT=0, reads on), run in turns with the workers'
transport as:

- ours: worker/broker.py as it is;
- without 1: no client kept per pool (kombu builds a redis.Redis per delivery and ack);
- without 2: no settling in the record script (kombu acks every message itself);
- without 3: no pop-and-note script (kombu's BRPOP, then its MULTI of ZADD and HSET);
- kombu: kombu's own transport (PHONEBATCH_BROKER_TRANSPORT=kombu).

A change is taken away by a `sitecustomize` on the workers' PYTHONPATH that puts kombu's
own method back before the worker starts: bench-only, the product has no such switches.
Prints numbers/s and worker CPU per number for each, medians of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.stack import local_stack
from bench.throughput import LATENCY_MS, Run, _ours

VARIANTS: dict[str, tuple[str | None, dict[str, str]]] = {
    "ours": (None, {}),
    "without 1 (a client per pool)": (
        "b.Channel._create_client = b.kombu_redis.Channel._create_client",
        {},
    ),
    "without 2 (settled by the record)": ("b.receipt_for = lambda task_id: None", {}),
    "without 3 (pop and note at once)": (
        "b.Channel._pops_atomically = lambda self, queues: False",
        {},
    ),
    "kombu's own transport": (None, {"PHONEBATCH_BROKER_TRANSPORT": "kombu"}),
}


def _site(directory: Path, patch: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(f"import worker.broker as b\n\n{patch}\n")
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--numbers", type=int, default=2000)
    args = parser.parse_args()
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    before = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp, local_stack() as stack:
        print(f"{args.numbers:,} numbers, {LATENCY_MS} ms latency, reads on, no rate limit")
        for n in range(1, args.rounds + 1):
            for i, (name, (patch, env)) in enumerate(VARIANTS.items()):
                paths = [before.get("PYTHONPATH", "")]
                if patch:
                    paths.insert(0, _site(Path(tmp) / str(i), patch))
                os.environ.update({"PYTHONPATH": os.pathsep.join(p for p in paths if p), **env})
                try:
                    numbers = stack.reset_simulator(args.numbers, seed=3, latency_ms=LATENCY_MS)
                    run = _ours(stack, numbers, None)
                finally:
                    os.environ.clear()
                    os.environ.update(before)
                runs[name].append(run)
                print(f"  round {n} {name:<36} {run.rate:7.1f}/s {run.cpu_ms:5.2f} ms CPU/number")
    print(f"\nmedians of {args.rounds} rounds")
    for name, done in runs.items():
        rate = statistics.median(r.rate for r in done)
        cpu = statistics.median(r.cpu_ms for r in done)
        print(f"  {name:<36} {rate:7.1f} numbers/s  {cpu:5.2f} ms worker CPU/number")


if __name__ == "__main__":
    main()
