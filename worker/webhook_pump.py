"""Send completion webhooks: a daemon thread in each worker takes batches that ended.

Each delivery is retried with backoff (connection problems, 429, 5xx); its outcome goes
into the batch's status, in generic words (whether a port refused or dropped the
connection is nobody's business: that is a port scanner). Deliveries run side by side
(`PARALLEL`), so one slow receiver delays no other batch's. Right before connecting, the
receiver's name is resolved and every address it has is held to the destination rules
(`jobs.operations.destinations`); the request then goes to a checked address (with the
name for TLS and `Host`), so a name that resolves elsewhere by then reaches nothing
internal. A worker that dies in the middle of a delivery loses it (at most once): the
batch's status then stays `pending`.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from jobs.operations.destinations import Destinations, literal_address
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


TIMEOUT = httpx.Timeout(5.0, connect=3.0)
PARALLEL = 4  # deliveries at once per worker process


def _resolved(host: str, port: int, rules: Destinations) -> str:
    """A checked address of `host` to connect to; refuses if any address it has is
    internal (and not allowed)."""
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise WebhookFailed("the receiver's name does not resolve", retryable=True) from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not addresses or any(rules.address_problem(a) for a in addresses):
        raise WebhookFailed("the receiver's address is not allowed", retryable=False)
    first = addresses[0]
    return f"[{first}]" if first.version == 6 else str(first)


def post_once(
    client: httpx.Client, url: str, body: bytes, secret: str, rules: Destinations
) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    request_headers = headers(secret, int(time.time()), body)
    target, extensions = url, {}
    if host.lower() not in rules.hosts:
        address = _resolved(host, port, rules)
        target = urlunsplit(parts._replace(netloc=f"{address}:{port}"))
        request_headers["Host"] = parts.netloc.rpartition("@")[2]
        extensions = {"sni_hostname": host}  # TLS checks the name, not the address
    # The URL's user and password (if any) as it would have sent them: the address replaced
    # its host, and with it the credentials.
    auth = (
        httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
        if parts.username
        else httpx.USE_CLIENT_DEFAULT
    )
    try:
        response = client.post(
            target, content=body, headers=request_headers, auth=auth, extensions=extensions
        )
    except httpx.HTTPError:
        raise WebhookFailed("no answer from the receiver", retryable=True) from None
    if response.status_code >= 300:
        retryable = response.status_code in (408, 429) or response.status_code >= 500
        raise WebhookFailed(f"HTTP {response.status_code}", retryable=retryable)


def send(
    store: ReportStore,
    client: httpx.Client,
    batch_id: str,
    secret: str | None,
    *,
    rules: Destinations,
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
                post_once(client, status.webhook.url, body, secret, rules)
    except WebhookFailed as exc:
        log.warning("webhook for batch %s failed: %s", batch_id, exc)
        store.record_webhook(batch_id, "failed", tries, str(exc))
        return
    store.record_webhook(batch_id, "delivered", tries, None)


def webhook_pump(
    store: ReportStore,
    secret: str,
    rules: Destinations,
    interval: float = 0.5,
    client: httpx.Client | None = None,
) -> Pump:
    """Sends the webhooks of batches that ended, in workers that hold the secret: up to
    `PARALLEL` at once, each in a daemon thread of its own (like the pump: a worker that
    stops does not wait for a slow receiver; the delivery is lost, at most once)."""
    client = client or httpx.Client(timeout=TIMEOUT)
    free = threading.Semaphore(PARALLEL)

    def deliver(batch_id: str) -> None:
        try:
            send(store, client, batch_id, secret, rules=rules)
        except Exception:  # the pool keeps going; the batch's status says pending
            log.exception("webhook for batch %s", batch_id)
        finally:
            free.release()

    def tick() -> None:
        while free.acquire(blocking=False):
            batch_id = store.take_due_webhook()
            if batch_id is None:
                free.release()
                return
            name = f"phonebatch-webhook-{batch_id}"
            threading.Thread(target=deliver, args=(batch_id,), name=name, daemon=True).start()

    return Pump("phonebatch-webhooks", tick, interval)
