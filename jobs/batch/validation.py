"""Validate raw records against the request models, with messages a person can act on.

Pure: a `RawRecord` in, a `BatchItem` (a compact JSON body ready to send) or the row's
problems out. Every problem names its row, its column and the reason in plain words.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from jobs.batch.body_cache import BodyCache
from jobs.batch.coercion import CellProblem, merge, nest
from jobs.batch.fields import PathPart, field_names, format_path, readable_path
from jobs.batch.models import PROVIDERS, UPDATE_MODELS, dump_body, wire_fields
from jobs.batch.redaction import REDACTED, is_secret_path
from jobs.batch.sources import InputError, RawRecord
from jobs.batch.text import first_text_problem, id_problem, plain_text_row, printable

_QUOTED = re.compile(r"'([^']*)'")
_MAX_LISTED = 8


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with a row: where it is (row, column, when known) and what is wrong."""

    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        """One line a terminal shows as it is: a column named in a file's header may hold
        anything, so it is shown escaped."""
        where = [f"row {self.row}"] if self.row is not None else []
        if self.column:
            where.append(f"column {printable(self.column)}")
        message = printable(self.message)
        return f"{', '.join(where)}: {message}" if where else message

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message}


@dataclass(frozen=True, slots=True)
class BatchItem:
    """A validated row: what one task will send."""

    row: int
    number_id: str
    body: str  # compact JSON of the request body; held as text to keep 100k rows small
    expect: str | None = None  # rollback: what the number should still hold (JSON)


def suggest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate `name` most likely meant, if one is close enough."""
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    near = suggest(name, candidates)
    return f"; did you mean {near!r}?" if near else ""


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class RowValidator:
    """Validates records one by one; remembers ids to catch a number listed twice."""

    def __init__(
        self,
        *,
        provider: str | None = None,
        overrides: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self._default_provider = provider
        self._overrides = dict(overrides or {})
        self._defaults: dict[str, Any] = dict(defaults or {})
        self._base_cache: dict[str, tuple[dict[str, Any], list[CellProblem]]] = {}
        self._seen: dict[str, int] = {}
        self._bodies = BodyCache(UPDATE_MODELS, self._sound_base)

    def set_defaults(self, defaults: Mapping[str, Any]) -> None:
        if "id" in defaults:
            raise InputError('"defaults" cannot hold an id: every item needs its own')
        self._defaults = dict(defaults)
        self._base_cache.clear()
        self._bodies.clear()

    def validate(self, record: RawRecord) -> BatchItem | list[RowError]:
        if record.problem is not None:
            return [RowError(record.row, None, record.problem)]
        plain = record.textual and plain_text_row(record.values)
        unsendable = None if plain else first_text_problem(record.values)
        if unsendable is not None:
            column, problem = unsendable
            return [RowError(record.row, column or None, f"{column or 'a field'} {problem}")]
        errors: list[RowError] = []
        number_id = self._check_id(record.row, record.values.get("id"), errors)
        provider = self._provider(record.row, record.values.get("provider"), errors)
        if provider is None:
            return errors
        if record.textual and number_id is not None and not errors:
            # Most rows of a big file: the shortcut, which stands aside for anything odd.
            body = self._bodies.body(provider, record.values)
            if body is not None:
                return BatchItem(record.row, number_id, body)
        return self._validate_fully(record, number_id, provider, errors)

    def _validate_fully(
        self, record: RawRecord, number_id: str | None, provider: str, errors: list[RowError]
    ) -> BatchItem | list[RowError]:
        values = {k: v for k, v in record.values.items() if k not in ("id", "provider")}
        model = UPDATE_MODELS[provider]
        base, base_problems = self._base(provider)
        own, problems = nest(model, values, textual=record.textual)
        errors.extend(RowError(record.row, p.column, p.message) for p in base_problems)
        errors.extend(RowError(record.row, p.column, p.message) for p in problems)
        body = merge(base, own)
        body["provider"] = provider
        try:
            update = model.model_validate(body)
        except ValidationError as exc:
            where = _Columns(list(values), list(self._overrides))
            errors.extend(_row_errors(record.row, model, provider, exc, where))
        if errors or number_id is None:
            return errors
        return BatchItem(record.row, number_id, orjson.dumps(dump_body(update)).decode())

    def _check_id(self, row: int, value: Any, errors: list[RowError]) -> str | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(RowError(row, "id", "the phone number id is missing"))
            return None
        if not isinstance(value, str):
            errors.append(RowError(row, "id", f"expected the id as text, got {_shown(value)}"))
            return None
        number_id = value.strip()
        if (problem := id_problem(number_id)) is not None:
            errors.append(RowError(row, "id", problem))
            return None
        first = self._seen.setdefault(number_id, row)
        if first != row:
            errors.append(
                RowError(row, "id", f"number {number_id} is listed twice: rows {first} and {row}")
            )
        return number_id

    def _provider(self, row: int, value: Any, errors: list[RowError]) -> str | None:
        # The row's own value, then --set, then the file's defaults, then --provider.
        provider = value if value is not None else self._overrides.get("provider")
        provider = provider if provider is not None else self._defaults.get("provider")
        provider = provider if provider is not None else self._default_provider
        if provider is None:
            errors.append(
                RowError(row, "provider", "no provider: add a provider column or pass --provider")
            )
            return None
        if not isinstance(provider, str) or provider not in UPDATE_MODELS:
            allowed = ", ".join(PROVIDERS)
            hint = _did_you_mean(str(provider), PROVIDERS)
            errors.append(
                RowError(row, "provider", f"{_shown(provider)} is not a provider ({allowed}){hint}")
            )
            return None
        return str(provider)

    def _sound_base(self, provider: str) -> dict[str, Any] | None:
        base, problems = self._base(provider)
        return None if problems else base

    def _base(self, provider: str) -> tuple[dict[str, Any], list[CellProblem]]:
        """The defaults and --set values as this provider's model reads them."""
        if provider not in self._base_cache:
            model = UPDATE_MODELS[provider]
            defaults = {k: v for k, v in self._defaults.items() if k not in ("provider", "id")}
            from_file, problems = nest(model, defaults, textual=False)
            from_flags, flag_problems = nest(model, self._overrides, textual=True)
            problems = [CellProblem(f"defaults.{p.column}", p.message) for p in problems]
            problems += [CellProblem(f"--set {p.column}", p.message) for p in flag_problems]
            self._base_cache[provider] = (merge(from_file, from_flags), problems)
        base, problems = self._base_cache[provider]
        if not base:
            return {}, problems
        return orjson.loads(orjson.dumps(base)), problems  # a copy: rows share no objects


def _row_errors(
    row: int,
    model: type[BaseModel],
    provider: str,
    exc: ValidationError,
    columns: _Columns,
) -> list[RowError]:
    errors = []
    for error in exc.errors(include_url=False):
        path = readable_path(model, error["loc"])
        column, inner = columns.find(path)
        if is_secret_path(path):
            error = {**error, "input": REDACTED}  # never echo a secret back
        message = describe(model, provider, error, path)
        if inner:
            message = f"{format_path(path)}: {message}"
        errors.append(RowError(row, column, message))
    return errors


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where a row's values came from: its own columns, or `--set` flags."""

    own: Sequence[str]
    flags: Sequence[str]

    def find(self, path: Sequence[PathPart]) -> tuple[str, bool]:
        """The column a person wrote for this path, and whether the path goes deeper."""
        for end in range(len(path), 0, -1):
            prefix = path[:end]
            if all(isinstance(p, str) for p in prefix):
                dotted = ".".join(str(p) for p in prefix)
                if dotted in self.own:
                    return dotted, end < len(path)
                if dotted in self.flags:
                    return f"--set {dotted}", end < len(path)
        return format_path(path), False


def describe(
    model: type[BaseModel], provider: str, error: ErrorDetails, path: Sequence[PathPart]
) -> str:
    """One pydantic error in plain words."""
    kind = error["type"]
    value = error.get("input")
    name = str(path[-1]) if path else ""
    if kind == "missing":
        return f"required field {name!r} is missing"
    if kind == "extra_forbidden":
        return _unknown_field(model, provider, tuple(path))
    if kind == "literal_error":
        return _not_allowed(value, error.get("ctx", {}).get("expected", ""))
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return _not_allowed(ctx.get("tag"), ctx.get("expected_tags", ""), ctx.get("discriminator"))
    if kind == "union_tag_not_found":
        field = error.get("ctx", {}).get("discriminator", "type").strip("'")
        return f"needs a {field!r} field saying which kind of object it is"
    expectation = _EXPECTED.get(kind)
    if expectation:
        return f"expected {expectation}, got {_shown(value)}"
    return str(error["msg"])


_EXPECTED = {
    "string_type": "text",
    "bool_type": "true or false",
    "number_type": "a number",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dict_type": "an object",
    "list_type": "a list",
}


@lru_cache(maxsize=4096)  # the same unknown column in every row: worked out once
def _unknown_field(model: type[BaseModel], provider: str, path: tuple[PathPart, ...]) -> str:
    name = str(path[-1])
    if len(path) == 1:
        owners = [p for p, m in UPDATE_MODELS.items() if p != provider and name in wire_fields(m)]
        if owners:
            return (
                f"{name!r} is a field of {' and '.join(owners)} numbers, not of {provider} numbers"
            )
    siblings = field_names(model, path[:-1])
    return f"unknown field {name!r}{_did_you_mean(name, siblings)}"


def _not_allowed(value: Any, expected: str, field: str | None = None) -> str:
    allowed = _QUOTED.findall(expected)
    subject = f"{field.strip(chr(39))} {_shown(value)}" if field else _shown(value)
    if not allowed:
        return f"{subject} is not allowed"
    hint = _did_you_mean(str(value), allowed)
    if len(allowed) > _MAX_LISTED:
        return f"{subject} is not one of the {len(allowed)} allowed values{hint}"
    return f"{subject} is not one of: {', '.join(allowed)}{hint}"
