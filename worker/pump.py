"""Daemon threads in a worker that run one small job at a fixed interval until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from jobs.queue.deferral import Deferrals

log = logging.getLogger(__name__)


class Pump:
    """A daemon thread that calls `tick` every `interval` seconds until stopped."""

    def __init__(self, name: str, tick: Callable[[], None], interval: float) -> None:
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def name(self) -> str:
        return self._thread.name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except Exception:  # keep the pump alive; the next tick tries again
                log.exception("%s", self._thread.name)


def deferral_pump(deferrals: Deferrals, interval: float = 0.2) -> Pump:
    """Puts due items back on the queue, in every worker."""

    def tick() -> None:
        try:
            while deferrals.release_due() >= 500:
                pass
        except redis.RedisError as exc:  # Redis restarting: try again next tick
            log.warning("could not move deferred items back to the queue: %s", exc)

    return Pump("phonebatch-deferrals", tick, interval)
