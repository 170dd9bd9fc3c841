"""Send completion webhooks: a daemon thread in each worker takes batches that ended.

Each delivery is retried with backoff (connection problems, 429, 5xx); its outcome goes
into the batch's status. A worker that dies in the middle of a delivery loses it
(at most once): the batch's status then stays `pending`.
"""

from __future__ import annotations

import logging
import time

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from jobs.operations.webhooks import headers, payload
from jobs.store.interface import ReportStore
from jobs.store.report import status_dict
from worker.pump import Pump

log = logging.getLogger(__name__)


class WebhookFailed(Exception):
    """Raised when a webhook post fails; `retryable` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def post_once(client: httpx.Client, url: str, body: bytes, secret: str) -> None:
    try:
        response = client.post(url, content=body, headers=headers(secret, int(time.time()), body))
    except httpx.HTTPError as exc:
        raise WebhookFailed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    if response.status_code >= 300:
        retryable = response.status_code in (408, 429) or response.status_code >= 500
        raise WebhookFailed(f"HTTP {response.status_code}", retryable=retryable)


def send(
    store: ReportStore,
    client: httpx.Client,
    batch_id: str,
    secret: str | None,
    *,
    attempts: int = 5,
) -> None:
    status = store.status(batch_id)
    if status is None or status.webhook is None:
        return
    if not secret:
        store.record_webhook(batch_id, "failed", 0, "PHONEBATCH_WEBHOOK_SECRET is not set")
        return
    body = payload(status_dict(status))
    tries = 0
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, WebhookFailed) and e.retryable),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.5, max=30),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt:
                tries += 1
                post_once(client, status.webhook.url, body, secret)
    except WebhookFailed as exc:
        log.warning("webhook for batch %s failed: %s", batch_id, exc)
        store.record_webhook(batch_id, "failed", tries, str(exc))
        return
    store.record_webhook(batch_id, "delivered", tries, None)


def webhook_pump(store: ReportStore, secret: str, interval: float = 0.5) -> Pump:
    """Sends the webhooks of batches that ended, in workers that hold the secret."""
    client = httpx.Client(timeout=httpx.Timeout(10.0))

    def tick() -> None:
        while (batch_id := store.take_due_webhook()) is not None:
            send(store, client, batch_id, secret)

    return Pump("phonebatch-webhooks", tick, interval)
