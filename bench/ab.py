"""A/B: one benchmark run in turns against two source trees, here and another commit.

    .venv/bin/python -m bench.ab --base 00b186e [--rounds 3] [-- bench.throughput args]

The other commit is checked out in a temporary git worktree; each round runs
`python -m <module> --rounds 1 <args>` first in one tree, then in the other (the order
alternates), with the same venv and each tree first on PYTHONPATH, so the two are
measured on the same machine in the same minutes. Every line the module prints that
starts with "  median " is kept, and the medians of those figures over the rounds are
printed side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"(\d+(?:\.\d+)?)")


def _run(tree: Path, module: str, args: list[str]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-m", module, "--rounds", "1", *args], cwd=tree, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line for line in done.stdout.splitlines() if line.startswith("  median ")]


def _figures(line: str) -> tuple[str, list[float]]:
    label, _, rest = line.partition(":")
    return label.strip(), [float(n) for n in NUMBER.findall(rest)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--module", default="bench.throughput")
    parser.add_argument("args", nargs="*", help="passed to the module (after --)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="phonebatch-ab-") as tmp:
        base = Path(tmp) / "base"
        git = shutil.which("git") or "git"
        subprocess.run(
            [git, "worktree", "add", "--detach", str(base), options.base],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            trees = {f"base {options.base}": base, "this tree": ROOT}
            seen: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
            for n in range(options.rounds):
                order = list(trees.items())
                for name, tree in order if n % 2 == 0 else reversed(order):
                    for line in _run(tree, options.module, options.args):
                        label, numbers = _figures(line)
                        seen[(label, name)].append(numbers)
                        print(f"round {n + 1} {name:<16} {line.strip()}", flush=True)
        finally:
            subprocess.run(
                [git, "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False,
                capture_output=True,
            )  # fmt: skip
    print(f"\nmedians of {options.rounds} rounds")
    for (label, name), runs in sorted(seen.items()):
        medians = [statistics.median(column) for column in zip(*runs, strict=False)]
        shown = ", ".join(f"{m:g}" for m in medians)
        print(f"  {label:<45} {name:<16} {shown}")


if __name__ == "__main__":
    main()
