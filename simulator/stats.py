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


class InFlight:
    """Requests being answered now, and the most at once since the last reset: what a
    client's concurrency looks like from the server. One event loop: no lock needed."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1

    def reset(self) -> None:
        self.peak = self.now
