"""A shortcut to the request body of a well-formed text row, taken field by field.

A big CSV repeats itself: every row has the same columns, and most columns hold one of a
few values. The full path (`jobs.batch.validation`) nests, coerces, validates and dumps every
row whole. Here each top-level field's share of the body, `"server":{"url":"..."}`, is
worked out once per distinct cell text by that same full path (the real model, on a body
holding only that field) and reused; a plain text field (`name`) needs no model at all.

It is only a shortcut: anything it does not recognise, or any field that does not
validate, gives `None`, and the caller takes the full path, whose errors are the ones a
person sees. It serves only models whose top-level fields validate independently of
each other (`_independent`); `tests/test_validation_shortcut.py` holds it to the full path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    PlainValidator,
    ValidationError,
    WrapValidator,
)

from jobs.batch.coercion import merge, nest
from jobs.batch.models import dump_body, wire_fields

# Bounds on what is remembered: a file with unusual variety just takes more full paths.
MAX_SHAPES = 256
MAX_VALUES_PER_FIELD = 4096

Cells = Mapping[str, Any]
Fragment = Callable[[Cells], str | None]
# The defaults and --set values as a provider's model reads them; None if they have problems.
Base = Callable[[str], dict[str, Any] | None]
_PROBE = 'a "probe" \\ é\n'
_FIELD_VALIDATORS = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)


def _independent(model: type[BaseModel]) -> bool:
    """Whether each top-level field validates and dumps the same alone as in a full body.

    Not so if the model has validators or serializers of its own (they may look at
    several fields), a post-init hook, a field validator on a top-level field, a required
    field besides `provider`, or a field left out of dumps. Validators inside a field's
    own objects see only those objects, and come along: the real model validates."""
    decorators = model.__pydantic_decorators__
    try:
        kinds = [kind.name for kind in dataclasses.fields(decorators)]
    except TypeError:  # pydantic's internals changed shape: take no chances
        return False
    if any(getattr(decorators, kind) for kind in kinds):
        return False
    if model.model_post_init is not BaseModel.model_post_init:
        return False
    fields = model.model_fields
    if [name for name, info in fields.items() if info.is_required()] != ["provider"]:
        return False
    return not any(
        info.exclude or any(isinstance(m, _FIELD_VALIDATORS) for m in info.metadata)
        for info in fields.values()
    )


def _plain_text(model: type[BaseModel], attr: str) -> bool:
    """A field that takes any text as it is and dumps it unchanged."""
    info = model.model_fields[attr]
    if info.annotation is not str or info.metadata or info.discriminator is not None:
        return False
    return not any(key.startswith("str_") for key in model.model_config)


def _json_text(value: str) -> str | None:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:  # lone surrogates: let the full path say so
        return None


class _Field:
    """One top-level field of one provider's body: its validated, dumped share by cells."""

    def __init__(
        self,
        model: type[BaseModel],
        provider: str,
        name: str,
        base: dict[str, Any],
        provider_key: str,
    ) -> None:
        self._model = model
        self._provider = provider
        self._name = name
        self._base = {name: base[name]} if name in base else {}
        self._provider_key = provider_key
        self._known: dict[Any, str | None] = {}

    def share(self, cells: Cells) -> str | None:
        """`"name":value` as the full model would dump it, or None if it does not validate."""
        own, problems = nest(self._model, cells, textual=True)
        if problems or set(own) - {self._name}:
            return None
        body = merge(self._base, own)
        body["provider"] = self._provider
        try:
            dumped = dump_body(self._model.model_validate(body))
        except ValidationError:
            return None
        keys = [key for key in dumped if key != self._provider_key]
        if len(keys) != 1:
            return None
        try:
            return orjson.dumps({keys[0]: dumped[keys[0]]})[1:-1].decode()
        except orjson.JSONEncodeError:  # a huge int, a lone surrogate: the full path says
            return None

    def cached(self, key: Any, cells: Cells) -> str | None:
        if key in self._known:
            return self._known[key]
        found = self.share(cells)
        if len(self._known) < MAX_VALUES_PER_FIELD:
            self._known[key] = found
        return found


def _constant(text: str) -> Fragment:
    return lambda values: text


def _plain(column: str, prefix: str) -> Fragment:
    def fragment(values: Cells) -> str | None:
        text = values[column]
        if type(text) is not str:
            return None
        try:
            return prefix + orjson.dumps(text).decode()
        except orjson.JSONEncodeError:  # lone surrogates: let the full path say so
            return None

    return fragment


def _one_cell(column: str, field: _Field) -> Fragment:
    def fragment(values: Cells) -> str | None:
        cell = values[column]
        return field.cached(cell, {column: cell}) if type(cell) is str else None

    return fragment


def _many_cells(columns: tuple[str, ...], field: _Field) -> Fragment:
    def fragment(values: Cells) -> str | None:
        key = tuple(values[c] for c in columns)
        if any(type(cell) is not str for cell in key):
            return None
        return field.cached(key, dict(zip(columns, key, strict=True)))

    return fragment


class _Provider:
    """What is known of one provider's model: its fields, in dump order, and their caches."""

    def __init__(self, model: type[BaseModel], provider: str, base: dict[str, Any]) -> None:
        self.model = model
        self.name = provider
        self.base = {k: v for k, v in base.items() if k != "provider"}
        self.attrs = wire_fields(model)
        self.order = {attr: position for position, attr in enumerate(model.model_fields)}
        only_provider = dump_body(model.model_validate({"provider": provider}))
        self.provider_key = next(iter(only_provider))
        self.provider_share = orjson.dumps(only_provider)[1:-1].decode()
        self.fields: dict[tuple[str, tuple[str, ...]], _Field] = {}
        self.plain_prefix: dict[str, str | None] = {}

    def field(self, name: str, columns: tuple[str, ...]) -> _Field:
        key = (name, columns)
        if key not in self.fields:
            self.fields[key] = _Field(self.model, self.name, name, self.base, self.provider_key)
        return self.fields[key]

    def plain(self, name: str) -> str | None:
        """`"name":` for a plain text field, checked once on the real model."""
        if name not in self.plain_prefix:
            self.plain_prefix[name] = None
            if _plain_text(self.model, self.attrs[name]) and name not in self.base:
                share = self.field(name, (name,)).share({name: _PROBE})
                text = _json_text(_PROBE)
                if share is not None and text is not None and share.endswith(":" + text):
                    self.plain_prefix[name] = share[: -len(text)]
        return self.plain_prefix[name]


class BodyCache:
    """Bodies of text rows, by row shape and by field; `None` sends a row the full way."""

    def __init__(self, models: Mapping[str, type[BaseModel]], base: Base) -> None:
        self._models = models
        self._base = base
        self._providers: dict[str, _Provider | None] = {}
        self._shapes: dict[tuple[str, tuple[str, ...]], tuple[Fragment, ...] | None] = {}

    def clear(self) -> None:
        """Defaults changed: every field's share may have changed with them."""
        self._providers.clear()
        self._shapes.clear()

    def body(self, provider: str, values: Cells) -> str | None:
        """The compact JSON body of a row whose values are all text, or None."""
        shape = (provider, tuple(values))
        if shape in self._shapes:
            plan = self._shapes[shape]
        elif len(self._shapes) < MAX_SHAPES:
            plan = self._shapes[shape] = self._plan(provider, shape[1])
        else:
            return None
        if plan is None:
            return None
        shares = [fragment(values) for fragment in plan]
        if None in shares:
            return None
        return "{" + ",".join(shares) + "}"  # type: ignore[arg-type]  # no None, as checked

    def _known(self, provider: str) -> _Provider | None:
        if provider not in self._providers:
            model = self._models[provider]
            base = self._base(provider) if _independent(model) else None
            self._providers[provider] = None if base is None else _Provider(model, provider, base)
        return self._providers[provider]

    def _plan(self, provider: str, columns: tuple[str, ...]) -> tuple[Fragment, ...] | None:
        """How to build the body of rows with these columns, or None if they are unusual."""
        known = self._known(provider)
        if known is None:
            return None
        own = [c for c in columns if c not in ("id", "provider")]
        _, problems = nest(known.model, dict.fromkeys(own, ""), textual=False)
        if problems:
            return None  # an empty part or two columns for one field: the full path says
        groups: dict[str, list[str]] = {}
        for column in own:
            groups.setdefault(column.split(".", 1)[0], []).append(column)
        names = set(groups) | set(known.base)
        if not names <= set(known.attrs) - {"provider"}:
            return None  # an unknown field, or a `provider.x` column
        plan: list[tuple[int, Fragment]] = [
            (known.order["provider"], _constant(known.provider_share))
        ]
        for name in names:
            fragment = self._fragment(known, name, tuple(groups.get(name, ())))
            if fragment is None:
                return None
            plan.append((known.order[known.attrs[name]], fragment))
        return tuple(fragment for _, fragment in sorted(plan, key=lambda p: p[0]))

    def _fragment(self, known: _Provider, name: str, columns: tuple[str, ...]) -> Fragment | None:
        if not columns:  # from the defaults or --set only: the same in every row
            share = known.field(name, ()).share({})
            return None if share is None else _constant(share)
        if columns == (name,):
            prefix = known.plain(name)
            if prefix is not None:
                return _plain(name, prefix)
        field = known.field(name, columns)
        return _one_cell(columns[0], field) if len(columns) == 1 else _many_cells(columns, field)
