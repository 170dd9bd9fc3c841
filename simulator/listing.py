"""`GET /phone-number` as Vapi answers it: a plain array, newest first, no cursor."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

_FILTERS = {
    f"{field}{op}": (field, op)
    for field in ("createdAt", "updatedAt")
    for op in ("Gt", "Lt", "Ge", "Le")
}
_TESTS: dict[str, Callable[[datetime, datetime], bool]] = {
    "Gt": operator.gt,
    "Lt": operator.lt,
    "Ge": operator.ge,
    "Le": operator.le,
}


def _moment(text: str, name: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date") from None


def list_matching(
    numbers: Iterable[dict[str, Any]], query: Mapping[str, str]
) -> list[dict[str, Any]]:
    unknown = set(query) - set(_FILTERS) - {"limit"}
    if unknown:
        raise ValueError(f"property {sorted(unknown)[0]} should not exist")
    raw_limit = query.get("limit", "100")
    if not raw_limit.isdigit() or not 0 <= int(raw_limit) <= 1000:
        raise ValueError("limit must not be greater than 1000 and not less than 0")
    tests = [
        (field, _TESTS[op], _moment(value, name))
        for name, value in query.items()
        if name in _FILTERS
        for field, op in [_FILTERS[name]]
    ]
    found = [
        n
        for n in numbers
        if all(test(_moment(n[field], field), bound) for field, test, bound in tests)
    ]
    found.sort(key=lambda n: n["createdAt"], reverse=True)
    return found[: int(raw_limit)]
