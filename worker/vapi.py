"""The Vapi HTTP client: one connection-pooled httpx transport per worker process.

Requests go straight to an `httpx.HTTPTransport`: `httpx.Client`'s layers (cookies,
redirects, auth flows, URL and header merging) do nothing for a PATCH with a bearer
token and cost about a quarter of a request's CPU time in a worker, where that time
is the limit. `build_api` is the only place the API key is put to use; it accepts a
transport so tests can script responses with `httpx.MockTransport`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies, proxy_bypass

import httpx

from config import Settings
from worker.errors import error_for_exception, error_for_response
from worker.metrics import REQUEST_SECONDS, REQUESTS, labelled

USER_AGENT = "phonebatch/0.1"


class MissingApiKey(RuntimeError):
    """Raised when a worker is to call the API and `VAPI_API_KEY` is not set."""


def timeouts(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.write_timeout,
        pool=settings.pool_timeout,
    )


def build_api(settings: Settings, *, transport: httpx.BaseTransport | None = None) -> VapiApi:
    if settings.vapi_api_key is None:
        raise MissingApiKey("VAPI_API_KEY is not set: workers need it to call the Vapi API")
    limits = httpx.Limits(
        max_connections=settings.max_connections,
        max_keepalive_connections=settings.max_connections,
        keepalive_expiry=30.0,
    )
    headers = {
        "Authorization": f"Bearer {settings.vapi_api_key.get_secret_value()}",
        "User-Agent": USER_AGENT,
    }
    return VapiApi(
        transport or httpx.HTTPTransport(limits=limits, proxy=_proxy_for(settings.vapi_base_url)),
        base_url=settings.vapi_base_url,
        headers=headers,
        timeout=timeouts(settings),
    )


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, ALL_PROXY, NO_PROXY), as
    `httpx.Client` would have used."""
    parts = urlsplit(url)
    if parts.hostname and proxy_bypass(parts.hostname):
        return None
    proxies = getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


@dataclass(frozen=True, slots=True)
class ApiResult:
    """A 2xx answer: its status code and its JSON body (None if not read, or not JSON)."""

    http_status: int
    payload: Any


class VapiApi:
    """The calls phonebatch makes; non-2xx answers raise a `DeliveryError`."""

    def __init__(
        self,
        transport: httpx.BaseTransport,
        *,
        base_url: str,
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._headers = headers
        self._json_headers = headers | {"Content-Type": "application/json"}
        self.timeout = timeout
        self._extensions = {"timeout": timeout.as_dict()}

    def update_phone_number(self, number_id: str, body: str) -> ApiResult:
        """PATCH /phone-number/{id} with a body already serialized as JSON. The answer's
        body is not parsed (`payload` is None): nothing reads it, and a worker's CPU is
        what limits it on a fast API."""
        url = f"{self._base}/phone-number/{quote(number_id, safe='')}"
        return self._send("PATCH", url, self._json_headers, body.encode(), parse=False)

    def list_phone_numbers(self, limit: int, created_at_le: str | None = None) -> ApiResult:
        """GET /phone-number: newest first, at most `limit` (0..1000), no cursor."""
        params: dict[str, str | int] = {"limit": limit}
        if created_at_le is not None:
            params["createdAtLe"] = created_at_le
        url = f"{self._base}/phone-number?{urlencode(params)}"
        return self._send("GET", url, self._headers, label="LIST")

    def get_phone_number(self, number_id: str) -> ApiResult:
        url = f"{self._base}/phone-number/{quote(number_id, safe='')}"
        return self._send("GET", url, self._headers)

    def close(self) -> None:
        self._transport.close()

    def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None = None,
        label: str | None = None,
        parse: bool = True,
    ) -> ApiResult:
        label = label or method
        request = httpx.Request(
            method, url, headers=headers, content=content, extensions=self._extensions
        )
        started = time.perf_counter()
        try:
            response = self._transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()  # back to the pool, whatever happened
        except httpx.HTTPError as exc:
            labelled(REQUESTS, label, "error").inc()
            raise error_for_exception(exc) from exc
        finally:
            labelled(REQUEST_SECONDS, label).observe(time.perf_counter() - started)
        labelled(REQUESTS, label, str(response.status_code)).inc()
        if response.is_success:
            return ApiResult(response.status_code, _json(response) if parse else None)
        raise error_for_response(response)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
