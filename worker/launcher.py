"""`phonebatch worker --processes N`: N Celery worker processes under one command.

A PATCH mostly waits on the network, but everything around it (Celery's consumer, the
Redis bookkeeping, httpx) is Python: one process is held to one core by its GIL, and
threads past a handful fight over it. Several processes with a few threads each use
every core (docs/performance.md, "Choosing the execution model", has the measurements).

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
    dying soon after starting, back to `first` once it ran `settle` seconds. After
    `give_up_after` quick deaths in a row something is wrong that restarts will not fix
    (a bad option, a missing setting): `hopeless` says so."""

    first: float = 1.0
    cap: float = 30.0
    settle: float = 60.0
    give_up_after: int = 5
    _next: float = field(default=0.0, init=False)
    _quick_deaths: int = field(default=0, init=False)

    def after_exit(self, ran_for: float) -> float:
        if ran_for >= self.settle or self._next == 0.0:
            self._next = self.first
        else:
            self._next = min(self.cap, self._next * 2)
        self._quick_deaths = 0 if ran_for >= self.settle else self._quick_deaths + 1
        return self._next

    @property
    def hopeless(self) -> bool:
        return self._quick_deaths >= self.give_up_after


def _dies_with(parent: int) -> Callable[[], None]:
    def arrange() -> None:
        # A launcher killed outright (SIGKILL, OOM) must not leave its workers running
        # unsupervised: Linux sends them SIGTERM, a warm shutdown.
        if sys.platform == "linux":
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return arrange


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
    """Runs the worker processes: starts them, restarts one that dies, stops them on a signal."""

    def __init__(
        self,
        slots: Sequence[tuple[list[str], dict[str, str]]],
        *,
        clock: Callable[[], float] = time.monotonic,
        poll: float = 0.5,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._slots = [
            _Slot(i, argv, env, backoff=backoff()) for i, (argv, env) in enumerate(slots)
        ]
        self._clock = clock
        self._poll = poll
        self._stopping = False

    def run(self) -> int:
        """Run until a signal asks to stop; the exit code is 0 unless a process failed
        to stop cleanly, or kept dying at start (then 1)."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                if self._stopping:
                    break
                self._start(slot)
            hopeless = False
            while not self._stopping and not hopeless:
                hopeless = self._tend()
                time.sleep(self._poll)
            code = self._wait_all()
            return 1 if hopeless else code
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
        slot.process = subprocess.Popen(slot.argv, env=slot.env, preexec_fn=_dies_with(os.getpid()))
        slot.started = self._clock()
        slot.restart_at = None

    def _tend(self) -> bool:
        """Restart what died; True when a process keeps dying at start."""
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
            if slot.backoff.hopeless:
                log.error(
                    "worker process %d exited with code %s %d times in a row right after "
                    "starting; stopping (its output above says why)",
                    slot.index, code, slot.backoff.give_up_after,
                )  # fmt: skip
                slot.restart_at = now  # not running: nothing to wait for
                return True
            log.warning(
                "worker process %d exited with code %s; starting it again in %.0f s",
                slot.index, code, delay,
            )  # fmt: skip
            slot.restart_at = now + delay
        return False

    def _wait_all(self) -> int:
        # Every live process, started before or after the signal, gets its SIGTERM
        # (twice is harmless: Celery's warm shutdown is already under way).
        live = [s.process for s in self._slots if s.process is not None and s.restart_at is None]
        for process in live:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        worst = 0
        for process in live:
            code = process.wait()
            # A warm shutdown ends with 0; Ctrl-C's own SIGINT makes Celery exit with 1.
            clean = code in (0, 1, -signal.SIGTERM, -signal.SIGINT)
            worst = worst or (0 if clean else code)
        return worst
