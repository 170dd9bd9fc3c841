"""A worker's Prometheus metrics: requests, retries, waits and outcomes. Names start
with `phonebatch_`.

Workers serve theirs on `PHONEBATCH_METRICS_PORT` (each process of `phonebatch worker`
on the base port plus its number); the API's own are in `jobs.api.metrics`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar, cast

from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

REQUESTS = Counter(
    "phonebatch_api_requests_total",
    "Requests to the Vapi API, by method and HTTP status ('error': no answer).",
    ["method", "status"],
)
REQUEST_SECONDS = Histogram(
    "phonebatch_api_request_seconds",
    "How long a request to the Vapi API took.",
    ["method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETRIES = Counter(
    "phonebatch_retries_total", "Attempts that will be tried again, by reason.", ["reason"]
)
RATE_LIMITED = Counter("phonebatch_rate_limited_total", "429 answers from the Vapi API.")
LIMITER_WAIT_SECONDS = Histogram(
    "phonebatch_limiter_wait_seconds",
    "Time spent waiting for the global rate limiter before a request.",
    buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
OUTCOMES = Counter(
    "phonebatch_items_total", "Item outcomes this process recorded, by status.", ["status"]
)


M = TypeVar("M", bound=MetricWrapperBase)


@lru_cache(maxsize=1024)
def _child(metric: MetricWrapperBase, values: tuple[str, ...]) -> MetricWrapperBase:
    return metric.labels(*values)


def labelled(metric: M, *values: str) -> M:
    """`metric.labels(*values)`, looked up once: `labels` takes a lock and checks its
    arguments on every call, a few times per item in a worker."""
    return cast(M, _child(metric, values))
