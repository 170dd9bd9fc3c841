"""Hostile inputs fail fast with flat memory: time and peak memory of `phonebatch
validate` on files built to be slow or endless, beside a plain 300-row file.

    .venv/bin/python -m bench.hostile

Each case runs the CLI in a fresh process (as a user would) and reads peak resident memory
from the kernel (`ru_maxrss` of the children: the most any child so far reached, so a
case that stays at the baseline's figure used no more than it). Prints seconds, MB, exit
code and
the first line of the error for: a 100,000-column CSV (0.9 MB), 100 MB of /dev/zero on
stdin (no newline, ever), a JSON file holding one 38 MB item, and 1,000 rows of 990
unknown columns each (validation cost is linear in the cells).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(argv: list[str], stdin: bytes | None = None) -> tuple[float, float, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *argv], input=stdin, capture_output=True, check=False
    )
    took = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    first = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[:1]
    # ru_maxrss of children is the largest any child reached: the first case sets the floor.
    return took, max(peak, before) / 1024, done.returncode, first[0][:110] if first else ""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plain = folder / "plain.csv"
        plain.write_text("id,provider,assistantId\n" + "".join(
            f"n{i},vapi,asst_1\n" for i in range(300)))  # fmt: skip
        wide = folder / "wide.csv"
        wide.write_text("id,provider," + ",".join(f"x{i}" for i in range(100_000)) + "\n")
        item = folder / "item.json"
        item.write_text(json.dumps([{"id": "n1", "provider": "vapi", "name": "x" * 38_000_000}]))
        cells = folder / "cells.csv"
        names = [f"x{i}" for i in range(990)]
        cells.write_text("id,provider," + ",".join(names) + "\n" + "".join(
            f"n{r},vapi," + ",".join("1" for _ in names) + "\n" for r in range(1000)))  # fmt: skip
        cases = [
            ("300-row plain CSV (baseline)", ["validate", str(plain)], None),
            ("100,000-column CSV, 0.9 MB", ["validate", str(wide)], None),
            ("/dev/zero on stdin, 100 MB", ["validate", "-", "--format", "jsonl"], b"\0" * 100_000_000),
            ("one 38 MB JSON item", ["validate", str(item)], None),
            ("1,000 rows x 990 unknown columns", ["validate", str(cells)], None),
        ]  # fmt: skip
        print(f"{'case':<36} {'seconds':>8} {'peak MB':>8} {'exit':>5}  first line")
        for name, argv, stdin in cases:
            took, peak, code, line = _run(argv, stdin)
            print(f"{name:<36} {took:8.2f} {peak:8.0f} {code:>5}  {line}")


if __name__ == "__main__":
    main()
