"""Secret body fields are replaced by `***` before a body reaches a report or a log."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest

from jobs.batch.intake import read_batch
from jobs.batch.redaction import REDACTED, redact
from jobs.batch.sources import Format


def test_redacted_marker() -> None:
    assert REDACTED == "***"


def test_twilio_secrets_are_redacted_and_other_fields_kept() -> None:
    body = {
        "provider": "twilio",
        "twilioAccountSid": "AC123",
        "twilioApiKey": "SK123",
        "twilioAuthToken": "auth-token-value",
        "twilioApiSecret": "api-secret-value",
        "smsEnabled": True,
        "assistantId": "asst_1",
    }
    assert redact(body) == {
        "provider": "twilio",
        "twilioAccountSid": "AC123",
        "twilioApiKey": "SK123",
        "twilioAuthToken": "***",
        "twilioApiSecret": "***",
        "smsEnabled": True,
        "assistantId": "asst_1",
    }


def test_sip_authentication_password_is_redacted_username_kept() -> None:
    body = {
        "provider": "vapi",
        "sipUri": "sip:desk@example.com",
        "authentication": {"realm": "example.com", "username": "desk", "password": "pw"},
    }
    assert redact(body) == {
        "provider": "vapi",
        "sipUri": "sip:desk@example.com",
        "authentication": {"realm": "example.com", "username": "desk", "password": "***"},
    }


def test_every_server_header_value_is_redacted() -> None:
    body = {
        "server": {
            "url": "https://hooks.example.com",
            "timeoutSeconds": 20,
            "headers": {"Authorization": "Bearer abc", "X-Team": "ops", "X-Nested": {"a": 1}},
            "backoffPlan": {"type": "fixed", "maxRetries": 3, "baseDelaySeconds": 1},
        }
    }
    assert redact(body) == {
        "server": {
            "url": "https://hooks.example.com",
            "timeoutSeconds": 20,
            "headers": {"Authorization": "***", "X-Team": "***", "X-Nested": "***"},
            "backoffPlan": {"type": "fixed", "maxRetries": 3, "baseDelaySeconds": 1},
        }
    }


def test_sip_headers_are_redacted_wherever_they_appear() -> None:
    destination = {
        "type": "sip",
        "sipUri": "sip:ops@example.com",
        "sipHeaders": {"X-Token": "t1", "X-Other": "t2"},
    }
    body = {
        "fallbackDestination": destination,
        "hooks": [
            {
                "on": "call.ringing",
                "do": [
                    {"type": "say", "exact": "Connecting"},
                    {"type": "transfer", "destination": destination},
                ],
            }
        ],
    }
    redacted_destination = {**destination, "sipHeaders": {"X-Token": "***", "X-Other": "***"}}
    assert redact(body) == {
        "fallbackDestination": redacted_destination,
        "hooks": [
            {
                "on": "call.ringing",
                "do": [
                    {"type": "say", "exact": "Connecting"},
                    {"type": "transfer", "destination": redacted_destination},
                ],
            }
        ],
    }


def test_body_without_secrets_is_unchanged() -> None:
    body = {
        "provider": "vonage",
        "name": "Front desk",
        "assistantId": "asst_1",
        "hooks": [{"on": "call.ending", "do": {"type": "say", "exact": "Bye"}}],
        "server": {"url": "https://x", "encryptedPaths": ["a", "b"]},
    }
    assert redact(body) == body


def test_input_is_not_mutated() -> None:
    body: dict[str, Any] = {
        "twilioAuthToken": "t",
        "authentication": {"username": "u", "password": "p"},
        "server": {"headers": {"Authorization": "Bearer x"}},
        "fallbackDestination": {"type": "sip", "sipUri": "sip:a", "sipHeaders": {"X": "y"}},
    }
    before = copy.deepcopy(body)
    redacted = redact(body)
    assert body == before
    assert redacted["server"]["headers"] == {"Authorization": "***"}
    assert redacted["server"] is not body["server"]
    assert redacted["authentication"] is not body["authentication"]


def test_scalars_and_lists_pass_through() -> None:
    assert redact("text") == "text"
    assert redact(5) == 5
    assert redact(None) is None
    assert redact([{"twilioAuthToken": "t"}, 1]) == [{"twilioAuthToken": "***"}, 1]


def test_password_outside_authentication_is_not_a_known_secret() -> None:
    assert redact({"name": "password", "server": {"url": "https://x/password"}}) == {
        "name": "password",
        "server": {"url": "https://x/password"},
    }


def test_validated_body_redacts_every_secret() -> None:
    intake = read_batch(
        io.StringIO(
            "id,provider,twilioAuthToken,twilioApiSecret,server.headers.Authorization,name\n"
            "n1,twilio,tok,sec,Bearer abc,Desk\n",
            newline="",
        ),
        Format.CSV,
    )
    assert intake.ok
    body = json.loads(intake.items[0].body)
    assert redact(body) == {
        "provider": "twilio",
        "twilioAuthToken": "***",
        "twilioApiSecret": "***",
        "server": {"headers": {"Authorization": "***"}},
        "name": "Desk",
    }
    assert "tok" not in json.dumps(redact(body))


def test_selection_pairs_show_no_secret() -> None:
    from jobs.batch.redaction import pairs_text, redact_pairs

    pairs = {"twilioAuthToken": "tok-123", "server.headers.X-Key": "k", "assistantId": "a"}
    assert redact_pairs(pairs) == {
        "twilioAuthToken": REDACTED, "server.headers.X-Key": REDACTED, "assistantId": "a"
    }  # fmt: skip
    assert pairs_text(pairs) == "twilioAuthToken=*** and server.headers.X-Key=*** and assistantId=a"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@hooks.example.com:8443/t/SECRET?k=1", "https://hooks.example.com:8443/…"),
        ("https://user@[::1]/x", "https://[::1]/…"),
        ("https://hooks.example.com:99999/x", "https://hooks.example.com/…"),
    ],
)
def test_a_webhook_url_is_shown_without_credentials_path_or_query(url: str, shown: str) -> None:
    from jobs.store.interface import BatchState, BatchStatus, Counts, WebhookState
    from jobs.store.report import status_dict

    status = BatchStatus(
        "b1", "n", "cli", BatchState.QUEUED, Counts(total=1, pending=1), 0.0,
        webhook=WebhookState(url),
    )  # fmt: skip
    assert status_dict(status)["webhook"]["url"] == shown
