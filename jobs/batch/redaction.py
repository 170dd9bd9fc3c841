"""Secret body fields never reach a report or a log line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "***"

# Top-level fields that hold credentials.
_SECRET_FIELDS = frozenset({"twilioAuthToken", "twilioApiSecret"})
# Objects whose every value may be a credential (an Authorization header, a SIP token).
_SECRET_MAPS = frozenset({"headers", "sipHeaders"})


def is_secret_path(path: Sequence[str | int]) -> bool:
    """Whether a value at this body path is a secret (a path as the validator reports it)."""
    names = [p for p in path if isinstance(p, str)]
    if not names:
        return False
    if names[-1] in _SECRET_FIELDS or any(n in _SECRET_MAPS for n in names[:-1]):
        return True
    return names[-2:] == ["authentication", "password"]


def redact(body: Any, *, parent: str | None = None) -> Any:
    """A copy of a request body with every secret value replaced by `***`."""
    if isinstance(body, list):
        return [redact(item, parent=parent) for item in body]
    if not isinstance(body, dict):
        return body
    if parent in _SECRET_MAPS:
        return dict.fromkeys(body, REDACTED)
    cleaned: dict[str, Any] = {}
    for key, value in body.items():
        secret = key in _SECRET_FIELDS or (parent == "authentication" and key == "password")
        cleaned[key] = REDACTED if secret else redact(value, parent=key)
    return cleaned


def redact_pairs(pairs: Mapping[str, str]) -> dict[str, str]:
    """`--where` / `--set` pairs (dotted field names) with every secret value as `***`:
    what a batch's name, a task's repr or a log line may show of them."""
    return {name: REDACTED if is_secret_path(name.split(".")) else value
            for name, value in pairs.items()}  # fmt: skip


def pairs_text(pairs: Mapping[str, str]) -> str:
    """`a=1 and b=***`: conditions as a name shows them, secrets redacted."""
    return " and ".join(f"{name}={value}" for name, value in redact_pairs(pairs).items())
