"""The Vapi HTTP client: one connection-pooled `httpx.Client` per worker process.

`build_http_client` is the only place the API key is put to use; it accepts a transport
so tests can script responses with `httpx.MockTransport`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from config import Settings
from jobs.metrics import REQUEST_SECONDS, REQUESTS
from worker.errors import error_for_exception, error_for_response

USER_AGENT = "phonebatch/0.1"


class MissingApiKey(RuntimeError):
    pass


def build_http_client(
    settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    if settings.vapi_api_key is None:
        raise MissingApiKey("VAPI_API_KEY is not set: workers need it to call the Vapi API")
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=30.0,
    )
    return httpx.Client(
        base_url=settings.vapi_base_url,
        headers={
            "Authorization": f"Bearer {settings.vapi_api_key.get_secret_value()}",
            "User-Agent": USER_AGENT,
        },
        timeout=timeout,
        limits=limits,
        transport=transport,
    )


@dataclass(frozen=True, slots=True)
class ApiResult:
    http_status: int
    payload: Any


class VapiApi:
    """The calls phonebatch makes; non-2xx answers raise a `DeliveryError`."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def update_phone_number(self, number_id: str, body: str) -> ApiResult:
        """PATCH /phone-number/{id} with a body already serialized as JSON."""
        return self._send(
            "PATCH",
            f"/phone-number/{quote(number_id, safe='')}",
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )

    def list_phone_numbers(self, limit: int, created_at_le: str | None = None) -> ApiResult:
        """GET /phone-number: newest first, at most `limit` (0..1000), no cursor."""
        params: dict[str, str | int] = {"limit": limit}
        if created_at_le is not None:
            params["createdAtLe"] = created_at_le
        return self._send("GET", "/phone-number", params=params)

    def get_phone_number(self, number_id: str) -> ApiResult:
        return self._send("GET", f"/phone-number/{quote(number_id, safe='')}")

    def _send(self, method: str, path: str, **kwargs: Any) -> ApiResult:
        label = "LIST" if path == "/phone-number" else method
        started = time.perf_counter()
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            REQUESTS.labels(label, "error").inc()
            raise error_for_exception(exc) from exc
        finally:
            REQUEST_SECONDS.labels(label).observe(time.perf_counter() - started)
        REQUESTS.labels(label, str(response.status_code)).inc()
        if response.is_success:
            return ApiResult(response.status_code, _json(response))
        raise error_for_response(response)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
