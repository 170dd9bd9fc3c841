"""Turn a row's flat values into the nested, typed body the models validate.

Dotted names build nested objects (`server.url`), text is coerced by the field's schema
type (`"true"` -> true, `"20"` -> 20, a JSON cell for objects and lists; a message is its
text, or a JSON object if it starts with `{`), and text that does not fit is left as it is
so that validation names the problem.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from jobs.batch.fields import Kind, field_kind
from jobs.batch.text import OutOfLimits, bounded_int, loads

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_INT = re.compile(r"[+-]?\d+")
# Plain decimal notation only: Python's float() would also take "1_000" and "infinity".
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class CellProblem:
    """A value that cannot go into the body: its column and the reason."""

    column: str
    message: str


class CellError(ValueError):
    """Raised when a cell's text cannot be read as its field needs (e.g. broken JSON)."""


def coerce_text(kind: Kind, text: str) -> Any:
    """The value `text` stands for in a field of this kind."""
    stripped = text.strip()
    if kind is Kind.BOOL:
        lowered = stripped.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        return text
    if kind is Kind.NUMBER:
        return _number(stripped, text)
    if kind is Kind.TEXT_OR_JSON and not stripped.startswith("{"):
        return text
    if kind in (Kind.JSON, Kind.TEXT_OR_JSON):
        try:
            return loads(stripped)
        except json.JSONDecodeError as exc:
            raise CellError(f"not valid JSON: {exc.msg} (character {exc.pos + 1})") from None
        except OutOfLimits as exc:
            raise CellError(f"not a body the API takes: {exc}") from None
    return text


def _number(stripped: str, text: str) -> Any:
    if _INT.fullmatch(stripped):
        try:
            return bounded_int(stripped)
        except OutOfLimits as exc:
            raise CellError(str(exc)) from None
    if not _FLOAT.fullmatch(stripped):
        return text
    value = float(stripped)
    return value if math.isfinite(value) else text


def nest(
    model: type[BaseModel], values: Mapping[str, Any], *, textual: bool
) -> tuple[dict[str, Any], list[CellProblem]]:
    """Build the nested body from `{"server.url": ..., "hooks": ...}`-style values."""
    body: dict[str, Any] = {}
    problems: list[CellProblem] = []
    owners = _Owners()
    for column, raw in values.items():
        path = tuple(column.split("."))
        if not all(path):
            problems.append(CellProblem(column, "a field name has an empty part"))
            continue
        clash = owners.clash(path)
        if clash is not None:
            problems.append(CellProblem(column, f"sets the same field as {clash!r}"))
            continue
        try:
            value = coerce_text(field_kind(model, path), raw) if textual else raw
        except CellError as exc:
            problems.append(CellProblem(column, str(exc)))
            continue
        owners.claim(path, column)
        _put(body, path, value)
    return body, problems


class _Owners:
    """Which column set which path, so `server` and `server.url` cannot both set it."""

    def __init__(self) -> None:
        self._leaves: dict[tuple[str, ...], str] = {}
        self._inner: dict[tuple[str, ...], str] = {}

    def clash(self, path: tuple[str, ...]) -> str | None:
        found = self._leaves.get(path) or self._inner.get(path)
        if found:
            return found
        for end in range(1, len(path)):
            if path[:end] in self._leaves:
                return self._leaves[path[:end]]
        return None

    def claim(self, path: tuple[str, ...], column: str) -> None:
        self._leaves[path] = column
        for end in range(1, len(path)):
            self._inner.setdefault(path[:end], column)


def _put(body: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = body
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, object by object: the row's own value wins."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(below, dict) and isinstance(value, dict):
            merged[key] = merge(below, value)
        else:
            merged[key] = value
    return merged
