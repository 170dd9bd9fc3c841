"""The spec's JSON schema, as the simulator checks bodies against it.

The spec leaves objects open; the real API rejects unknown properties ("property x
should not exist"), so objects with declared properties are closed here. Free-form
objects (`server.headers`, `sipHeaders`, ...) declare none and stay open.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

SPEC_FILE = "update-phone-number.openapi.yaml"
REQUEST_SCHEMA = "phoneNumbers_update_Request"
RESPONSE_SCHEMA = "phoneNumbers_update_Response_200"


@cache
def load_spec() -> dict[str, Any]:
    text = resources.files("simulator").joinpath("spec", SPEC_FILE).read_text("utf-8")
    spec: dict[str, Any] = yaml.safe_load(text)
    return spec


def closed(schema: Any) -> Any:
    """A copy of `schema` where every object with declared properties takes no others."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if out.get("type") == "object" and out.get("properties"):
        out.setdefault("additionalProperties", False)
    return out


def _schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = load_spec()["components"]["schemas"]
    return schemas


@cache
def variant_validators() -> dict[str, Draft202012Validator]:
    """One validator per provider: the request `oneOf`, split by its discriminator."""
    components = {"components": {"schemas": closed(_schemas())}}
    validators = {}
    for variant in components["components"]["schemas"][REQUEST_SCHEMA]["oneOf"]:
        provider = variant["properties"]["provider"]["enum"][0]
        root = copy.deepcopy(components) | variant
        validators[provider] = Draft202012Validator(root)
    return validators


@cache
def response_validator() -> Draft202012Validator:
    root = {"components": {"schemas": _schemas()}}
    return Draft202012Validator(root | {"$ref": f"#/components/schemas/{RESPONSE_SCHEMA}"})


def _describe(error: ValidationError) -> str:
    if error.context:
        error = best_match(error.context)
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        schema: Any = error.schema
        instance: Any = error.instance
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        prefix = f"{where}." if where else ""
        return "; ".join(f"property {prefix}{name} should not exist" for name in extra)
    return f"{where or 'body'}: {error.message}"


def body_problems(body: Any) -> list[str]:
    """Every way `body` breaks the request schema, in the API's style of message."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    validators = variant_validators()
    provider = body.get("provider")
    if provider not in validators:
        return [f"provider must be one of the following values: {', '.join(validators)}"]
    errors = sorted(validators[provider].iter_errors(body), key=lambda e: list(e.path))
    return [_describe(e) for e in errors]
