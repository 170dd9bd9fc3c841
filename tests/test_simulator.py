"""The simulator checks bodies against the spec itself and answers like Vapi.

Over real HTTP, against the simulator process the end-to-end tests use.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from simulator.schema import response_validator
from simulator.state import generate_numbers
from tests.conftest import API_KEY
from tests.helpers import Simulator

KEY = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(simulator: Simulator) -> Iterator[httpx.Client]:
    simulator.reset(generate_numbers(5, seed=2))
    with httpx.Client(base_url=simulator.url, timeout=10) as http:
        yield http


def _first(client: httpx.Client, provider: str) -> str:
    numbers = client.get("/_sim/numbers").json()
    return next(n["id"] for n in numbers if n["provider"] == provider)


def test_generated_numbers_and_patch_answers_follow_the_response_schema(
    client: httpx.Client,
) -> None:
    for number in client.get("/_sim/numbers").json():
        response_validator().validate(number)
        answer = client.patch(
            f"/phone-number/{number['id']}",
            json={"provider": number["provider"], "assistantId": "asst_2"},
            headers=KEY,
        )
        assert answer.status_code == 200
        response_validator().validate(answer.json())
        assert answer.json()["assistantId"] == "asst_2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"provider": "twilio", "assistantID": "a"}, "property assistantID should not exist"),
        ({"provider": "twilio", "server": {"timeoutSeconds": "20"}},
         "server.timeoutSeconds: '20' is not of type 'number'"),
        ({"provider": "twilio", "fallbackDestination": {"type": "number"}},
         "fallbackDestination: 'number' is a required property"),
        ({"provider": "twilio", "credentialId": "c"}, "property credentialId should not exist"),
        ({"provider": "nexmo"}, "provider must be one of the following values"),
    ],
)  # fmt: skip
def test_bodies_that_break_the_spec_get_vapis_400(
    client: httpx.Client, body: dict[str, object], message: str
) -> None:
    answer = client.patch(f"/phone-number/{_first(client, 'twilio')}", json=body, headers=KEY)
    assert answer.status_code == 400
    payload = answer.json()
    assert payload["statusCode"] == 400 and payload["error"] == "Bad Request"
    assert any(message in m for m in payload["message"]), payload


def test_free_form_objects_stay_open(client: httpx.Client) -> None:
    body = {"provider": "twilio", "server": {"url": "https://x", "headers": {"X-Any": "v"}}}
    answer = client.patch(f"/phone-number/{_first(client, 'twilio')}", json=body, headers=KEY)
    assert answer.status_code == 200, answer.json()


def test_auth_unknown_ids_and_provider_mismatch(client: httpx.Client) -> None:
    twilio = _first(client, "twilio")
    body = {"provider": "twilio"}
    assert client.patch(f"/phone-number/{twilio}", json=body, headers={}).status_code == 401
    bad_key = {"Authorization": "Bearer nope"}
    assert client.patch(f"/phone-number/{twilio}", json=body, headers=bad_key).status_code == 401
    missing = client.patch("/phone-number/missing", json=body, headers=KEY)
    assert missing.status_code == 404 and missing.json()["statusCode"] == 404
    mismatch = client.patch(f"/phone-number/{twilio}", json={"provider": "vapi"}, headers=KEY)
    assert mismatch.status_code == 400
    assert client.get(f"/phone-number/{twilio}", headers=KEY).json()["id"] == twilio
    assert [r["status"] for r in client.get("/_sim/requests").json()] == [401, 401, 404, 400, 200]


def test_patch_replaces_top_level_fields_only(client: httpx.Client) -> None:
    twilio = _first(client, "twilio")
    client.patch(
        f"/phone-number/{twilio}",
        json={"provider": "twilio", "server": {"url": "a", "timeoutSeconds": 3}},
        headers=KEY,
    )
    client.patch(
        f"/phone-number/{twilio}", json={"provider": "twilio", "server": {"url": "b"}}, headers=KEY
    )
    assert client.get(f"/phone-number/{twilio}", headers=KEY).json()["server"] == {"url": "b"}


def test_same_seed_same_ids() -> None:
    assert [n["id"] for n in generate_numbers(3, seed=9)] == [
        n["id"] for n in generate_numbers(3, seed=9)
    ]
    assert [n["id"] for n in generate_numbers(3, seed=9)] != [
        n["id"] for n in generate_numbers(3, seed=10)
    ]


def test_it_counts_the_requests_it_answers_at_once(simulator: Simulator) -> None:
    import asyncio

    numbers = generate_numbers(6, seed=4)
    simulator.reset(numbers)
    simulator.set_faults(latency_ms=300)

    async def get_all() -> None:
        async with httpx.AsyncClient(base_url=simulator.url, headers=KEY, timeout=10) as http:
            await asyncio.gather(*(http.get(f"/phone-number/{n['id']}") for n in numbers[:4]))

    asyncio.run(get_all())
    counted = httpx.get(f"{simulator.url}/_sim/concurrency", timeout=5).json()
    assert counted == {"in_flight": 0, "peak": 4}
    simulator.reset(numbers)
    assert httpx.get(f"{simulator.url}/_sim/concurrency", timeout=5).json()["peak"] == 0
