"""The pages over large batches: how long a batch page takes with 1,000, 10,000 and
100,000 items, and whether the API's memory grows with the batch while it streams the
report and the live updates.

    .venv/bin/python -m bench.dashboard

Goal: a 100,000-item batch page in about a second (it reads one page of items, so it
should not depend on the size at all); the server's peak memory the same for every size.
"""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from bench.stack import local_stack
from jobs.cli.services import free_port, start_api, stop
from jobs.store.interface import ItemSeed, NewBatch
from jobs.store.keys import batch_key, items_key
from jobs.store.redis_store import RedisReportStore

SIZES = (1_000, 10_000, 100_000)
TOKEN = "bench-dashboard-token"  # noqa: S105 - the bench's own private API's token


def _batch(client: redis.Redis, size: int) -> str:
    """A finished batch of `size` items, one in 50 failed, as workers would record them."""
    batch_id = f"bench-{size}"
    store = RedisReportStore(client, retention_seconds=3600)
    seeds = (
        ItemSeed(i, i + 2, f"00000000-0000-4000-8000-{i:012d}", '{"provider":"vapi"}')
        for i in range(size)
    )
    store.create_batch(NewBatch(batch_id, f"bench {size:,}", "cli", size), seeds)
    pipe = client.pipeline(transaction=False)
    for start in range(0, size, 5000):
        records = {
            i: json.dumps({
                "row": i + 2, "id": f"00000000-0000-4000-8000-{i:012d}",
                "status": "failed" if i % 50 == 0 else "succeeded",
                "http_status": 400 if i % 50 == 0 else 200, "attempts": 1,
                "error": "assistantId: no such assistant" if i % 50 == 0 else None,
                "sent": {"provider": "vapi", "assistantId": "asst_new"}, "finished_at": 1.0,
            })
            for i in range(start, min(size, start + 5000))
        }  # fmt: skip
        pipe.hset(items_key(batch_id), mapping=records)
    failed = len(range(0, size, 50))
    pipe.hset(batch_key(batch_id), mapping={
        "pending": 0, "succeeded": size - failed, "failed": failed, "state": "completed",
        "started_at": 1.0, "finished_at": 100.0,
    })  # fmt: skip
    pipe.execute()
    return batch_id


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _peak_rss_during(pid: int, work: Callable[[], object]) -> int:
    """The process's peak resident memory (KiB) while `work` runs, sampled every 20 ms."""
    peak = _rss_kib(pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_kib(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return peak


def _median_ms(client: httpx.Client, path: str, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.get(path)
        answer.raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _download(client: httpx.Client, path: str) -> int:
    size = 0
    with client.stream("GET", path) as answer:
        for chunk in answer.iter_bytes():
            size += len(chunk)
    return size


def main() -> None:
    with local_stack() as stack:
        port = free_port()
        env = {"REDIS_URL": stack.redis_url, "PHONEBATCH_API_TOKEN": TOKEN}
        api = start_api(port, env=env, log=stack.workdir / "api.log")
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                client.post("/ui/signin", data={"token": TOKEN, "after": "/"})
                print("dashboard: the pages over finished batches (median of 10; one in 50 failed)")
                print(f"  {'items':>8} {'batch page':>11} {'failed only':>12} {'list':>8} "
                      f"{'CSV download':>13} {'API RSS peak':>13}")  # fmt: skip
                for size in SIZES:
                    batch_id = _batch(stack.client, size)
                    page = _median_ms(client, f"/ui/batches/{batch_id}", 10)
                    failed = _median_ms(client, f"/ui/batches/{batch_id}?status=failed", 10)
                    listing = _median_ms(client, "/", 10)
                    started = time.perf_counter()
                    peak = _peak_rss_during(
                        api.pid, lambda b=batch_id: _download(client, f"/ui/batches/{b}/report.csv")
                    )
                    csv_s = time.perf_counter() - started
                    print(f"  {size:>8,} {page:>8.1f} ms {failed:>9.1f} ms {listing:>5.1f} ms "
                          f"{csv_s:>11.2f} s {peak / 1024:>10.1f} MiB")  # fmt: skip
            _in_a_browser(f"http://127.0.0.1:{port}", f"bench-{SIZES[-1]}")
        finally:
            stop(api)


def _in_a_browser(url: str, batch_id: str) -> None:
    """The batch page as a person sees it: headless Chromium (the system's), from the
    request to the page's `load` event, median of 5."""
    chromium = shutil.which("chromium")
    if chromium is None:
        print("  (no chromium: the in-browser figure is left out)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(base_url=url)
        page.goto("/ui/signin")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{url}/")
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            page.goto(f"/ui/batches/{batch_id}", wait_until="load")
            timings.append(time.perf_counter() - started)
        browser.close()
    print(f"  {batch_id} page in Chromium, request to load: {statistics.median(timings):.2f} s "
          "(goal: about 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
