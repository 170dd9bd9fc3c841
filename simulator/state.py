"""The simulator's phone numbers and its log of what it was asked."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

PROVIDERS = ("byo-phone-number", "twilio", "vonage", "vapi", "telnyx")
ORG_ID = "00000000-0000-4000-8000-00000000a11c"


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate_numbers(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` numbers, providers in turn; the same seed gives the same ids."""
    rng = random.Random(seed)
    numbers = []
    start = datetime.now(UTC) - timedelta(days=30)
    for i in range(count):
        provider = PROVIDERS[i % len(PROVIDERS)]
        number_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        # One minute apart: listings page by createdAt, as Vapi's do.
        numbers.append(_new_number(number_id, provider, i, _stamp(start + timedelta(minutes=i))))
    return numbers


def _new_number(number_id: str, provider: str, i: int, stamp: str) -> dict[str, Any]:
    number: dict[str, Any] = {
        "id": number_id,
        "orgId": ORG_ID,
        "provider": provider,
        "createdAt": stamp,
        "updatedAt": stamp,
        "status": "active",
        "name": f"Line {i + 1}",
        "assistantId": "asst_initial",
    }
    if provider != "vapi":
        number["number"] = f"+1555{i:07d}"
    if provider in ("byo-phone-number", "vonage", "telnyx"):
        number["credentialId"] = f"cred-{provider}"
    if provider == "twilio":
        number["twilioAccountSid"] = "AC" + "0" * 32
    if provider == "vapi":
        number["sipUri"] = f"sip:line{i + 1}@sip.vapi.ai"
    return number


@dataclass
class LoggedRequest:
    """One request the simulator was asked: when, what, and how it answered."""

    at: float
    method: str
    number_id: str | None
    status: int
    body: Any = None
    fault: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "method": self.method,
            "id": self.number_id,
            "status": self.status,
            "body": self.body,
            "fault": self.fault,
        }


@dataclass
class SimulatorState:
    """The simulator's phone numbers by id, and the log of every request it was asked."""

    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)

    def load(self, numbers: list[dict[str, Any]]) -> None:
        self.numbers = {n["id"]: dict(n) for n in numbers}

    def log(
        self,
        method: str,
        number_id: str | None,
        status: int,
        body: Any = None,
        fault: Enum | None = None,
        at: float | None = None,
    ) -> None:
        name = str(fault.value) if fault is not None else None
        stamp = time.time() if at is None else at
        self.requests.append(LoggedRequest(stamp, method, number_id, status, body, name))

    def apply(self, number_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """A PATCH: each top-level field given replaces the stored one."""
        number = self.numbers[number_id]
        number.update(body)
        number["updatedAt"] = _now()
        return number
