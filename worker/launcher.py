"""`phonebatch worker --processes N`: N Celery worker processes under one command.

A PATCH mostly waits on the network, but everything around it (Celery's consumer, the
Redis bookkeeping, httpx) is Python: one process is held to one core by its GIL, and
threads past a handful fight over it. Several processes with a few threads each use
every core (README, "Choosing the execution model", has the measurements).

The launcher starts each process as a plain `celery worker` of its own (its own node
name and, with `PHONEBATCH_METRICS_PORT`, its own metrics port: the base port plus its
number), forwards SIGTERM/SIGINT to them for a warm shutdown, and starts again one that
dies, after a pause that grows while it keeps dying.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


MAX_DEFAULT_PROCESSES = 8


def usable_cpus() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_processes(cpus: int | None = None) -> int:
    """Two processes per core, one computing while the other's threads wait on I/O; at
    most 8 (64 requests in flight) unless asked: a big host should not start dozens of
    processes for a rate limit a few can serve."""
    count = cpus if cpus is not None else usable_cpus()
    return min(MAX_DEFAULT_PROCESSES, 2 * max(1, count))


def child_argv(
    index: int, *, concurrency: int, pool: str, loglevel: str, extra: Sequence[str]
) -> list[str]:
    return [
        sys.executable, "-m", "jobs.cli", "worker", "--processes", "1",
        "--concurrency", str(concurrency), "--pool", pool, "--loglevel", loglevel,
        # The launcher's pid too: two launchers on one host must not share node names.
        f"--hostname=phonebatch{index}-{os.getpid()}@%h", *extra,
    ]  # fmt: skip


def child_env(index: int, base: Mapping[str, str], metrics_port: int) -> dict[str, str]:
    env = dict(base)
    if metrics_port:
        env["PHONEBATCH_METRICS_PORT"] = str(metrics_port + index)
    return env


@dataclass
class Backoff:
    """How long to wait before starting a process that died: doubling while it keeps
    dying soon after starting, back to `first` once it ran `settle` seconds."""

    first: float = 1.0
    cap: float = 30.0
    settle: float = 60.0
    _next: float = field(default=0.0, init=False)

    def after_exit(self, ran_for: float) -> float:
        if ran_for >= self.settle or self._next == 0.0:
            self._next = self.first
        else:
            self._next = min(self.cap, self._next * 2)
        return self._next


def _die_with_parent() -> None:
    # A launcher killed outright (SIGKILL, OOM) must not leave its workers running
    # unsupervised: Linux sends them SIGTERM, a warm shutdown.
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Slot:
    index: int
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=Backoff)


class Supervisor:
    def __init__(
        self,
        slots: Sequence[tuple[list[str], dict[str, str]]],
        *,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.5,
    ) -> None:
        self._slots = [_Slot(i, argv, env) for i, (argv, env) in enumerate(slots)]
        self._clock = clock
        self._poll = poll
        self._stopping = False

    def run(self) -> int:
        """Run until a signal asks to stop; the exit code is 0 unless a process failed
        to stop cleanly."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._start(slot)
            while not self._stopping:
                self._tend()
                time.sleep(self._poll)
            return self._wait_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("%s: stopping %d worker processes", signal.Signals(signum).name, len(self._slots))
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)  # Celery's warm shutdown

    def _start(self, slot: _Slot) -> None:
        slot.process = subprocess.Popen(slot.argv, env=slot.env, preexec_fn=_die_with_parent)
        slot.started = self._clock()
        slot.restart_at = None

    def _tend(self) -> None:
        now = self._clock()
        for slot in self._slots:
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    self._start(slot)
                continue
            code = slot.process.poll() if slot.process is not None else 0
            if code is None:
                continue
            delay = slot.backoff.after_exit(now - slot.started)
            log.warning(
                "worker process %d exited with code %s; starting it again in %.0f s",
                slot.index, code, delay,
            )  # fmt: skip
            slot.restart_at = now + delay

    def _wait_all(self) -> int:
        worst = 0
        for slot in self._slots:
            if slot.process is None or slot.restart_at is not None:
                continue
            code = slot.process.wait()
            # A warm shutdown ends with 0; a signal's own code means it was cut short.
            worst = worst or (0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code)
        return worst
