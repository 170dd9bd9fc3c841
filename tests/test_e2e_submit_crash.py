"""A submitter killed while it writes a batch leaves nothing that is ever sent: no batch
anyone sees (status, list, workers, resume), no task, and keys that expire within the hour."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from jobs.queue.priority import queue_length
from tests.helpers import run_cli

pytestmark = pytest.mark.e2e

ROWS = 150_000
QUEUE = "phonebatch-crash"


def _kill_while_writing(path: Path, redis_url: str, client: redis.Redis) -> str | None:
    """Start `phonebatch submit`, SIGKILL it once its items are being written; the batch
    id, or None if it was done (or not begun) by then."""
    env = {**os.environ, "REDIS_URL": redis_url, "PHONEBATCH_QUEUE": QUEUE}
    process = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "submit", str(path), "--json"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            written = list(client.scan_iter("phonebatch:{*}:items", count=100))
            if written and client.hlen(written[0]) > 0:
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                return written[0].decode().split("{")[1].split("}")[0]
            time.sleep(0.001)
        return None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_a_submitter_killed_mid_write_leaves_nothing_that_is_sent(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    path = tmp_path / "big.csv"
    path.write_text(
        "id,provider,assistantId\n" + "".join(f"n{i:06d},vapi,asst_x\n" for i in range(ROWS))
    )
    batch_id = None
    for _ in range(3):  # the kill must land while items are written: rarely it misses
        redis_client.flushdb()
        batch_id = _kill_while_writing(path, redis_url, redis_client)
        if batch_id is not None and redis_client.zcard("phonebatch:batches") == 0:
            break
    assert batch_id is not None, "the kill never landed while the batch was written"

    keys = list(redis_client.scan_iter(f"phonebatch:{{{batch_id}}}:*"))
    assert keys and all(0 < redis_client.ttl(k) <= 3600 for k in keys)  # it goes by itself
    assert redis_client.zcard("phonebatch:batches") == 0  # nobody lists it
    assert queue_length(redis_client, QUEUE) == 0  # no task could send anything
    env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": QUEUE}
    assert run_cli("status", batch_id, env=env).returncode == 2  # nobody sees it
    assert run_cli("resume", batch_id, env=env).returncode == 2
