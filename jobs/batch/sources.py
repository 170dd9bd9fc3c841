"""Read batch files (CSV, JSON, JSONL) as a stream of raw records.

Pure: text streams in, records out; no validation beyond the file's own syntax. Row
numbers are the ones a person sees: in a CSV the header is row 1, in JSONL the line
number, in JSON the item's position counting from 1.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any, TextIO

from jobs.batch.text import (
    MAX_DEPTH,
    OutOfLimits,
    bounded_int,
    finite_float,
    loads,
    text_problem,
)

_CHUNK = 1 << 16
# Documented limits (README, "Validation"): past them a file fails fast, naming the line.
MAX_LINE = 1 << 20  # characters in one line of CSV or JSONL (a quoted cell may span lines)
MAX_ITEM = 1 << 20  # characters in one item of a JSON array
MAX_COLUMNS = 1000  # columns in a CSV header
# What may still follow a number's text at the window's edge: `12` | `.5`, `1e` | `+3`.
_NUMBER_GOES_ON = re.compile(r"[0-9.eE+-]*\Z")


class Format(Enum):
    """The kinds of batch file we read; the value is the name `--format` takes."""

    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"


_EXTENSIONS = {".csv": Format.CSV, ".json": Format.JSON, ".jsonl": Format.JSONL}
_EXTENSIONS[".ndjson"] = Format.JSONL


class InputError(Exception):
    """The file as a whole cannot be read: nothing in it is used."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}" if self.row is not None else self.message


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One row as written. CSV values are text (`textual`); JSON values are typed."""

    row: int
    values: dict[str, Any] = field(default_factory=dict)
    textual: bool = False
    problem: str | None = None  # the row is unreadable; the reason says why


@dataclass(frozen=True, slots=True)
class Defaults:
    """The `defaults` object of a JSON batch file: values every item gets."""

    values: dict[str, Any]


def detect_format(name: str, declared: str | None = None) -> Format:
    if declared:
        try:
            return Format(declared.lower())
        except ValueError:
            raise InputError(f"unknown format {declared!r}: use csv, json or jsonl") from None
    suffix = PurePath(name).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise InputError(
            f"cannot tell the format of {name!r} from its extension: "
            "name it .csv, .json or .jsonl, or pass --format"
        )
    return _EXTENSIONS[suffix]


def read_records(stream: TextIO, fmt: Format) -> Iterator[Defaults | RawRecord]:
    """Every record of the file, in order; a `Defaults`, if any, comes first."""
    if fmt is Format.CSV:
        return read_csv(stream)
    if fmt is Format.JSONL:
        return read_jsonl(stream)
    return read_json(stream)


# --- CSV --------------------------------------------------------------------------------


def _bounded_lines(stream: TextIO) -> Iterator[str]:
    """The stream's lines, failing fast on one longer than `MAX_LINE` (a file with no
    newline, `/dev/zero`) instead of holding it all in memory."""
    number = 0
    while line := stream.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise InputError(
                f"line {number} is longer than {MAX_LINE:,} characters: "
                "not a batch file, or a row far wider than any phone number's"
            )
        yield line


def _header(cells: list[str]) -> list[str]:
    if len(cells) > MAX_COLUMNS:
        raise InputError(
            f"the header row has {len(cells):,} columns: at most {MAX_COLUMNS:,}", row=1
        )
    names = [c.strip() for c in cells]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            raise InputError(f"column {position} of the header row has no name", row=1)
        if (problem := text_problem(name)) is not None:
            raise InputError(f"column {position} of the header row {problem}", row=1)
        if name in seen:
            raise InputError(f"column {name!r} appears twice in the header row", row=1)
        seen.add(name)
    if "id" not in seen:
        near = [n for n in names if n.lower() == "id" or n.lower().strip("_ ") == "id"]
        hint = f" (found {near[0]!r}: rename it to 'id')" if near else ""
        raise InputError(f"the header row has no 'id' column{hint}", row=1)
    return names


def read_csv(stream: TextIO) -> Iterator[RawRecord]:
    reader = csv.reader(_bounded_lines(stream), strict=True)
    row = 0  # the last row read; a quoted cell may span lines, so not reader.line_num
    try:
        first = next(reader, None)
        if first is None:
            raise InputError("the file is empty: expected a header row with an 'id' column")
        names = _header(first)
        width = len(names)
        row = 1
        for cells in reader:
            row += 1
            if len(cells) == width and "" not in cells and not any(map(str.isspace, cells)):
                yield RawRecord(row, dict(zip(names, cells, strict=True)), True)
                continue  # the usual row, every cell filled: no cell to drop
            if not any(c.strip() for c in cells):
                continue  # a blank line still counts as a row, as in a spreadsheet
            if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
                yield RawRecord(
                    row,
                    problem=f"the row has {len(cells)} cells but the header has {len(names)}",
                )
                continue
            # A cell of only spaces is as empty as an empty one: "leave unchanged".
            values = {n: cell for n, cell in zip(names, cells, strict=False) if cell.strip()}
            yield RawRecord(row, values, textual=True)
    except csv.Error as exc:
        raise InputError(f"the CSV cannot be read: {exc}", row=row + 1) from None


# --- JSONL ------------------------------------------------------------------------------


def read_jsonl(stream: TextIO) -> Iterator[RawRecord]:
    for line_number, line in enumerate(_bounded_lines(stream), start=1):
        if not line.strip():
            continue
        try:
            value = loads(line.rstrip("\r\n"))  # a cut line's error stays on its line
        except json.JSONDecodeError as exc:
            yield RawRecord(line_number, problem=f"not valid JSON: {exc.msg} (column {exc.colno})")
            continue
        except OutOfLimits as exc:
            yield RawRecord(line_number, problem=f"not a body the API takes: {exc}")
            continue
        yield _item_record(line_number, value)


def _item_record(row: int, value: Any) -> RawRecord:
    if not isinstance(value, dict):
        kind = type(value).__name__ if value is not None else "null"
        return RawRecord(row, problem=f"expected a JSON object, got {_json_kind(kind)}")
    return RawRecord(row, value)


def _json_kind(python_name: str) -> str:
    return {
        "list": "a list",
        "str": "a string",
        "int": "a number",
        "float": "a number",
        "bool": "true or false",
    }.get(python_name, python_name)


# --- JSON -------------------------------------------------------------------------------


class _JsonStream:
    """Decode one JSON document value by value, holding only a window of the text."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._lines_before = 0  # newlines in the text already dropped from the window
        self._decoder = json.JSONDecoder(parse_int=bounded_int, parse_float=finite_float)

    def _fill(self) -> bool:
        if self._eof:
            return False
        # Twice as much as the window holds: an item spanning many chunks is decoded again a
        # few times, not once per 64 KiB (which made a 38 MB item cost 24 s).
        data = self._stream.read(max(_CHUNK, len(self._buf) - self._pos))
        if not data:
            self._eof = True
            return False
        self._lines_before += self._buf.count("\n", 0, self._pos)
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def peek(self) -> str:
        """The next non-blank character, without consuming it ('' at the end)."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in " \t\r\n":
                self._pos += 1
            if self._pos < len(self._buf) or not self._fill():
                return self._buf[self._pos : self._pos + 1]

    def take(self, expected: str) -> None:
        found = self.peek()
        if found != expected:
            shown = repr(found) if found else "the end of the file"
            raise self.error(f"expected {expected!r}, found {shown}")
        self._pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as exc:
                if len(self._buf) - self._pos > MAX_ITEM:
                    raise self.error(f"an item is larger than {MAX_ITEM:,} characters") from None
                if self._fill():
                    continue
                raise self.error(exc.msg, exc.pos) from None
            except OutOfLimits as exc:
                raise self.error(f"a body the API does not take: {exc}") from None
            except RecursionError:
                raise self.error(f"nested deeper than {MAX_DEPTH} levels") from None
            if _NUMBER_GOES_ON.match(self._buf, end) and self._fill():
                continue  # a number at the window's edge may go on in the next chunk
            if end - self._pos > MAX_ITEM:
                raise self.error(f"an item is larger than {MAX_ITEM:,} characters")
            self._pos = end
            return value

    def error(self, message: str, pos: int | None = None) -> InputError:
        at = self._pos if pos is None else pos
        line = self._lines_before + self._buf.count("\n", 0, at) + 1
        return InputError(f"the JSON cannot be read: {message} (line {line})")


def _items(reader: _JsonStream) -> Iterator[RawRecord]:
    reader.take("[")
    if reader.peek() == "]":
        reader.take("]")
        return
    position = 0
    while True:
        position += 1
        yield _item_record(position, reader.value())
        if reader.peek() == ",":
            reader.take(",")
            continue
        reader.take("]")
        return


_TOP_KEYS = ("defaults", "items")


def read_json(stream: TextIO) -> Iterator[Defaults | RawRecord]:
    reader = _JsonStream(stream)
    start = reader.peek()
    if start == "[":
        yield from _items(reader)
    elif start == "{":
        yield from _read_json_object(reader)
    else:
        raise InputError('a JSON batch is a list of objects or {"defaults": {...}, "items": [...]}')
    if reader.peek():
        raise reader.error("unexpected text after the end of the batch")


def _read_json_object(reader: _JsonStream) -> Iterator[Defaults | RawRecord]:
    reader.take("{")
    held: list[RawRecord] | None = None  # items read before `defaults` turned up
    seen: set[str] = set()
    while reader.peek() != "}":
        if seen:
            reader.take(",")
        key = reader.value()
        if not isinstance(key, str) or key not in _TOP_KEYS or key in seen:
            raise InputError(
                f'unexpected key {key!r} in the batch object: expected "defaults" and "items"'
            )
        seen.add(key)
        reader.take(":")
        if key == "items":
            if "defaults" in seen:
                yield from _items(reader)
            else:
                held = list(_items(reader))
        else:
            defaults = reader.value()
            if not isinstance(defaults, dict):
                raise InputError('"defaults" must be an object of field values')
            yield Defaults(defaults)
    reader.take("}")
    if "items" not in seen:
        raise InputError('the batch object has no "items" list')
    yield from held or ()
