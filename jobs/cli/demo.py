"""`phonebatch demo`: the whole pipeline on this machine, then everything stopped again.

Starts the simulator, a worker and `phonebatch api` with its pages (and a private
redis-server when none answers at REDIS_URL), writes a sample CSV moving every number to
a new assistant, submits it, shows progress and the summary. Its tasks go to a queue of
its own, so workers of a real deployment sharing the same Redis never see them.

The pages' URL is the first thing it prints. In a terminal it also prints a token to sign
in with (made up for this run, never written anywhere else), waits for Enter before the
batch starts (time to open the page) and keeps everything up after the batch ends until
Enter or Ctrl-C; without a terminal (CI, scripts) it runs straight through and ends.
"""

from __future__ import annotations

import csv
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from rich.console import Console

from config import Settings
from jobs.batch.intake import read_batch
from jobs.batch.sources import Format
from jobs.batch.urls import safe_url
from jobs.cli.progress import watch
from jobs.cli.services import (
    ServiceError,
    free_port,
    redis_answers,
    start_api,
    start_redis_server,
    start_simulator,
    start_worker,
    stop,
)
from jobs.operations.producer import submit_batch
from jobs.store.redis_store import RedisReportStore
from jobs.store.report import summary_line

NEW_ASSISTANT = "asst_demo_after_hours"


def write_sample_csv(numbers: list[dict[str, object]], path: Path) -> None:
    """One row per number: its provider, the new assistant, and a new name."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "provider", "assistantId", "name"])
        for i, number in enumerate(numbers, start=1):
            writer.writerow([number["id"], number["provider"], NEW_ASSISTANT, f"After hours {i}"])


def run_demo(
    settings: Settings,
    *,
    numbers: int,
    out: Console,
    err: Console,
    interactive: bool | None = None,
    wait: Callable[[], object] = input,
) -> int:
    """Start Redis (unless one answers), the simulator, a worker and the API, run a batch
    through them, and stop everything it started; 0 when every number moved.
    `interactive` (default: stdin and stderr are a terminal) waits on `wait` before the
    batch and after it."""
    if interactive is None:
        interactive = sys.stdin.isatty() and err.is_terminal
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="phonebatch-demo-") as tmp:
        workdir = Path(tmp)
        processes: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop_all, processes)
        api_port, token = free_port(), secrets.token_urlsafe(18)
        err.print(f"Follow it in your browser: http://127.0.0.1:{api_port}/")
        if interactive:  # a secret on the screen of the one who ran it, never in a log
            err.print(f"Sign in with this token: {token}")
        try:
            redis_url, sim, queue = _start(settings, workdir, processes, numbers, err)
            api_env = {"REDIS_URL": redis_url, "PHONEBATCH_QUEUE": queue}
            api_env["PHONEBATCH_API_TOKEN"] = token
            processes.append(start_api(api_port, env=api_env, log=workdir / "api.log"))
        except ServiceError as exc:
            err.print(f"phonebatch demo: {exc}")
            return 1
        err.print(f"• the API and its pages on http://127.0.0.1:{api_port}/")

        store = RedisReportStore.from_url(
            redis_url, retention_seconds=3600, sentinel_master=settings.sentinel_master
        )
        if interactive and not _pause(
            err, wait, "Open the page and sign in, then press Enter to start the batch."
        ):
            out.print("Stopped before the batch; everything the demo started is being stopped.")
            return 1
        code = _run_batch(sim, store, queue, workdir, numbers, out, err)
        if interactive:
            _pause(err, wait, "The pages stay up: press Enter or Ctrl-C to stop everything.")
        out.print("Everything the demo started is being stopped.")
        return code


def _start(
    settings: Settings,
    workdir: Path,
    processes: list[subprocess.Popen[bytes]],
    numbers: int,
    err: Console,
) -> tuple[str, str, str]:
    """Redis (unless one answers), the simulator and a worker: Redis's URL, the
    simulator's, and the demo's own queue."""
    redis_url = _redis(settings, workdir, processes, err)
    sim_port, api_key = free_port(), secrets.token_hex(8)
    err.print(f"• simulator on 127.0.0.1:{sim_port} with {numbers} numbers")
    processes.append(
        start_simulator(sim_port, numbers=numbers, seed=7, api_key=api_key, log=workdir / "sim.log")
    )
    queue = f"phonebatch-demo-{secrets.token_hex(4)}"
    env = {
        "REDIS_URL": redis_url,
        "VAPI_BASE_URL": f"http://127.0.0.1:{sim_port}",
        "VAPI_API_KEY": api_key,
        "PHONEBATCH_QUEUE": queue,
        "PHONEBATCH_RATE_LIMIT": "50",  # the simulator takes it; the real API may not
    }
    err.print("• a worker (threads pool, concurrency 8)")
    processes.append(start_worker(env=env, concurrency=8, log=workdir / "worker.log"))
    return redis_url, f"http://127.0.0.1:{sim_port}", queue


def _pause(err: Console, wait: Callable[[], object], message: str) -> bool:
    """Wait for Enter: True, or for Ctrl-C (or a closed stdin): False."""
    err.print(message)
    try:
        wait()
    except (KeyboardInterrupt, EOFError):
        return False
    return True


def _run_batch(
    sim: str,
    store: RedisReportStore,
    queue: str,
    workdir: Path,
    numbers: int,
    out: Console,
    err: Console,
) -> int:
    """Submit the sample batch, show its progress, then what the simulator holds now."""
    sample = workdir / "move-to-after-hours.csv"
    write_sample_csv(httpx.get(f"{sim}/_sim/numbers").json(), sample)
    err.print(f"• sample batch: {sample.name} ({numbers} rows, all five providers)")
    with sample.open(newline="", encoding="utf-8") as stream:
        intake = read_batch(stream, Format.CSV)
    if not intake.ok:  # the sample is ours: this would be a bug, say so plainly
        err.print(f"the demo's own sample is invalid: {intake.errors[0]}")
        return 1
    batch_id = submit_batch(
        intake.items, store=store, broker=store.client, queue=queue,
        name="demo: move to the after-hours assistant", source="cli",
    )  # fmt: skip
    err.print(f"• submitted batch {batch_id}")
    final = watch(store, batch_id, console=err)
    now = httpx.get(f"{sim}/_sim/numbers").json()
    moved = sum(1 for n in now if n.get("assistantId") == NEW_ASSISTANT)
    out.print(f"Batch {batch_id} {final.state.value}: {summary_line(final)}")
    out.print(f"The simulator now has {moved} of {numbers} numbers on {NEW_ASSISTANT}.")
    return 0 if final.counts.succeeded == numbers else 1


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        stop(process)


def _redis(
    settings: Settings, workdir: Path, processes: list[subprocess.Popen[bytes]], err: Console
) -> str:
    if redis_answers(settings.redis_url, sentinel_master=settings.sentinel_master):
        err.print(f"• Redis at {safe_url(settings.redis_url)}")
        return settings.redis_url
    port = free_port()
    err.print(
        f"• no Redis at {safe_url(settings.redis_url)}: starting a private one on port {port}"
    )
    processes.append(start_redis_server(port, workdir / "redis"))
    return f"redis://127.0.0.1:{port}/0"
