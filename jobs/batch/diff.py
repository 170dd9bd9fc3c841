"""What an update would change on a number, compared with its current state. Pure.

A PATCH replaces each top-level field it names, so fields compare whole: `server` is one
value. Secrets show as `***` on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.batch.redaction import REDACTED, redact

MISSING: Any = None  # how an absent field shows in a change: JSON null


@dataclass(frozen=True, slots=True)
class Change:
    """One top-level field that differs: its value before and after, secrets redacted."""

    field: str
    before: Any
    after: Any

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "before": self.before, "after": self.after}


def _fields(body: dict[str, Any]) -> list[str]:
    return [f for f in body if f != "provider"]


def changes(current: dict[str, Any], body: dict[str, Any]) -> list[Change]:
    """Each field the body sets to something other than its current value (redacted)."""
    shown_now, shown_next = redact(current), redact(body)
    return [
        Change(field, shown_now.get(field, MISSING), shown_next[field])
        for field in _fields(body)
        if current.get(field) != body[field]
    ]


def snapshot(current: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The current values of the fields the body sets (absent ones left out), redacted:
    what a rollback puts back."""
    shown = redact(current)
    return {field: shown[field] for field in _fields(body) if field in current}


def conflicts(current: dict[str, Any], expected: dict[str, Any]) -> list[Change]:
    """Fields no longer holding what a batch set: somebody changed them since."""
    shown = redact(current)
    return [
        Change(field, value, shown.get(field, MISSING))
        for field, value in expected.items()
        if value != REDACTED and current.get(field) != value
    ]
