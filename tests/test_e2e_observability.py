"""Metrics and logs of a running worker and API: Prometheus text, JSON lines, no key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
import redis

from jobs.cli.services import free_port, start, stop, wait_until
from simulator.state import generate_numbers
from tests.conftest import API_KEY, StartWorkers
from tests.helpers import Simulator, submit_rows, wait_for_batch

pytestmark = pytest.mark.e2e


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {prefix} in the metrics")


def test_worker_metrics_and_json_logs(
    redis_url: str,
    redis_client: redis.Redis,
    simulator: Simulator,
    start_workers: StartWorkers,
    tmp_path: Path,
) -> None:
    numbers = generate_numbers(12, seed=81)
    simulator.reset(numbers)
    simulator.set_faults(p429=0.2, retry_after=1, seed=2)
    port = free_port()
    queue, workers = start_workers(count=1, concurrency=4, PHONEBATCH_METRICS_PORT=str(port))
    rows = [f"{n['id']},{n['provider']},asst_m" for n in numbers]
    store, batch_id = submit_rows(redis_client, queue, "id,provider,assistantId", rows)
    wait_for_batch(store, batch_id, workers)

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

    assert _metric(text, "phonebatch_items_total", status="succeeded") == 12
    assert _metric(text, "phonebatch_api_requests_total", method="PATCH", status="200") == 12
    throttled = sum(r["status"] == 429 for r in simulator.requests())
    assert throttled > 0
    assert _metric(text, "phonebatch_rate_limited_total") == throttled
    assert _metric(text, "phonebatch_api_request_seconds_count", method="LIST") >= 1  # the read
    assert "phonebatch_limiter_wait_seconds_bucket" in text
    lines = workers[0].log.read_text().splitlines()
    # Celery's start banner is plain text; every log line is a JSON object.
    mentioning = [line for line in lines if batch_id in line]
    assert mentioning and all(line.startswith("{") for line in mentioning)
    records = [json.loads(line) for line in mentioning]
    about = [r for r in records if r.get("batch_id") == batch_id]
    assert {r["row"] for r in about if "succeeded" in r["message"]} == set(range(2, 14))
    assert all("number_id" in r for r in about)
    assert API_KEY not in workers[0].log.read_text()


def test_api_metrics_need_the_token_and_count_batch_items(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    submit_rows(redis_client, "q-metrics", "id,provider,name", ["n1,vapi,a", "n2,vapi,b"])
    port = free_port()
    env = {"REDIS_URL": redis_url, "PHONEBATCH_API_TOKEN": "t-metrics"}
    process = start([sys.executable, "-m", "jobs.cli", "api", "--port", str(port)], env=env,
                    log=tmp_path / "api.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, timeout=20, what="the API")
        assert httpx.get(f"{url}/metrics").status_code == 401
        text = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer t-metrics"}).text
    finally:
        stop(process)
    pending = [line for line in text.splitlines() if line.startswith("phonebatch_batch_items{")]
    assert any('state="pending"' in line and line.endswith(" 2.0") for line in pending)
