"""The launcher's pure parts: what each process is started with, and the restart pause."""

from __future__ import annotations

import os

from worker.launcher import Backoff, child_argv, child_env, default_processes


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
