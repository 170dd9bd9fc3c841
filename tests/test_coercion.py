"""Text cells become typed values by the schema; dotted names become nested objects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobs.batch.coercion import CellError, CellProblem, coerce_text, merge, nest
from jobs.batch.fields import Kind, field_kind
from jobs.batch.models import TwilioPhoneNumberUpdate, VapiPhoneNumberUpdate

# --- kinds by the schema -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (("name",), Kind.TEXT),
        (("assistantId",), Kind.TEXT),
        (("server", "url"), Kind.TEXT),
        (("server", "timeoutSeconds"), Kind.NUMBER),
        (("server", "staticIpAddressesEnabled"), Kind.BOOL),
        (("server", "headers"), Kind.JSON),
        (("server", "headers", "X-Api-Key"), Kind.TEXT),  # inside a free-form object
        (("server", "encryptedPaths"), Kind.JSON),
        (("hooks",), Kind.JSON),
        (("fallbackDestination",), Kind.JSON),
        (("fallbackDestination", "type"), Kind.TEXT),
        (("fallbackDestination", "transferPlan", "timeout"), Kind.NUMBER),
        (("fallbackDestination", "message"), Kind.TEXT_OR_JSON),
        (("authentication", "password"), Kind.TEXT),
        (("assistantID",), Kind.UNKNOWN),
        (("server", "nope"), Kind.UNKNOWN),
        (("name", "first"), Kind.UNKNOWN),
    ],
)
def test_field_kind_follows_the_schema(path: tuple[str, ...], kind: Kind) -> None:
    assert field_kind(VapiPhoneNumberUpdate, path) is kind


def test_field_kind_depends_on_the_provider_model() -> None:
    assert field_kind(TwilioPhoneNumberUpdate, ("smsEnabled",)) is Kind.BOOL
    assert field_kind(VapiPhoneNumberUpdate, ("smsEnabled",)) is Kind.UNKNOWN


# --- coerce_text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("0", False),
    ],
)
def test_bool_text(text: str, expected: bool) -> None:
    assert coerce_text(Kind.BOOL, text) is expected


@pytest.mark.parametrize("text", ["maybe", "t", "2", "on"])
def test_bool_text_that_does_not_fit_is_left_for_validation(text: str) -> None:
    assert coerce_text(Kind.BOOL, text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20", 20),
        (" 20 ", 20),
        ("+3", 3),
        ("-7", -7),
        ("0", 0),
        ("2.5", 2.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("20.0", 20.0),
    ],
)
def test_number_text(text: str, expected: float) -> None:
    value = coerce_text(Kind.NUMBER, text)
    assert value == expected
    assert type(value) is type(expected)


def test_integer_text_stays_an_integer() -> None:
    value = coerce_text(Kind.NUMBER, "20")
    assert type(value) is int
    assert json.dumps(value) == "20"  # not 20.0 on the wire
    assert json.dumps(coerce_text(Kind.NUMBER, "12345678901234567890")) == "12345678901234567890"


@pytest.mark.parametrize(
    "text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "abc", "1,5", "0x10", ""]
)
def test_number_text_that_is_not_a_finite_number_stays_text(text: str) -> None:
    assert coerce_text(Kind.NUMBER, text) == text


def test_text_stays_text_as_written() -> None:
    assert coerce_text(Kind.TEXT, "123") == "123"
    assert coerce_text(Kind.TEXT, "true") == "true"
    assert coerce_text(Kind.TEXT, " padded ") == " padded "
    assert coerce_text(Kind.UNKNOWN, "42") == "42"


def test_json_cell() -> None:
    assert coerce_text(Kind.JSON, ' {"a": [1, 2.5, true, null]} ') == {"a": [1, 2.5, True, None]}
    assert coerce_text(Kind.JSON, '["/a", "/b"]') == ["/a", "/b"]


def test_broken_json_cell_message() -> None:
    with pytest.raises(CellError) as info:
        coerce_text(Kind.JSON, '[{"on": "call.ringing",}]')
    assert str(info.value) == (
        "not valid JSON: Expecting property name enclosed in double quotes (character 24)"
    )


def test_message_is_text_or_a_json_object() -> None:
    assert coerce_text(Kind.TEXT_OR_JSON, "Please hold") == "Please hold"
    assert coerce_text(Kind.TEXT_OR_JSON, "[not json] fine") == "[not json] fine"
    assert coerce_text(Kind.TEXT_OR_JSON, '{"type": "custom-message"}') == {
        "type": "custom-message"
    }
    with pytest.raises(CellError, match="not valid JSON"):
        coerce_text(Kind.TEXT_OR_JSON, '{"type": ')


# --- nest --------------------------------------------------------------------------------


def nested(values: dict[str, Any], *, textual: bool = True) -> dict[str, Any]:
    body, problems = nest(VapiPhoneNumberUpdate, values, textual=textual)
    assert problems == []
    return body


def test_dotted_names_build_nested_objects() -> None:
    body = nested(
        {
            "server.url": "https://hooks.example.com",
            "server.timeoutSeconds": "20",
            "server.staticIpAddressesEnabled": "yes",
            "server.backoffPlan.maxRetries": "3",
            "name": "Front desk",
        }
    )
    assert body == {
        "server": {
            "url": "https://hooks.example.com",
            "timeoutSeconds": 20,
            "staticIpAddressesEnabled": True,
            "backoffPlan": {"maxRetries": 3},
        },
        "name": "Front desk",
    }


def test_header_under_server_headers_is_a_free_form_string() -> None:
    body = nested({"server.headers.X-Api-Key": "12345", "server.headers.X-Flag": "true"})
    assert body == {"server": {"headers": {"X-Api-Key": "12345", "X-Flag": "true"}}}


def test_strings_stay_strings() -> None:
    assert nested({"name": "123", "assistantId": "true"}) == {"name": "123", "assistantId": "true"}


def test_json_cells_for_objects_and_lists() -> None:
    hooks = [{"on": "call.ringing", "do": [{"type": "say", "exact": "Hello"}]}]
    destination = {"type": "number", "number": "+15550001111"}
    body = nested({"hooks": json.dumps(hooks), "fallbackDestination": json.dumps(destination)})
    assert body == {"hooks": hooks, "fallbackDestination": destination}


def test_message_column_takes_plain_text() -> None:
    body = nested(
        {
            "fallbackDestination.type": "number",
            "fallbackDestination.number": "+15550001111",
            "fallbackDestination.message": "Transferring you now",
        }
    )
    assert body == {
        "fallbackDestination": {
            "type": "number",
            "number": "+15550001111",
            "message": "Transferring you now",
        }
    }


def test_broken_json_cell_is_a_problem_naming_the_column() -> None:
    body, problems = nest(VapiPhoneNumberUpdate, {"hooks": "[{oops}]", "name": "ok"}, textual=True)
    assert body == {"name": "ok"}
    assert problems == [
        CellProblem(
            "hooks",
            "not valid JSON: Expecting property name enclosed in double quotes (character 3)",
        )
    ]


def test_text_that_does_not_fit_is_left_for_validation() -> None:
    body = nested({"server.timeoutSeconds": "soon", "server.staticIpAddressesEnabled": "maybe"})
    assert body == {"server": {"timeoutSeconds": "soon", "staticIpAddressesEnabled": "maybe"}}


def test_json_values_are_taken_as_they_are() -> None:
    values = {"server.timeoutSeconds": "20", "server.url": "https://x", "smsEnabled": "true"}
    assert nested(values, textual=False) == {
        "server": {"timeoutSeconds": "20", "url": "https://x"},
        "smsEnabled": "true",
    }


def test_object_column_then_dotted_column_clash() -> None:
    body, problems = nest(
        VapiPhoneNumberUpdate,
        {"server": '{"timeoutSeconds": 5}', "server.url": "https://x"},
        textual=True,
    )
    assert body == {"server": {"timeoutSeconds": 5}}
    assert problems == [CellProblem("server.url", "sets the same field as 'server'")]


def test_dotted_column_then_object_column_clash() -> None:
    body, problems = nest(
        VapiPhoneNumberUpdate,
        {"server.url": "https://x", "server": '{"timeoutSeconds": 5}'},
        textual=True,
    )
    assert body == {"server": {"url": "https://x"}}
    assert problems == [CellProblem("server", "sets the same field as 'server.url'")]


def test_deeper_clash_inside_a_nested_object() -> None:
    body, problems = nest(
        VapiPhoneNumberUpdate,
        {"server.headers": '{"A": "1"}', "server.headers.B": "2"},
        textual=True,
    )
    assert body == {"server": {"headers": {"A": "1"}}}
    assert problems == [CellProblem("server.headers.B", "sets the same field as 'server.headers'")]


def test_clash_in_json_input_with_dotted_keys() -> None:
    body, problems = nest(
        VapiPhoneNumberUpdate,
        {"server": {"url": "https://a"}, "server.url": "https://b"},
        textual=False,
    )
    assert body == {"server": {"url": "https://a"}}
    assert problems == [CellProblem("server.url", "sets the same field as 'server'")]


def test_sibling_dotted_columns_do_not_clash() -> None:
    body, problems = nest(
        VapiPhoneNumberUpdate,
        {"server.url": "https://x", "server.headers.A": "1", "server.headers.B": "2"},
        textual=True,
    )
    assert problems == []
    assert body == {"server": {"url": "https://x", "headers": {"A": "1", "B": "2"}}}


@pytest.mark.parametrize("column", ["server.", ".url", "server..url", "."])
def test_empty_part_in_a_dotted_name(column: str) -> None:
    body, problems = nest(VapiPhoneNumberUpdate, {column: "x"}, textual=True)
    assert body == {}
    assert problems == [CellProblem(column, "a field name has an empty part")]


# --- merge -------------------------------------------------------------------------------


def test_merge_deep_merges_objects_and_the_row_wins() -> None:
    base = {"assistantId": "asst_default", "server": {"url": "https://a", "timeoutSeconds": 20}}
    over = {"assistantId": "asst_row", "server": {"url": "https://b", "headers": {"A": "1"}}}
    assert merge(base, over) == {
        "assistantId": "asst_row",
        "server": {"url": "https://b", "timeoutSeconds": 20, "headers": {"A": "1"}},
    }


def test_merge_replaces_lists_and_non_objects_whole() -> None:
    base = {"hooks": [{"on": "call.ringing"}], "server": {"url": "https://a"}, "name": "x"}
    over = {"hooks": [], "server": "not an object", "name": {"odd": True}}
    assert merge(base, over) == over


def test_merge_does_not_change_its_inputs() -> None:
    base = {"server": {"url": "https://a"}}
    over = {"server": {"timeoutSeconds": 5}}
    merged = merge(base, over)
    assert merged == {"server": {"url": "https://a", "timeoutSeconds": 5}}
    assert base == {"server": {"url": "https://a"}}
    assert over == {"server": {"timeoutSeconds": 5}}
