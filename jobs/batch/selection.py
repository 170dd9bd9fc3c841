"""Selector batches: "every number whose assistantId is asst_old". Pure.

Conditions compare a number's current value at a (dotted) field with text read by the
field's schema type, so `smsEnabled=true` matches the boolean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jobs.batch.coercion import CellError, coerce_text
from jobs.batch.fields import Kind, field_kind
from jobs.batch.intake import parse_pairs, validate_records
from jobs.batch.models import PROVIDERS, UPDATE_MODELS
from jobs.batch.sources import RawRecord
from jobs.batch.validation import RowError


def parse_conditions(pairs: Iterable[str]) -> dict[str, str]:
    """`--where FIELD=VALUE` flags: every one must hold."""
    return parse_pairs(pairs, "--where")


def _dig(number: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = number
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _expected(provider: Any, path: list[str], text: str) -> Any:
    model = UPDATE_MODELS.get(provider) if isinstance(provider, str) else None
    if model is None:
        return text
    kind = field_kind(model, tuple(path))
    if kind is Kind.UNKNOWN:
        return text
    try:
        return coerce_text(kind, text)
    except CellError:
        return text


def matches(number: Mapping[str, Any], conditions: Mapping[str, str]) -> bool:
    for name, text in conditions.items():
        path = name.split(".")
        value = _dig(number, path)
        if value is None:
            return False
        if value != _expected(number.get("provider"), path, text) and str(value) != text:
            return False
    return True


def selected_records(
    numbers: Iterable[Mapping[str, Any]], conditions: Mapping[str, str]
) -> list[RawRecord]:
    """One record per matching number, carrying its id and provider; rows count from 1."""
    found = [n for n in numbers if matches(n, conditions)]
    return [
        RawRecord(row, {"id": n["id"], "provider": n.get("provider")})
        for row, n in enumerate(found, start=1)
    ]


def values_problems(values: Mapping[str, str]) -> list[RowError]:
    """The `set` values of a selection validated as a file's row would be: [] if some
    provider's numbers can take them, else what is wrong (as for the first provider), so
    a selection no number could take is refused before anything is queued."""
    first: list[RowError] = []
    for provider in PROVIDERS:
        record = RawRecord(1, {"id": "selection", "provider": provider})
        intake = validate_records([record], overrides=values)
        if intake.ok:
            return []
        first = first or intake.errors
    return first
