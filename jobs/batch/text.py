"""What can be sent: what a cell, a `--set` value or an id may not hold. Pure.

A lone surrogate is what Python makes of bytes that were not UTF-8 (stdin in the C
locale, `surrogateescape`) or of a JSON `"\\ud800"`: it cannot be encoded to send, so it
must be refused with its row before anything is written, not fail halfway through a
submission. NUL is refused in every text field; an id is also one segment of the
request's path (`PATCH /phone-number/{id}`): never `.` or `..`, no `/` or `\\`, no
control character, and bounded in length. A value nests at most `MAX_DEPTH` levels and
its integers fit in 64 bits (`MIN_INT` .. `MAX_INT`), checked without recursion; `loads`,
the JSON decoder every reader uses, keeps to the same limits.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

ID_MAX_LENGTH = 128  # Vapi's ids are UUIDs (36 characters)
MAX_DEPTH = 32  # objects and arrays in a body: Vapi's deepest (hooks) nest about 6
MIN_INT, MAX_INT = -(2**63), 2**64 - 1  # what a body's integers can be sent as (64 bits)
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
# Printable ASCII but '/' and '\\', at most ID_MAX_LENGTH: every id Vapi makes (a UUID).
_PLAIN_ID = re.compile(rf"[ -.0-\[\]-~]{{1,{ID_MAX_LENGTH}}}")


def _code(char: str) -> str:
    return f"U+{ord(char):04X}"


def text_problem(value: str) -> str | None:
    """Why `value` cannot be sent as text, or None."""
    if value.isascii() and "\x00" not in value:
        return None  # nearly every cell: no scan
    found = _UNSENDABLE.search(value)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "holds a NUL character (U+0000), which no text field may hold"
    return (
        f"is not valid text: a lone surrogate ({_code(char)}), from bytes that were not "
        "UTF-8 or a JSON escape of half a character"
    )


def id_problem(number_id: str) -> str | None:
    """Why `number_id` cannot name one number in the request's path, or None."""
    if _PLAIN_ID.fullmatch(number_id) and number_id not in (".", ".."):
        return None  # nearly every id: one match, in C
    if len(number_id) > ID_MAX_LENGTH:
        return f"the id is longer than {ID_MAX_LENGTH} characters ({len(number_id)})"
    if number_id in (".", ".."):
        return f"the id cannot be {number_id!r}: it would send the request to another path"
    if "/" in number_id or "\\" in number_id:
        return "the id cannot hold '/' or '\\': it is one segment of the request's path"
    if (problem := text_problem(number_id)) is not None:
        return f"the id {problem}"
    for char in number_id:
        if unicodedata.category(char).startswith("C"):
            return f"the id holds a control or unassigned character ({_code(char)})"
    return None


def _problem(value: Any, depth: int) -> str | None:
    """What is wrong with one value itself (not its members), or None."""
    if depth > MAX_DEPTH:
        return f"is nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not MIN_INT <= value <= MAX_INT:
        return f"is a number out of range: integers are {MIN_INT} .. {MAX_INT}"
    if isinstance(value, float) and not math.isfinite(value):
        return "is a number out of range: not finite"
    return None


def _walk(values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every field's problem, in order; iterative, so no nesting can exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(v, str(k), 1) for k, v in reversed(list(values.items()))]
    while stack:
        value, path, depth = stack.pop()
        if (problem := _problem(value, depth)) is not None:
            yield path, problem
        elif isinstance(value, Mapping):
            for key, item in reversed(list(value.items())):
                key_text = str(key)
                if (bad := text_problem(key_text)) is not None:
                    yield path, f"has a field name that {bad}"
                    continue
                stack.append((item, f"{path}.{key_text}", depth + 1))
        elif isinstance(value, list):
            members = [(item, f"{path}[{n}]", depth + 1) for n, item in enumerate(value)]
            stack.extend(reversed(members))


def plain_text_row(values: Mapping[str, str]) -> bool:
    """Whether a CSV row's cells are all ASCII without NUL: one check in C, for nearly
    every row (its column names are the header's, checked once)."""
    return _plain("".join(values.values()))


def _plain(text: str) -> bool:
    return text.isascii() and "\x00" not in text


def first_text_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first field (dotted path) that cannot be sent, with why (text that is not
    UTF-8 or holds a NUL, nesting deeper than `MAX_DEPTH`, a number out of range); None
    if every one can."""
    try:
        if plain_text_row(values) and _plain("".join(values)):
            return None  # text only, ASCII (names too): one check in C, no walk
    except TypeError:  # a value that is not text (JSON input): walk it
        pass
    return next(_walk(values), None)


def bounded_int(text: str) -> int:
    """A JSON integer, if it is within `MIN_INT` .. `MAX_INT` (checked on its digits
    first: Python refuses to convert more than 4,300 of them at all)."""
    digits = text.lstrip("-+").lstrip("0")
    if len(digits) > len(str(MAX_INT)) or not MIN_INT <= (value := int(text)) <= MAX_INT:
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"
        raise OutOfLimits(
            f"the number {shown} is out of range: integers are {MIN_INT} .. {MAX_INT}"
        )
    return value


def finite_float(text: str) -> float:
    """A JSON number with a fraction or an exponent, if it is finite."""
    value = float(text)
    if not math.isfinite(value):
        raise OutOfLimits(f"the number {text[:24]} is out of range")
    return value


class OutOfLimits(ValueError):
    """JSON that is well formed but beyond what a body may hold (numbers, nesting)."""


def loads(text: str) -> Any:
    """`json.loads` within the limits: `OutOfLimits` past them, `JSONDecodeError` as ever."""
    try:
        return json.loads(text, parse_int=bounded_int, parse_float=finite_float)
    except RecursionError:
        raise OutOfLimits(f"it is nested deeper than {MAX_DEPTH} levels") from None


def printable(text: str) -> str:
    """`text` as it may be shown on a terminal: every control, format or separator
    character (an escape sequence, a right-to-left override, a newline) as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
