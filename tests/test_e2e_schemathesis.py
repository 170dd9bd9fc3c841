"""The HTTP API under schemathesis: requests generated from its own OpenAPI document, with
the token and without, against a real `phonebatch api` and Redis. Never a server error;
without the token, nothing but 401. `make fuzz` runs many more examples per route."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.test_e2e_api import AUTH, _start_api

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # inside schemathesis' deps
]

EXAMPLES = int(os.environ.get("PHONEBATCH_SCHEMATHESIS_EXAMPLES", "50"))
OPEN = {"/healthz", "/docs", "/openapi.json", "/redoc"}


@pytest.fixture(scope="module")
def api_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from jobs.cli.services import stop

    url, process = _start_api(redis_url, "phonebatch-schemathesis", tmp_path_factory.mktemp("api"))
    try:
        yield url
    finally:
        stop(process)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json", headers=AUTH)


SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
    derandomize="PHONEBATCH_SCHEMATHESIS_EXAMPLES" not in os.environ,
)  # fmt: skip


def _each_operation(api_schema: Any, check: Any) -> list[str]:
    """Runs `check` on cases generated for every operation of the document (through
    schemathesis' own strategies: its pytest plugin does not run on pytest 9); returns
    the operations tried."""
    tried = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        tried.append(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy())
        @SETTINGS
        def run(case: Any) -> None:
            check(case)

        run()
    return tried


def test_no_server_error_with_the_token(api_schema: Any, api_url: str) -> None:
    def check(case: Any) -> None:
        response = case.call(base_url=api_url, headers=AUTH, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])

    tried = _each_operation(api_schema, check)
    assert {"POST /batches", "POST /batches/select", "GET /batches/{batch_id}/report"} <= set(tried)


def test_without_the_token_nothing_but_401(api_schema: Any, api_url: str) -> None:
    def check(case: Any) -> None:
        headers = {"Authorization": "Bearer not-the-token"}
        response = case.call(base_url=api_url, headers=headers, timeout=30)
        if case.path in OPEN:
            assert response.status_code < 500
        else:
            assert response.status_code == 401, (case.method, case.path, response.status_code)

    assert len(_each_operation(api_schema, check)) >= 10


def test_the_document_is_served(api_url: str, tmp_path: Path) -> None:
    import httpx

    assert httpx.get(f"{api_url}/openapi.json").json()["info"]["title"] == "phonebatch"
