"""Text that can be sent: what a cell, a `--set` value or an id may not hold. Pure.

A lone surrogate is what Python makes of bytes that were not UTF-8 (stdin in the C
locale, `surrogateescape`) or of a JSON `"\\ud800"`: it cannot be encoded to send, so it
must be refused with its row before anything is written, not fail halfway through a
submission. NUL is refused in every text field; an id is also one segment of the
request's path (`PATCH /phone-number/{id}`): never `.` or `..`, no `/` or `\\`, no
control character, and bounded in length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

ID_MAX_LENGTH = 128  # Vapi's ids are UUIDs (36 characters)
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")


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


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        if (problem := text_problem(value)) is not None:
            yield path, problem
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key)
            if (problem := text_problem(key_text)) is not None:
                yield path, f"has a field name that {problem}"
            else:
                yield from _walk(item, f"{path}.{key_text}" if path else key_text)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _walk(item, f"{path}[{n}]")


def first_text_problem(values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first field (dotted path) whose text cannot be sent, with why; None if all can."""
    return next(_walk(values, ""), None)


def printable(text: str) -> str:
    """`text` as it may be shown on a terminal: every control, format or separator
    character (an escape sequence, a right-to-left override, a newline) as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
