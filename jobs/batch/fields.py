"""What the request models say about a field, found by walking their type annotations.

Used to coerce CSV cells by the schema (a `number` column gets a number, an object column
gets parsed JSON), to turn pydantic's error locations into the paths a person wrote, and
to suggest the field a person probably meant.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from enum import Enum
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Tag

from jobs.batch.models import wire_fields

PathPart = str | int


class Kind(Enum):
    """How a value written as text becomes the value the field takes."""

    TEXT = "text"
    BOOL = "bool"
    NUMBER = "number"
    JSON = "json"  # an object or a list, written as JSON
    TEXT_OR_JSON = "text-or-json"  # text, or an object written as JSON (a message)
    UNKNOWN = "unknown"  # no such field: the validator names it


def _unwrap(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    metadata: tuple[Any, ...] = ()
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, metadata = args[0], metadata + tuple(args[1:])
    return tp, metadata


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_number(tp: Any) -> bool:
    return _is_union(tp) and set(get_args(tp)) == {int, float}


def _child(tp: Any, key: str) -> Any | None:
    """The type of field `key` (an API name) of `tp`, or None if it has no such field."""
    tp, _ = _unwrap(tp)
    if _is_model(tp):
        attr = wire_fields(tp).get(key)
        return None if attr is None else _field_type(tp, attr)
    if _is_union(tp):
        for member in get_args(tp):
            found = _child(member, key)
            if found is not None:
                return found
        return None
    if get_origin(tp) is dict:
        return get_args(tp)[1]
    return None


def _field_type(model: type[BaseModel], attr: str) -> Any:
    info = model.model_fields[attr]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _leaf_kind(tp: Any) -> Kind:
    tp, _ = _unwrap(tp)
    if tp is bool:
        return Kind.BOOL
    if _is_number(tp):
        return Kind.NUMBER
    if tp is str or get_origin(tp) is Literal or tp is Any:
        return Kind.TEXT
    if _is_union(tp) and any(_unwrap(member)[0] is str for member in get_args(tp)):
        return Kind.TEXT_OR_JSON
    return Kind.JSON


@cache
def field_kind(model: type[BaseModel], path: tuple[str, ...]) -> Kind:
    """The kind of the field at a dotted path, e.g. ("server", "timeoutSeconds")."""
    tp: Any = model
    for key in path:
        tp = _child(tp, key)
        if tp is None:
            return Kind.UNKNOWN
    if _unwrap(tp)[0] is Any:
        return Kind.TEXT  # a value inside a free-form object, e.g. a server header
    return _leaf_kind(tp)


def field_names(model: type[BaseModel], path: Sequence[PathPart]) -> list[str]:
    """The API names an object at `path` (a readable path) accepts."""
    tp: Any = model
    for key in path:
        tp, _ = _unwrap(tp)
        if isinstance(key, int):
            tp = get_args(tp)[0] if get_origin(tp) is list else None
        else:
            tp = _child(tp, key)
        if tp is None:
            return []
    names: list[str] = []
    for member in _members(tp):
        names.extend(n for n in wire_fields(member) if n not in names)
    return names


def _members(tp: Any) -> list[type[BaseModel]]:
    tp, _ = _unwrap(tp)
    if _is_model(tp):
        return [tp]
    if _is_union(tp):
        return [m for arg in get_args(tp) for m in _members(arg)]
    return []


def _member_for_tag(union: Any, tag: str) -> Any | None:
    for member in get_args(union):
        inner, metadata = _unwrap(member)
        if any(isinstance(m, Tag) and m.tag == tag for m in metadata):
            return inner
        if _is_model(inner):
            for info in inner.model_fields.values():
                literal = get_origin(info.annotation) is Literal
                if literal and get_args(info.annotation) == (tag,):
                    return inner
    return None


def readable_path(model: type[BaseModel], loc: Sequence[PathPart]) -> list[PathPart]:
    """Pydantic's error location without the union tags it inserts.

    `("fallbackDestination", "number", "message", "custom-message", "type")` becomes
    `["fallbackDestination", "message", "type"]`: what the person wrote.
    """
    out: list[PathPart] = []
    tp: Any = model
    parts = list(loc)
    while parts:
        tp, _ = _unwrap(tp)
        if _is_union(tp) and isinstance(parts[0], str):
            member = _member_for_tag(tp, parts[0])
            if member is not None:
                parts.pop(0)
                tp = member
                continue
        part = parts.pop(0)
        out.append(part)
        if tp is None:
            continue
        if isinstance(part, int):
            tp = get_args(tp)[0] if get_origin(tp) is list else None
        else:
            tp = _child(tp, part)
    return out


def format_path(path: Sequence[PathPart]) -> str:
    """`["hooks", 0, "do"]` -> `hooks[0].do`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
