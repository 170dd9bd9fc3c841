"""Read a whole batch and validate every row before anything is sent.

Pure apart from reading the given text stream. Memory holds one compact record per
valid row (the JSON body as text), never a copy of the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from jobs.batch.sources import Defaults, Format, InputError, RawRecord, read_records
from jobs.batch.text import text_problem
from jobs.batch.validation import BatchItem, RowError, RowValidator

MAX_REPORTED_ERRORS = 10_000  # past this, a file is wrong as a whole; count the rest
MAX_ERRORS_PER_ROW = 20  # a row wrong in more ways than this is summed up


@dataclass
class Intake:
    """A batch read and validated: the valid rows' items, the others' errors, and counts."""

    items: list[BatchItem] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0
    errors_not_listed: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.errors_not_listed

    @property
    def bad_rows(self) -> int:
        return len({e.row for e in self.errors}) + self.errors_not_listed


def parse_pairs(pairs: Iterable[str], flag: str) -> dict[str, str]:
    """`FIELD=VALUE` flags as a mapping; each value stays text, read later by its field."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"{flag} {pair!a}: write it as FIELD=VALUE, e.g. assistantId=asst_1")
        if (problem := text_problem(pair)) is not None:
            raise InputError(f"{flag} {pair!a} {problem}")
        values[name.strip()] = value
    return values


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """`--set FIELD=VALUE` flags: values every row gets."""
    values = parse_pairs(pairs, "--set")
    if "id" in values:
        raise InputError("--set id=...: every row needs its own id")
    return values


def validate_records(
    records: Iterable[Defaults | RawRecord],
    *,
    provider: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Intake:
    """Every record validated, the batch's defaults applied as they come."""
    return _validate_all(records, RowValidator(provider=provider, overrides=overrides))


def _validate_all(records: Iterable[Defaults | RawRecord], validator: RowValidator) -> Intake:
    intake = Intake()
    for record in records:
        if isinstance(record, Defaults):
            validator.set_defaults(record.values)
            continue
        intake.rows += 1
        result = validator.validate(record)
        if isinstance(result, BatchItem):
            intake.items.append(result)
        elif len(intake.errors) < MAX_REPORTED_ERRORS:
            intake.errors.extend(_capped(result))
        else:
            intake.errors_not_listed += 1
    if intake.rows == 0:
        raise InputError("the batch has no rows: nothing to do")
    return intake


def _capped(errors: list[RowError]) -> list[RowError]:
    """A row's errors, the first `MAX_ERRORS_PER_ROW` of them and how many more."""
    if len(errors) <= MAX_ERRORS_PER_ROW:
        return errors
    more = len(errors) - MAX_ERRORS_PER_ROW
    last = RowError(errors[0].row, None, f"... and {more} more problems in this row")
    return [*errors[:MAX_ERRORS_PER_ROW], last]


def read_batch(
    stream: TextIO,
    fmt: Format,
    *,
    provider: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Intake:
    """Every row of the stream, validated; raises `InputError` if the file is unreadable."""
    return validate_records(read_records(stream, fmt), provider=provider, overrides=overrides)
