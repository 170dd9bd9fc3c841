"""Reading the simulator's request log: what a rate limit on the server would see."""

from __future__ import annotations

from collections.abc import Iterable


def most_in_one_second(stamps: Iterable[float]) -> int:
    """The most requests that arrived within any sliding 1-second window."""
    ordered = sorted(stamps)
    most, start = 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most
