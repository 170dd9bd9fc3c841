"""The request models in `jobs.batch.models` are true to the spec, schema by schema.

`jobs/batch/models.py` is written by hand from `simulator/spec/update-phone-number.openapi.yaml`.
For each provider variant of `phoneNumbers_update_Request` these tests hold it there:

1. structure: the spec's schema and the model's JSON schema reduce to the same canonical
   form (property names, required sets, types, enum values, unions), and a mismatch is
   reported by its path;
2. the same, spelled out: top-level fields, required fields and every enum's values;
3. round trips: bodies drawn from the spec pass the model and dump back unchanged, and
   bodies drawn from the model's schema pass the simulator's validator;
4. the checks themselves can fail: a mutated spec is reported, not waved through.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from jobs.batch.models import PROVIDERS, UPDATE_MODELS, dump_body, phone_number_update, wire_fields
from simulator.schema import REQUEST_SCHEMA, closed, load_spec, variant_validators

JsonSchema: TypeAlias = Mapping[str, Any]

# Keywords that constrain a value; everything the canonical form is built from.
VALIDATION = frozenset(
    {
        "$ref",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "oneOf",
        "anyOf",
        "allOf",
    }
)
# Keywords that say nothing about which bodies are valid: `format: double` is OpenAPI's
# word for a float, `discriminator` only speeds up a union the members already decide.
ANNOTATIONS = frozenset({"title", "description", "default", "format", "discriminator"})
UNIONS = ("oneOf", "anyOf", "allOf")

# Enums the brief names; they must be reachable from every variant, or the enum walk is
# broken rather than the spec small.
NAMED_ENUMS = frozenset(
    {
        "TextContentLanguage",
        "TransferPlanMode",
        "TransferPlanSipVerb",
        "BackoffPlanType",
        "PhoneNumberCallEndingHookFilterOneOf",
    }
)

FIDELITY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
# The negative round trips only need one failing body; shrinking it would cost time.
FIND_FAILURE_SETTINGS = settings(FIDELITY_SETTINGS, max_examples=200, phases=[Phase.generate])


class UnsupportedSchema(Exception):
    """The schema uses a construct the canonical form does not model.

    Raised instead of ignoring the keyword, so a new constraint in the spec (a `pattern`,
    a `minimum`) fails loudly here rather than passing unexamined.
    """


# --- resolving and inlining -------------------------------------------------------------


def resolve(root: JsonSchema, ref: str) -> JsonSchema:
    """The schema a local JSON pointer (`#/components/schemas/X`, `#/$defs/X`) names."""
    if not ref.startswith("#/"):
        raise UnsupportedSchema(f"only local $refs are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    target: JsonSchema = node
    return target


def inline(
    schema: JsonSchema, root: JsonSchema, active: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`schema` with every `$ref` replaced by its target and annotations other than
    `title` dropped: plain JSON Schema that `canonical`, `bodies` and a jsonschema validator
    all take. `active` holds the refs being expanded on this path, so a cycle is an error
    instead of endless recursion.
    """
    unknown = schema.keys() - VALIDATION - ANNOTATIONS - {"$defs"}
    if unknown:
        raise UnsupportedSchema(f"unsupported keywords {sorted(unknown)}")
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref in active:
            raise UnsupportedSchema(f"cyclic $ref {ref!r}")
        # OpenAPI 3.1 allows siblings of $ref; only annotations may be there, or the
        # target alone would not be the whole constraint.
        siblings = (schema.keys() & VALIDATION) - {"$ref"}
        if siblings:
            raise UnsupportedSchema(f"$ref {ref!r} with constraining siblings {sorted(siblings)}")
        return inline(resolve(root, ref), root, active | {ref})
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: inline(sub, root, active) for name, sub in value.items()}
        elif key == "items" or (key == "additionalProperties" and isinstance(value, Mapping)):
            out[key] = inline(value, root, active)
        elif key in UNIONS:
            out[key] = [inline(member, root, active) for member in value]
        elif key in VALIDATION or key == "title":
            out[key] = copy.deepcopy(value)
    return out


def spec_variant(provider: str) -> JsonSchema:
    """The raw (uninlined) request variant whose `provider` enum is `[provider]`."""
    for variant in load_spec()["components"]["schemas"][REQUEST_SCHEMA]["oneOf"]:
        if variant["properties"]["provider"]["enum"] == [provider]:
            found: JsonSchema = variant
            return found
    raise LookupError(f"no spec variant for provider {provider!r}")


def inline_spec(schema: JsonSchema, spec: JsonSchema | None = None) -> dict[str, Any]:
    return inline(schema, spec if spec is not None else load_spec())


def inline_model(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return inline(schema, schema)


# --- canonical form ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    type: str


@dataclass(frozen=True)
class Enum:
    type: str | None
    values: frozenset[Any]


@dataclass(frozen=True)
class Array:
    items: Canon


@dataclass(frozen=True)
class Object:
    properties: tuple[tuple[str, Canon], ...]  # sorted by name, so equal objects are equal
    required: frozenset[str]
    # What undeclared properties must be, when a schema says (`dict[str, str]`); None when
    # they are merely allowed or not (`true`/`false`), which is ignored on purpose.
    others: Canon | None = None


@dataclass(frozen=True)
class Union:
    members: frozenset[Canon]


@dataclass(frozen=True)
class AnyValue:
    """`{}`: any JSON value."""


Canon: TypeAlias = Scalar | Enum | Array | Object | Union | AnyValue


def _only(schema: JsonSchema, allowed: set[str], what: str) -> None:
    extra = (schema.keys() & VALIDATION) - allowed
    if extra:
        raise UnsupportedSchema(f"{what} combined with {sorted(extra)}")


def canonical(schema: JsonSchema) -> Canon:
    """The canonical form of an inlined schema (see `inline`).

    Two schemas with equal canonical forms describe the same bodies, up to what is
    ignored on purpose: annotations, `oneOf` versus `anyOf` (the unions here are decided by
    their members' tags either way), and `additionalProperties` (the spec leaves objects
    open, the simulator closes them; the round trips below check that closure).
    """
    if any(key in schema for key in UNIONS):
        return _canonical_union(schema)
    if "enum" in schema or "const" in schema:
        _only(schema, {"enum", "const", "type"}, "enum")
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        return Enum(schema.get("type"), frozenset(values))
    kind = schema.get("type")
    if kind == "object":
        _only(schema, {"type", "properties", "required", "additionalProperties"}, "object")
        props = schema.get("properties", {})
        others = schema.get("additionalProperties", True)
        others_form = None if isinstance(others, bool) else canonical(others)
        return Object(
            tuple(sorted((name, canonical(sub)) for name, sub in props.items())),
            frozenset(schema.get("required", ())),
            None if others_form == AnyValue() else others_form,
        )
    if kind == "array":
        _only(schema, {"type", "items"}, "array")
        return Array(canonical(schema["items"]) if "items" in schema else AnyValue())
    if kind in ("string", "boolean", "number", "integer", "null"):
        _only(schema, {"type"}, str(kind))
        return Scalar(kind)
    if kind is None and not schema.keys() & VALIDATION:
        return AnyValue()
    raise UnsupportedSchema(f"unsupported schema {schema!r}")


def _canonical_union(schema: JsonSchema) -> Canon:
    keys = [key for key in UNIONS if key in schema]
    if len(keys) > 1:
        raise UnsupportedSchema(f"{keys} in one schema")
    (key,) = keys
    _only(schema, {key}, key)
    members = [canonical(member) for member in schema[key]]
    if key == "allOf":
        # pydantic may wrap a described `$ref` as a one-member allOf; more is a real
        # intersection, which this form does not model.
        if len(members) != 1:
            raise UnsupportedSchema("allOf with more than one member")
        return members[0]
    flat: set[Canon] = set()
    for member in members:  # a union of unions is one union
        flat |= member.members if isinstance(member, Union) else {member}
    # The spec wraps single types in one-member oneOfs (CustomMessageContentsItems).
    return next(iter(flat)) if len(flat) == 1 else Union(frozenset(flat))


# --- differences ------------------------------------------------------------------------


def _show(node: Canon) -> str:
    if isinstance(node, Scalar):
        return node.type
    if isinstance(node, Enum):
        shown = sorted(map(str, node.values))
        return f"enum {shown}" if len(shown) <= 4 else f"enum of {len(shown)} values"
    if isinstance(node, Array):
        return f"array of {_show(node.items)}"
    if isinstance(node, Object):
        return f"object {_tag(node)} with {[name for name, _ in node.properties]}"
    if isinstance(node, Union):
        return f"union of {sorted(_show(m) for m in node.members)}"
    return "any value"


def _tag(node: Canon) -> str:
    """What tells a union member apart: an object's single-valued enum properties
    (`type=sip`, `on=call.ending`), or the kind of schema."""
    if isinstance(node, Object):
        tags = [
            f"{name}={next(iter(sub.values))}"
            for name, sub in node.properties
            if isinstance(sub, Enum) and len(sub.values) == 1
        ]
        return ",".join(tags) or "object"
    if isinstance(node, Scalar):
        return node.type
    return type(node).__name__.lower()


def differences(spec: Canon, model: Canon, path: str = "$") -> list[str]:
    """Every difference between two canonical forms, as `path: what`, outermost first."""
    if spec == model:
        return []
    if isinstance(spec, Object) and isinstance(model, Object):
        return _object_differences(spec, model, path)
    if isinstance(spec, Array) and isinstance(model, Array):
        return differences(spec.items, model.items, f"{path}[]")
    if isinstance(spec, Enum) and isinstance(model, Enum):
        return [_enum_difference(spec, model, path)]
    if isinstance(spec, Union) and isinstance(model, Union):
        return _union_differences(spec, model, path)
    return [f"{path}: spec has {_show(spec)}, model has {_show(model)}"]


def _object_differences(spec: Object, model: Object, path: str) -> list[str]:
    in_spec, in_model = dict(spec.properties), dict(model.properties)
    out = []
    if missing := sorted(in_spec.keys() - in_model.keys()):
        out.append(f"{path}: properties missing from the model: {missing}")
    if extra := sorted(in_model.keys() - in_spec.keys()):
        out.append(f"{path}: properties not in the spec: {extra}")
    if spec.required != model.required:
        out.append(
            f"{path}: required is {sorted(spec.required)} in the spec, "
            f"{sorted(model.required)} in the model"
        )
    if spec.others != model.others:
        shown = [_show(o) if o else "unconstrained" for o in (spec.others, model.others)]
        out.append(f"{path}: other properties are {shown[0]} in the spec, {shown[1]} in the model")
    for name in sorted(in_spec.keys() & in_model.keys()):
        out += differences(in_spec[name], in_model[name], f"{path}.{name}")
    return out


def _enum_difference(spec: Enum, model: Enum, path: str) -> str:
    missing = sorted(map(str, spec.values - model.values))
    extra = sorted(map(str, model.values - spec.values))
    return (
        f"{path}: enum values missing from the model: {missing}, not in the spec: {extra}"
        f"; type {spec.type!r} in the spec, {model.type!r} in the model"
    )


def _union_differences(spec: Union, model: Union, path: str) -> list[str]:
    only_spec = _by_tag(spec.members - model.members)
    only_model = _by_tag(model.members - spec.members)
    out = []
    # Pair the members that differ by their tag, so the report points inside the member
    # (`$.fallbackDestination<type=sip>.sipUri`) instead of at the whole union.
    for tag in sorted(only_spec.keys() & only_model.keys()):
        if len(only_spec[tag]) == len(only_model[tag]) == 1:
            out += differences(only_spec.pop(tag)[0], only_model.pop(tag)[0], f"{path}<{tag}>")
    if only_spec or only_model:
        out.append(
            f"{path}: union members only in the spec: "
            f"{[_show(m) for ms in only_spec.values() for m in ms]}, only in the model: "
            f"{[_show(m) for ms in only_model.values() for m in ms]}"
        )
    return out


def _by_tag(members: frozenset[Canon]) -> dict[str, list[Canon]]:
    groups: dict[str, list[Canon]] = {}
    for member in members:
        groups.setdefault(_tag(member), []).append(member)
    return groups


# --- enums, read plainly ------------------------------------------------------------------


def enums(schema: JsonSchema, path: str = "$") -> Iterator[tuple[str, frozenset[Any]]]:
    """Every enum (or const) in an inlined schema, named by its title, else its path."""
    if "enum" in schema or "const" in schema:
        values = schema["enum"] if "enum" in schema else [schema["const"]]
        yield schema.get("title", path), frozenset(values)
    for name, sub in schema.get("properties", {}).items():
        yield from enums(sub, f"{path}.{name}")
    if "items" in schema:
        yield from enums(schema["items"], f"{path}[]")
    for key in UNIONS:
        for index, member in enumerate(schema.get(key, ())):
            yield from enums(member, f"{path}<{index}>")


def enum_names(schema: JsonSchema) -> dict[frozenset[Any], set[str]]:
    """Each enum value set in an inlined schema, with the names it goes by there.

    Keyed by value set because names do not carry over: the spec says
    `TransferDestinationSipType`, pydantic titles every const after its field (`Type`).
    """
    names: dict[frozenset[Any], set[str]] = {}
    for name, values in enums(schema):
        names.setdefault(values, set()).add(name)
    return names


def enum_problems(spec_schema: JsonSchema, model_schema: JsonSchema) -> list[str]:
    """Spec enums the model lacks and model enums the spec lacks, value set for value set."""
    in_spec, in_model = enum_names(spec_schema), enum_names(model_schema)
    problems = []
    for values in in_spec.keys() - in_model.keys():
        # The model enum sharing the most values is almost always the one that drifted.
        nearest = max(in_model, key=lambda v: len(v & values), default=frozenset())
        problems.append(
            f"spec enum {sorted(in_spec[values])} has no match in the model; the nearest "
            f"model enum {sorted(in_model.get(nearest, ()))} lacks {sorted(values - nearest)} "
            f"and adds {sorted(nearest - values)}"
        )
    problems += [
        f"model enum {sorted(in_model[values])} {sorted(values)} is not in the spec"
        for values in in_model.keys() - in_spec.keys()
    ]
    return sorted(problems)


def required_wire_fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items() if info.is_required()}


# --- round trips --------------------------------------------------------------------------
#
# Bodies are drawn by `bodies` below, not by hypothesis-jsonschema: its 0.23.1 release
# calls a private Hypothesis API (`many.more()`) that Hypothesis 6.170 no longer has, and
# with an older Hypothesis it needs 30-80 s per test on this schema. `bodies` takes the
# same subset `canonical` does and refuses anything else, and every check asserts that
# a drawn body is valid for the schema it was drawn from, so a wrong generator fails
# loudly instead of testing the wrong thing.

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=20),
    "boolean": st.booleans(),
    # The spec's `number` takes ints and floats alike; the model must keep either as is.
    "number": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "integer": st.integers(),
    "null": st.none(),
}


def bodies(schema: JsonSchema) -> st.SearchStrategy[Any]:
    """Values valid for an inlined schema (see `inline`)."""
    if any(key in schema for key in UNIONS):
        (key,) = [key for key in UNIONS if key in schema]
        if key == "allOf" and len(schema[key]) != 1:
            raise UnsupportedSchema("allOf with more than one member")
        return st.one_of([bodies(member) for member in schema[key]])
    if "enum" in schema or "const" in schema:
        return st.sampled_from(schema["enum"] if "enum" in schema else [schema["const"]])
    kind = schema.get("type")
    if kind == "object":
        return _object_bodies(schema)
    if kind == "array":
        return st.lists(bodies(schema.get("items", {})), max_size=3)
    if kind in SCALARS:
        return SCALARS[kind]
    if kind is None and not schema.keys() & VALIDATION:
        return JSON_VALUES
    raise UnsupportedSchema(f"cannot draw bodies for {schema!r}")


def _object_bodies(schema: JsonSchema) -> st.SearchStrategy[dict[str, Any]]:
    props: Mapping[str, JsonSchema] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    declared = st.fixed_dictionaries(
        {name: bodies(sub) for name, sub in props.items() if name in required},
        optional={name: bodies(sub) for name, sub in props.items() if name not in required},
    )
    extra_schema = schema.get("additionalProperties", True)
    if extra_schema is False:
        return declared
    # Open objects (`server.headers`, `sipHeaders`) take any other names too.
    extra_values = JSON_VALUES if extra_schema is True else bodies(extra_schema)
    extras = st.dictionaries(
        st.text(max_size=8).filter(lambda name: name not in props), extra_values, max_size=3
    )
    return st.builds(lambda fixed, more: more | fixed, declared, extras)


def as_json(value: Any) -> str:
    # Python says 1 == 1.0 and True == 1; the wire is JSON text, so compare that.
    return json.dumps(value, sort_keys=True)


def spec_body_schema(variant: JsonSchema, spec: JsonSchema | None = None) -> dict[str, Any]:
    """What the simulator accepts for a variant: inlined, with declared objects closed."""
    schema: dict[str, Any] = closed(inline_spec(variant, spec))
    return schema


def check_spec_bodies_round_trip(
    schema: JsonSchema, model: type[BaseModel], config: settings = FIDELITY_SETTINGS
) -> None:
    """Bodies valid for the spec schema parse in `model` and dump back unchanged."""
    source = Draft202012Validator(schema)

    @config
    @given(body=bodies(schema))
    def check(body: dict[str, Any]) -> None:
        assert source.is_valid(body), "the generator drew a body its own schema rejects"
        parsed = model.model_validate(body)
        assert as_json(dump_body(parsed)) == as_json(body)
        # The discriminated union must route the body to this same model.
        assert type(phone_number_update.validate_python(body)) is model

    check()


def check_model_bodies_pass(
    model: type[BaseModel],
    validator: Draft202012Validator,
    config: settings = FIDELITY_SETTINGS,
) -> None:
    """Bodies valid for the model's own JSON schema pass the spec's validator."""
    schema = inline_model(model)
    source = Draft202012Validator(schema)

    @config
    @given(body=bodies(schema))
    def check(body: dict[str, Any]) -> None:
        assert source.is_valid(body), "the generator drew a body its own schema rejects"
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert not errors, errors
        # The model's schema must also describe the model: what it admits, the model takes.
        assert as_json(dump_body(model.model_validate(body))) == as_json(body)

    check()


# --- tests: structure ---------------------------------------------------------------------


def test_every_spec_variant_has_a_model() -> None:
    variants = load_spec()["components"]["schemas"][REQUEST_SCHEMA]["oneOf"]
    spec_providers = [p for v in variants for p in v["properties"]["provider"]["enum"]]
    assert sorted(spec_providers) == sorted(PROVIDERS)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_model_schema_has_the_spec_structure(provider: str) -> None:
    spec_form = canonical(inline_spec(spec_variant(provider)))
    model_form = canonical(inline_model(UPDATE_MODELS[provider]))
    problems = differences(spec_form, model_form)
    assert not problems, "\n".join(problems)


def test_request_union_has_the_spec_structure() -> None:
    # The discriminated union as a whole: no variant lost or doubled in `PhoneNumberUpdate`.
    spec = load_spec()
    union_schema = phone_number_update.json_schema(by_alias=True)
    spec_form = canonical(inline_spec(spec["components"]["schemas"][REQUEST_SCHEMA]))
    model_form = canonical(inline(union_schema, union_schema))
    problems = differences(spec_form, model_form)
    assert not problems, "\n".join(problems)


# --- tests: fields and enums, spelled out ---------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_model_fields_are_the_spec_properties(provider: str) -> None:
    variant = spec_variant(provider)
    model = UPDATE_MODELS[provider]
    assert set(wire_fields(model)) == set(variant["properties"])
    assert required_wire_fields(model) == set(variant.get("required", ()))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_model_enums_are_the_spec_enums(provider: str) -> None:
    spec_schema = inline_spec(spec_variant(provider))
    assert {name for name, _ in enums(spec_schema)} >= NAMED_ENUMS
    problems = enum_problems(spec_schema, inline_model(UPDATE_MODELS[provider]))
    assert not problems, "\n".join(problems)


def test_language_enum_is_complete() -> None:
    spec_languages = load_spec()["components"]["schemas"]["TextContentLanguage"]["enum"]
    model_schema = inline_model(UPDATE_MODELS["vapi"])
    model_languages = [values for name, values in enums(model_schema) if name == "Language"]
    assert model_languages, "no Language enum in the model schema"
    assert all(values == frozenset(spec_languages) for values in model_languages)


# --- tests: round trips -------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_spec_bodies_pass_the_model_unchanged(provider: str) -> None:
    model = UPDATE_MODELS[provider]
    check_spec_bodies_round_trip(spec_body_schema(spec_variant(provider)), model)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_model_bodies_pass_the_spec(provider: str) -> None:
    check_model_bodies_pass(UPDATE_MODELS[provider], variant_validators()[provider])


# --- tests: the checks can fail -------------------------------------------------------------

Mutation: TypeAlias = Callable[[dict[str, Any]], None]


def _schemas(spec: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = spec["components"]["schemas"]
    return schemas


def _drop_sip_verb_bye(spec: dict[str, Any]) -> None:
    _schemas(spec)["TransferPlanSipVerb"]["enum"].remove("bye")


def _add_auth_property(spec: dict[str, Any]) -> None:
    _schemas(spec)["SipAuthentication"]["properties"]["nonce"] = {"type": "string"}


def _require_realm(spec: dict[str, Any]) -> None:
    _schemas(spec)["SipAuthentication"]["required"].append("realm")


def _timeout_as_string(spec: dict[str, Any]) -> None:
    _schemas(spec)["Server"]["properties"]["timeoutSeconds"] = {"type": "string"}


def _drop_say_action(spec: dict[str, Any]) -> None:
    members = _schemas(spec)["PhoneNumberHookCallEndingDo"]["oneOf"]
    members[:] = [m for m in members if not m["$ref"].endswith("/SayPhoneNumberHookAction")]
    members.append({"type": "string"})


def _add_required_nickname(spec: dict[str, Any]) -> None:
    variant = _vapi_variant(spec)
    variant["properties"]["nickname"] = {"type": "string"}
    variant["required"].append("nickname")


def _drop_squad_id(spec: dict[str, Any]) -> None:
    del _vapi_variant(spec)["properties"]["squadId"]


def _mutated_spec(mutation: Mutation) -> dict[str, Any]:
    spec = copy.deepcopy(load_spec())
    mutation(spec)
    return spec


def _vapi_variant(spec: dict[str, Any]) -> dict[str, Any]:
    return next(
        v
        for v in _schemas(spec)[REQUEST_SCHEMA]["oneOf"]
        if v["properties"]["provider"]["enum"] == ["vapi"]
    )


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (_drop_sip_verb_bye, "$.fallbackDestination<type=number>.transferPlan.sipVerb: enum"),
        (_add_auth_property, "$.authentication: properties missing from the model: ['nonce']"),
        (_require_realm, "$.authentication: required is ['password', 'realm', 'username']"),
        (_timeout_as_string, "$.server.timeoutSeconds: spec has string, model has number"),
        (_drop_say_action, "$.hooks[]<on=call.ending>.do: union members only in the spec"),
    ],
)
def test_structure_check_reports_a_mutated_spec(mutation: Mutation, expected: str) -> None:
    spec = _mutated_spec(mutation)
    spec_form = canonical(inline_spec(_vapi_variant(spec), spec))
    problems = differences(spec_form, canonical(inline_model(UPDATE_MODELS["vapi"])))
    assert problems, "a mutated spec passed the structure check"
    assert problems[0].startswith(expected), "\n".join(problems)


def test_structure_check_reports_typed_free_form_values() -> None:
    # `additionalProperties: true/false` is ignored, a schema there is not: a model
    # `headers: dict[str, str]` would refuse the spec's free-form header values.
    spec_form = canonical(inline_spec({"type": "object", "properties": {}}))
    model_form = canonical({"type": "object", "additionalProperties": {"type": "string"}})
    assert differences(spec_form, model_form) == [
        "$: other properties are unconstrained in the spec, string in the model"
    ]


def test_enum_check_reports_a_dropped_value() -> None:
    spec = _mutated_spec(_drop_sip_verb_bye)
    problems = enum_problems(
        inline_spec(_vapi_variant(spec), spec), inline_model(UPDATE_MODELS["vapi"])
    )
    assert any("TransferPlanSipVerb" in p and "adds ['bye']" in p for p in problems), problems


def test_canonical_form_refuses_unknown_constraints() -> None:
    # A constraint the form does not model must stop the comparison, not vanish from it.
    with pytest.raises(UnsupportedSchema, match="pattern"):
        canonical(inline({"type": "string", "pattern": "^sip:"}, {}))


def test_inline_refuses_a_cycle() -> None:
    root = {"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}}
    with pytest.raises(UnsupportedSchema, match="cyclic"):
        inline({"$ref": "#/$defs/Node"}, root)


def test_spec_round_trip_reports_a_property_the_model_lacks() -> None:
    spec = _mutated_spec(_add_required_nickname)
    with pytest.raises(ValidationError, match="nickname"):
        check_spec_bodies_round_trip(
            spec_body_schema(_vapi_variant(spec), spec),
            UPDATE_MODELS["vapi"],
            FIND_FAILURE_SETTINGS,
        )


def test_model_round_trip_reports_a_property_the_spec_lacks() -> None:
    spec = _mutated_spec(_drop_squad_id)
    validator = Draft202012Validator(spec_body_schema(_vapi_variant(spec), spec))
    with pytest.raises(AssertionError, match="'squadId' was unexpected"):
        check_model_bodies_pass(UPDATE_MODELS["vapi"], validator, FIND_FAILURE_SETTINGS)
