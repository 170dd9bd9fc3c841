"""Send completion webhooks: a daemon thread in each worker takes batches that ended.

A batch's end puts its webhook in the outbox (the due set) in the same step that completes
it. A worker takes it from there into the deliveries in flight, noted as its process's
(`worker.heartbeat.process_id`), and records the outcome and takes it out of flight in one
step. If the worker dies in between, its heartbeat lapses and any live worker's sweep
(`worker.sweeps`) puts the webhook back in the outbox, once, for another worker to deliver:
at least once. Every delivery of a batch's webhook carries the same `X-Phonebatch-Delivery`
id (`jobs.operations.webhooks.delivery_id`), so a receiver drops the second.

Each delivery is retried with backoff (connection problems, 429, 5xx); its outcome goes
into the batch's status, in generic words (whether a port refused or dropped the
connection is nobody's business: that is a port scanner). Deliveries run side by side
(`PARALLEL`), so one slow receiver delays no other batch's. Right before connecting, the
receiver's name is resolved and every address it has is held to the destination rules
(`jobs.operations.destinations`); the request then goes to a checked address (with the
name for TLS and `Host`), so a name that resolves elsewhere by then reaches nothing
internal.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import redis
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from jobs.operations.destinations import Destinations, literal_address
from jobs.operations.webhooks import FINISHED, PAUSED, delivery_id, headers, payload
from jobs.store.guardrails import webhook_entry
from jobs.store.interface import ReportStore
from jobs.store.report import status_dict
from worker.heartbeat import process_id
from worker.pump import Pump

log = logging.getLogger(__name__)


class WebhookFailed(Exception):
    """Raised when a webhook post fails; `retryable` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


TIMEOUT = httpx.Timeout(5.0, connect=3.0)
PARALLEL = 4  # deliveries at once per worker process
REDIS_PATIENCE = 300.0  # seconds a delivery waits for Redis to answer again


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
    client: httpx.Client, url: str, body: bytes, secret: str, rules: Destinations, *,
    delivery: str,
) -> None:  # fmt: skip
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    request_headers = headers(secret, int(time.time()), body, delivery)
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
    entry: str,
    secret: str | None,
    *,
    rules: Destinations,
    owner: str,
    attempts: int = 5,
) -> None:
    """Deliver one outbox entry (a batch's end, or a pause of its own), taken as
    `owner`'s, and record how it went."""
    target = webhook_entry(entry)
    status = store.status(target.batch_id)
    if status is None or status.webhook is None:
        store.record_webhook(entry, "failed", 0, "the batch is gone", owner=owner)
        return
    if not secret:
        error = "PHONEBATCH_WEBHOOK_SECRET is not set"
        store.record_webhook(entry, "failed", 0, error, owner=owner)
        return
    event, occurrence = (PAUSED, status.pauses) if target.paused else (FINISHED, 0)
    body = payload(status_dict(status), event, occurrence)
    delivery = delivery_id(target.batch_id, event, occurrence)
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
                post_once(client, status.webhook.url, body, secret, rules, delivery=delivery)
    except WebhookFailed as exc:
        log.warning("webhook %s for batch %s failed: %s", event, target.batch_id, exc)
        store.record_webhook(entry, "failed", tries, str(exc), owner=owner)
        return
    store.record_webhook(entry, "delivered", tries, None, owner=owner)


def _sending(
    store: ReportStore, client: httpx.Client, secret: str, rules: Destinations, owner: str
) -> Callable[[str], None]:
    """One delivery, with retry state of its own, tried again while Redis is away (it
    posts again if only the record failed: the same delivery id, for the receiver to
    drop). Any other error puts the webhook back in the outbox for another try; if Redis
    cannot even take that, it waits in flight until this process ends."""
    retrying = Retrying(
        retry=retry_if_exception_type(redis.RedisError),
        wait=wait_random_exponential(multiplier=0.5, max=10),
        stop=stop_after_delay(REDIS_PATIENCE),
        reraise=True,
    )

    def deliver(entry: str) -> None:
        try:
            for attempt in retrying:
                with attempt:
                    send(store, client, entry, secret, rules=rules, owner=owner)
        except Exception:  # the pool keeps going; the webhook goes back to the outbox
            log.exception("webhook %s; put back in the outbox", entry)
            try:
                store.give_back_webhook(entry, owner)
            except Exception:  # Redis still away: it waits in flight until this process ends
                log.exception("webhook %s could not be put back", entry)

    return deliver


def webhook_pump(
    store: ReportStore,
    secret: str,
    rules: Destinations,
    interval: float = 0.5,
    client: httpx.Client | None = None,
) -> Pump:
    """Sends the webhooks of batches that ended, in workers that hold the secret: up to
    `PARALLEL` at once, each in a daemon thread of its own (like the pump: a worker that
    stops does not wait for a slow receiver; the webhooks it was delivering go back to the
    outbox once its heartbeat lapses)."""
    client = client or httpx.Client(timeout=TIMEOUT)
    free = threading.Semaphore(PARALLEL)

    def run(deliver: Callable[[str], None], entry: str) -> None:
        try:
            deliver(entry)
        finally:
            free.release()

    def tick() -> None:
        owner = process_id()  # asked each time: a forked child is another process
        while free.acquire(blocking=False):
            try:
                entry = store.take_due_webhook(owner)
                if entry is None:
                    free.release()
                    return
                deliver = _sending(store, client, secret, rules, owner)
                name = f"phonebatch-webhook-{entry}"
                threading.Thread(target=run, args=(deliver, entry), name=name, daemon=True).start()
            except BaseException:  # Redis away: the slot is free again for the next tick
                free.release()
                raise

    return Pump("phonebatch-webhooks", tick, interval)
