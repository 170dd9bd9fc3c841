"""The launcher: what each process is started with, the restart pause, stopping."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from worker.launcher import Backoff, Supervisor, child_argv, child_env, default_processes


def test_two_processes_per_core() -> None:
    assert default_processes(2) == 4
    assert default_processes(1) == 2
    assert default_processes(0) == 2
    assert default_processes(32) == 8  # a big host: capped unless --processes says more


def test_each_process_has_its_own_node_name_and_metrics_port() -> None:
    argv = child_argv(3, concurrency=8, pool="threads", loglevel="INFO", extra=["-O", "fair"])
    assert argv[-3:] == [f"--hostname=phonebatch3-{os.getpid()}@%h", "-O", "fair"]
    assert argv[argv.index("--processes") + 1] == "1"  # a child never launches more
    assert argv[argv.index("--concurrency") + 1] == "8"
    env = child_env(3, {"REDIS_URL": "redis://r"}, metrics_port=9100)
    assert env == {"REDIS_URL": "redis://r", "PHONEBATCH_METRICS_PORT": "9103"}
    assert "PHONEBATCH_METRICS_PORT" not in child_env(3, {}, metrics_port=0)


def test_the_restart_pause_grows_while_a_process_keeps_dying() -> None:
    backoff = Backoff(first=1.0, cap=8.0, settle=60.0)
    assert [backoff.after_exit(ran_for=2.0) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.after_exit(ran_for=120.0) == 1.0  # it had run fine: start over


def test_quick_deaths_in_a_row_are_hopeless() -> None:
    backoff = Backoff(give_up_after=3)
    backoff.after_exit(ran_for=1.0)
    backoff.after_exit(ran_for=1.0)
    backoff.after_exit(ran_for=120.0)  # a good run in between clears the count
    backoff.after_exit(ran_for=1.0)
    backoff.after_exit(ran_for=1.0)
    assert not backoff.hopeless
    backoff.after_exit(ran_for=1.0)
    assert backoff.hopeless


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_process_that_keeps_dying_at_start_stops_the_launcher_with_1() -> None:
    quick = lambda: Backoff(first=0.01, cap=0.02, give_up_after=3)  # noqa: E731
    healthy = _python("import time; time.sleep(60)")
    supervisor = Supervisor(
        [(_python("raise SystemExit(3)"), {}), (healthy, {})], poll=0.01, backoff=quick
    )
    started = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - started < 30  # the healthy one was stopped, not waited out


def test_sigterm_stops_every_process_cleanly() -> None:
    # A child that, like Celery, finishes its work and exits 0 on SIGTERM.
    child = _python(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "while True: time.sleep(0.05)"
    )
    supervisor = Supervisor([(child, {}), (child, {})], poll=0.01)
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    assert supervisor.run() == 0
