"""The one task: update one phone number. Thin: the work is in `worker.delivery`."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from celery.utils.log import get_task_logger

from config import Settings
from worker.app import app
from worker.delivery import WorkItem, deliver
from worker.messages import UPDATE_TASK
from worker.runtime import get_runtime

log = get_task_logger(__name__)


def _settings() -> Settings:
    settings: Settings = app.conf.phonebatch_settings
    return settings


@worker_init.connect
def _check_configuration(**_: Any) -> None:
    # Fail at start, not on the first number: a worker without a key can do nothing.
    if _settings().vapi_api_key is None:
        raise SystemExit("phonebatch worker: VAPI_API_KEY is not set; workers need it")


@app.task(name=UPDATE_TASK, ignore_result=True, acks_late=True)
def update_phone_number(
    batch_id: str, index: int, row: int, number_id: str, body: dict[str, Any]
) -> None:
    runtime = get_runtime(_settings())
    item = WorkItem(batch_id, index, row, number_id, body)
    record = deliver(item, api=runtime.api, store=runtime.store, policy=runtime.policy)
    if record is not None:
        log.info(
            "batch %s row %s number %s: %s (HTTP %s, %s attempt(s))",
            batch_id, row, number_id, record.status, record.http_status, record.attempts,
        )  # fmt: skip
