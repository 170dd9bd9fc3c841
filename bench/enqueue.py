"""Submitting 100,000 rows: wall time and peak memory of `phonebatch submit`, against a
bare reference measured in the same run (csv parse + json dumps + pipelined Redis push
of the same rows: bench/bare_enqueue.py).

    .venv/bin/python -m bench.enqueue

Goals: our time <= 3x the reference's; our peak resident memory <= 150 MB.
Needs /usr/bin/time (Debian's `time` package) for the peak memory.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.stack import local_stack
from jobs.queue.priority import queue_keys, queue_length

ROWS = 100_000
PROVIDERS = ("byo-phone-number", "twilio", "vonage", "vapi", "telnyx")


def write_rows(path: Path, rows: int = ROWS) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "provider", "assistantId", "name", "server.url"])
        for i in range(rows):
            writer.writerow([
                f"00000000-0000-4000-8000-{i:012d}", PROVIDERS[i % 5], "asst_new",
                f"Line {i}", "https://hooks.example.com/vapi",
            ])  # fmt: skip


def measured(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one command, from /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", report.name, *argv],
            env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        wall, peak_kb = report.read().split()[-2:]
    return float(wall), int(peak_kb) / 1024


def main() -> None:
    with local_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_rows(path)
        env = {"REDIS_URL": stack.redis_url, "PHONEBATCH_QUEUE": "bench-enqueue"}
        bare_time, bare_peak = measured(
            [sys.executable, "-m", "bench.bare_enqueue", str(path), stack.redis_url, "bare"], env
        )
        print(f"enqueue: {ROWS:,} rows of CSV")
        print(
            f"  bare reference (parse, dumps, push) : {bare_time:5.2f} s, peak {bare_peak:5.1f} MB"
        )
        # Reads on (the default), the submit notes which numbers a listing task must read
        # and queues that one task; --no-read queues one task per number, as the bare
        # reference does.
        for label, extra in (("submit", []), ("submit --no-read", ["--no-read"])):
            stack.client.delete(*queue_keys("bench-enqueue"))
            ours_time, ours_peak = measured(
                [sys.executable, "-m", "jobs.cli", "submit", str(path), "--json", *extra], env
            )
            queued = queue_length(stack.client, "bench-enqueue")
            print(
                f"  phonebatch {label:<24} : {ours_time:5.2f} s, peak {ours_peak:5.1f} MB, "
                f"{queued:,} task(s) queued"
            )
            print(
                f"    time ratio {ours_time / bare_time:.2f}x (goal <= 3x), "
                f"peak memory {ours_peak:.1f} MB (goal <= 150 MB)"
            )


if __name__ == "__main__":
    main()
