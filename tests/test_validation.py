"""Validating whole batches: bodies as sent, and every bad row named with a plain reason."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

import jobs.batch.intake
from jobs.batch.intake import Intake, parse_assignments, read_batch, validate_records
from jobs.batch.sources import Defaults, Format, InputError, RawRecord
from jobs.batch.validation import BatchItem, RowError, RowValidator, suggest

TRANSFER_MODES = (
    "blind-transfer, blind-transfer-add-summary-to-sip-header, warm-transfer-say-message, "
    "warm-transfer-say-summary, warm-transfer-twiml, "
    "warm-transfer-wait-for-operator-to-speak-first-and-then-say-message, "
    "warm-transfer-wait-for-operator-to-speak-first-and-then-say-summary, "
    "warm-transfer-experimental"
)
PROVIDER_LIST = "byo-phone-number, twilio, vonage, vapi, telnyx"


def from_csv(text: str, **options: Any) -> Intake:
    return read_batch(io.StringIO(text, newline=""), Format.CSV, **options)


def from_json(value: Any, **options: Any) -> Intake:
    return read_batch(io.StringIO(json.dumps(value)), Format.JSON, **options)


def from_jsonl(text: str, **options: Any) -> Intake:
    return read_batch(io.StringIO(text), Format.JSONL, **options)


def errors(intake: Intake) -> list[tuple[int | None, str | None, str]]:
    return [(e.row, e.column, e.message) for e in intake.errors]


def bodies(intake: Intake) -> list[tuple[int, str, dict[str, Any]]]:
    return [(item.row, item.number_id, json.loads(item.body)) for item in intake.items]


def only_body(intake: Intake) -> dict[str, Any]:
    assert errors(intake) == []
    assert len(intake.items) == 1
    body: dict[str, Any] = json.loads(intake.items[0].body)
    return body


def only_error(intake: Intake) -> tuple[int | None, str | None, str]:
    assert intake.items == []
    assert len(intake.errors) == 1
    return errors(intake)[0]


# --- bodies ------------------------------------------------------------------------------


def test_csv_bodies_carry_api_names_and_only_what_the_row_set() -> None:
    intake = from_csv(
        "id,provider,assistantId,name,server.url,server.timeoutSeconds,smsEnabled\n"
        "n1,twilio,asst_1,,https://hooks.example.com,20,yes\n"
        "n2,vapi,,Front desk,,,\n"
        "n3,vonage,,,,2.5,\n"
    )
    assert errors(intake) == []
    assert bodies(intake) == [
        (
            2,
            "n1",
            {
                "provider": "twilio",
                "assistantId": "asst_1",
                "server": {"url": "https://hooks.example.com", "timeoutSeconds": 20},
                "smsEnabled": True,
            },
        ),
        (3, "n2", {"provider": "vapi", "name": "Front desk"}),
        (4, "n3", {"provider": "vonage", "server": {"timeoutSeconds": 2.5}}),
    ]
    sent = json.loads(intake.items[0].body)["server"]["timeoutSeconds"]
    assert type(sent) is int  # 20 on the wire, not 20.0
    assert intake.ok
    assert intake.rows == 3
    assert intake.bad_rows == 0


def test_id_is_trimmed_and_not_part_of_the_body() -> None:
    intake = from_csv("id,provider,name\n  n1  ,vapi,x\n")
    assert bodies(intake) == [(2, "n1", {"name": "x", "provider": "vapi"})]
    assert " " not in intake.items[0].body  # compact JSON


def test_row_with_only_an_id_sends_only_the_provider() -> None:
    assert only_body(from_csv("id,provider,name,assistantId\nn1,vapi,,\n")) == {"provider": "vapi"}


def test_strings_stay_strings_in_the_body() -> None:
    body = only_body(from_csv("id,provider,name,assistantId\nn1,vapi,123,true\n"))
    assert body == {"provider": "vapi", "name": "123", "assistantId": "true"}


def test_server_header_column_builds_a_free_form_object() -> None:
    body = only_body(
        from_csv("id,provider,server.url,server.headers.X-Api-Key\nn1,vapi,https://h,12345\n")
    )
    assert body == {
        "provider": "vapi",
        "server": {"url": "https://h", "headers": {"X-Api-Key": "12345"}},
    }


def test_json_cells_for_hooks_and_fallback_destination() -> None:
    hooks = [{"on": "call.ringing", "do": [{"type": "say", "exact": "One moment"}]}]
    destination = {
        "type": "number",
        "number": "+15550001111",
        "transferPlan": {"mode": "blind-transfer", "timeout": 30},
    }
    text = "id,provider,hooks,fallbackDestination\n" + ",".join(
        ["n1", "vapi", _csv_cell(json.dumps(hooks)), _csv_cell(json.dumps(destination))]
    )
    body = only_body(from_csv(text + "\n"))
    assert body == {"provider": "vapi", "hooks": hooks, "fallbackDestination": destination}


def test_message_column_takes_plain_text() -> None:
    body = only_body(
        from_csv(
            "id,provider,fallbackDestination.type,fallbackDestination.number,"
            "fallbackDestination.message\n"
            "n1,vapi,number,+15550001111,Transferring you now\n"
        )
    )
    assert body == {
        "provider": "vapi",
        "fallbackDestination": {
            "type": "number",
            "number": "+15550001111",
            "message": "Transferring you now",
        },
    }


def test_vapi_authentication_from_dotted_columns() -> None:
    body = only_body(
        from_csv("id,provider,authentication.username,authentication.password\nn1,vapi,u,p\n")
    )
    assert body == {"provider": "vapi", "authentication": {"username": "u", "password": "p"}}


def test_json_items_are_validated_with_their_own_types() -> None:
    intake = from_json(
        [
            {
                "id": "n1",
                "provider": "twilio",
                "smsEnabled": False,
                "server": {"timeoutSeconds": 20},
            },
            {"id": "n2", "provider": "vapi", "hooks": []},
        ]
    )
    assert bodies(intake) == [
        (1, "n1", {"provider": "twilio", "smsEnabled": False, "server": {"timeoutSeconds": 20}}),
        (2, "n2", {"provider": "vapi", "hooks": []}),
    ]


def test_jsonl_rows_are_line_numbers() -> None:
    intake = from_jsonl(
        '{"id": "n1", "provider": "vapi"}\n\n{"id": "n2", "provider": "vapi", "name": 5}\n'
    )
    assert bodies(intake) == [(1, "n1", {"provider": "vapi"})]
    assert errors(intake) == [(3, "name", "expected text, got 5")]


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


# --- JSON defaults -----------------------------------------------------------------------


@pytest.mark.parametrize("defaults_first", [True, False])
def test_json_defaults_apply_to_every_item_wherever_they_are(defaults_first: bool) -> None:
    defaults = {"provider": "vapi", "assistantId": "asst_default", "server": {"url": "https://d"}}
    items = [
        {"id": "n1"},
        {"id": "n2", "assistantId": "asst_own", "server": {"timeoutSeconds": 5}},
        {"id": "n3", "provider": "twilio", "smsEnabled": True},
    ]
    batch = (
        {"defaults": defaults, "items": items}
        if defaults_first
        else {
            "items": items,
            "defaults": defaults,
        }
    )
    intake = from_json(batch)
    assert bodies(intake) == [
        (
            1,
            "n1",
            {"provider": "vapi", "assistantId": "asst_default", "server": {"url": "https://d"}},
        ),
        (
            2,
            "n2",
            {
                "provider": "vapi",
                "assistantId": "asst_own",
                "server": {"url": "https://d", "timeoutSeconds": 5},
            },
        ),
        (
            3,
            "n3",
            {
                "provider": "twilio",
                "assistantId": "asst_default",
                "server": {"url": "https://d"},
                "smsEnabled": True,
            },
        ),
    ]


def test_json_defaults_are_strict_too() -> None:
    intake = from_json(
        {
            "defaults": {"provider": "vapi", "server": {"timeoutSeconds": "20"}},
            "items": [{"id": "n1"}],
        }
    )
    assert only_error(intake) == (
        1,
        "server.timeoutSeconds",
        "expected a number, got '20'",
    )


# --- --set -------------------------------------------------------------------------------


def test_parse_assignments() -> None:
    assert parse_assignments(
        ["assistantId=asst_1", " server.url = https://x?a=1&b=2", "name=", "hooks=[]"]
    ) == {"assistantId": "asst_1", "server.url": " https://x?a=1&b=2", "name": "", "hooks": "[]"}


@pytest.mark.parametrize("pair", ["assistantId", "=asst_1", "  =x", ""])
def test_parse_assignments_bad_syntax(pair: str) -> None:
    with pytest.raises(InputError) as info:
        parse_assignments(["name=ok", pair])
    assert str(info.value) == (f"--set {pair!r}: write it as FIELD=VALUE, e.g. assistantId=asst_1")


@pytest.mark.parametrize("pair", ["id=n1", " id =n1"])
def test_parse_assignments_refuses_id(pair: str) -> None:
    with pytest.raises(InputError, match=r"--set id=\.\.\.: every row needs its own id"):
        parse_assignments([pair])


def test_set_applies_to_every_row_and_the_row_wins() -> None:
    overrides = parse_assignments(["assistantId=asst_all", "server.timeoutSeconds=20"])
    intake = from_csv(
        "id,provider,assistantId\nn1,vapi,\nn2,vapi,asst_own\nn3,twilio,\n", overrides=overrides
    )
    assert bodies(intake) == [
        (
            2,
            "n1",
            {"provider": "vapi", "assistantId": "asst_all", "server": {"timeoutSeconds": 20}},
        ),
        (
            3,
            "n2",
            {"provider": "vapi", "assistantId": "asst_own", "server": {"timeoutSeconds": 20}},
        ),
        (
            4,
            "n3",
            {"provider": "twilio", "assistantId": "asst_all", "server": {"timeoutSeconds": 20}},
        ),
    ]


def test_set_deep_merges_with_dotted_row_columns() -> None:
    overrides = parse_assignments(["server.url=https://all", "server.headers.X-Team=ops"])
    intake = from_csv(
        "id,provider,server.timeoutSeconds,server.headers.X-Api-Key,server.url\n"
        "n1,vapi,15,k1,\n"
        "n2,vapi,,,https://own\n",
        overrides=overrides,
    )
    assert bodies(intake) == [
        (
            2,
            "n1",
            {
                "provider": "vapi",
                "server": {
                    "url": "https://all",
                    "headers": {"X-Team": "ops", "X-Api-Key": "k1"},
                    "timeoutSeconds": 15,
                },
            },
        ),
        (
            3,
            "n2",
            {"provider": "vapi", "server": {"url": "https://own", "headers": {"X-Team": "ops"}}},
        ),
    ]


def test_set_value_is_coerced_by_the_schema() -> None:
    overrides = parse_assignments(['hooks=[{"on": "call.ending"}]', "smsEnabled=no"])
    body = only_body(from_csv("id,provider\nn1,twilio\n", overrides=overrides))
    assert body == {"provider": "twilio", "hooks": [{"on": "call.ending"}], "smsEnabled": False}


def test_set_gives_json_items_a_value_over_the_file_defaults() -> None:
    overrides = parse_assignments(["assistantId=asst_flag"])
    intake = from_json(
        {
            "defaults": {"provider": "vapi", "assistantId": "asst_file"},
            "items": [{"id": "n1"}, {"id": "n2", "assistantId": "asst_own"}],
        },
        overrides=overrides,
    )
    assert bodies(intake) == [
        (1, "n1", {"provider": "vapi", "assistantId": "asst_flag"}),
        (2, "n2", {"provider": "vapi", "assistantId": "asst_own"}),
    ]


def test_set_provider_is_a_default_for_rows_without_one() -> None:
    intake = from_csv(
        "id,provider,name\nn1,,a\nn2,twilio,b\n", overrides=parse_assignments(["provider=vapi"])
    )
    assert bodies(intake) == [
        (2, "n1", {"provider": "vapi", "name": "a"}),
        (3, "n2", {"provider": "twilio", "name": "b"}),
    ]


def test_bad_set_value_is_reported_on_its_column() -> None:
    intake = from_csv(
        "id,provider\nn1,vapi\n",
        overrides=parse_assignments(["server.timeoutSeconds=soon", "hooks=[oops"]),
    )
    assert errors(intake) == [
        (2, "--set hooks", "not valid JSON: Expecting value (character 2)"),
        (2, "--set server.timeoutSeconds", "expected a number, got 'soon'"),
    ]
    assert not intake.ok


# --- provider ----------------------------------------------------------------------------


def test_missing_provider() -> None:
    assert only_error(from_csv("id,name\nn1,a\n")) == (
        2,
        "provider",
        "no provider: add a provider column or pass --provider",
    )


def test_provider_option_is_the_default_and_the_column_wins() -> None:
    intake = from_csv("id,provider,name\nn1,,a\nn2,twilio,b\n", provider="vapi")
    assert bodies(intake) == [
        (2, "n1", {"provider": "vapi", "name": "a"}),
        (3, "n2", {"provider": "twilio", "name": "b"}),
    ]


@pytest.mark.parametrize(("written", "meant"), [("Vapi", "vapi"), ("twillio", "twilio")])
def test_unknown_provider_with_suggestion(written: str, meant: str) -> None:
    assert only_error(from_csv(f"id,provider\nn1,{written}\n")) == (
        2,
        "provider",
        f"{written!r} is not a provider ({PROVIDER_LIST}); did you mean {meant!r}?",
    )


def test_unknown_provider_without_suggestion() -> None:
    assert only_error(from_csv("id,provider\nn1,plivo\n")) == (
        2,
        "provider",
        f"'plivo' is not a provider ({PROVIDER_LIST})",
    )


@pytest.mark.parametrize("provider", [["vapi"], {"name": "vapi"}, 5])
def test_provider_of_the_wrong_json_type_is_a_row_error(provider: Any) -> None:
    row, column, message = only_error(from_json([{"id": "n1", "provider": provider}]))
    assert (row, column) == (1, "provider")
    assert message == f"{json.dumps(provider)} is not a provider ({PROVIDER_LIST})"


# --- id ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["", "   "])
def test_missing_id(cell: str) -> None:
    assert only_error(from_csv(f"id,provider,name\n{cell},vapi,a\n")) == (
        2,
        "id",
        "the phone number id is missing",
    )


def test_missing_id_in_json() -> None:
    assert only_error(from_json([{"provider": "vapi"}])) == (
        1,
        "id",
        "the phone number id is missing",
    )


def test_id_must_be_text_in_json() -> None:
    assert only_error(from_json([{"id": 42, "provider": "vapi"}])) == (
        1,
        "id",
        "expected the id as text, got 42",
    )


def test_number_listed_twice_names_both_rows() -> None:
    intake = from_csv("id,provider\nn1,vapi\nn2,vapi\n\n n1 ,vapi\nn1,vapi\n")
    assert [item.number_id for item in intake.items] == ["n1", "n2"]
    assert errors(intake) == [
        (5, "id", "number n1 is listed twice: rows 2 and 5"),
        (6, "id", "number n1 is listed twice: rows 2 and 6"),
    ]


def test_number_listed_twice_is_caught_even_when_the_first_row_is_bad() -> None:
    intake = from_csv("id,provider\nn1,nope\nn1,vapi\n")
    assert [(row, column) for row, column, _ in errors(intake)] == [(2, "provider"), (3, "id")]
    assert errors(intake)[1][2] == "number n1 is listed twice: rows 2 and 3"


# --- field messages ----------------------------------------------------------------------


def test_unknown_field_did_you_mean() -> None:
    assert only_error(from_csv("id,provider,assistantID\nn1,vapi,asst_1\n")) == (
        2,
        "assistantID",
        "unknown field 'assistantID'; did you mean 'assistantId'?",
    )


def test_unknown_nested_field_did_you_mean() -> None:
    assert only_error(from_csv("id,provider,server.URL\nn1,vapi,https://x\n")) == (
        2,
        "server.URL",
        "unknown field 'URL'; did you mean 'url'?",
    )


def test_unknown_field_without_a_close_name() -> None:
    assert only_error(from_csv("id,provider,colour\nn1,vapi,blue\n")) == (
        2,
        "colour",
        "unknown field 'colour'",
    )


def test_field_of_another_provider() -> None:
    assert only_error(from_csv("id,provider,twilioAuthToken\nn1,vonage,secret\n")) == (
        2,
        "twilioAuthToken",
        "'twilioAuthToken' is a field of twilio numbers, not of vonage numbers",
    )


def test_field_of_several_other_providers() -> None:
    row, column, message = only_error(from_csv("id,provider,number\nn1,vapi,+15550001111\n"))
    assert (row, column) == (2, "number")
    assert message == (
        "'number' is a field of byo-phone-number and twilio and vonage and telnyx numbers, "
        "not of vapi numbers"
    )


def test_bad_transfer_plan_mode_lists_the_allowed_values() -> None:
    intake = from_csv(
        "id,provider,fallbackDestination.type,fallbackDestination.number,"
        "fallbackDestination.transferPlan.mode\n"
        "n1,vapi,number,+15550001111,blind\n"
    )
    assert only_error(intake) == (
        2,
        "fallbackDestination.transferPlan.mode",
        f"'blind' is not one of: {TRANSFER_MODES}",
    )


def test_bad_language_code_with_suggestion() -> None:
    destination = {
        "type": "number",
        "number": "+15550001111",
        "message": {
            "type": "custom-message",
            "contents": [{"type": "text", "text": "Hallo", "language": "DE"}],
        },
    }
    assert only_error(
        from_json([{"id": "n1", "provider": "vapi", "fallbackDestination": destination}])
    ) == (
        1,
        "fallbackDestination",
        "fallbackDestination.message.contents[0].language: "
        "'DE' is not one of the 185 allowed values; did you mean 'de'?",
    )


def test_bad_union_tag_names_the_discriminator() -> None:
    cell = _csv_cell(json.dumps({"type": "phone", "number": "+1"}))
    assert only_error(from_csv(f"id,provider,fallbackDestination\nn1,vapi,{cell}\n")) == (
        2,
        "fallbackDestination",
        "type 'phone' is not one of: number, sip",
    )


def test_missing_union_tag() -> None:
    cell = _csv_cell(json.dumps({"number": "+1"}))
    assert only_error(from_csv(f"id,provider,fallbackDestination\nn1,vapi,{cell}\n")) == (
        2,
        "fallbackDestination",
        "needs a 'type' field saying which kind of object it is",
    )


@pytest.mark.parametrize(
    ("column", "cell", "message"),
    [
        ("server.timeoutSeconds", "soon", "expected a number, got 'soon'"),
        ("server.timeoutSeconds", "nan", "expected a number, got 'nan'"),
        ("server.timeoutSeconds", "inf", "expected a number, got 'inf'"),
        ("server.staticIpAddressesEnabled", "maybe", "expected true or false, got 'maybe'"),
        ("server.encryptedPaths", '"/a"', "expected a list, got '/a'"),
        ("fallbackDestination", "5", "expected an object, got 5"),
    ],
)
def test_wrong_type_in_a_csv_cell(column: str, cell: str, message: str) -> None:
    text = f"id,provider,{column}\nn1,vapi,{_csv_cell(cell)}\n"
    assert only_error(from_csv(text)) == (2, column, message)


def test_broken_json_cell() -> None:
    assert only_error(from_csv('id,provider,hooks\nn1,vapi,"[{""on"": }]"\n')) == (
        2,
        "hooks",
        "not valid JSON: Expecting value (character 9)",
    )


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        (
            [{"on": "call.ringing", "do": [{"type": "say"}]}],
            "hooks[0].do[0].exact: required field 'exact' is missing",
        ),
        (
            [{"on": "call.ringing", "do": [{"type": "say", "exact": 5}]}],
            "hooks[0].do[0].exact: expected text, got 5",
        ),
        (
            [{"on": "call.ringing", "do": []}, {"on": "call.ring", "do": []}],
            "hooks[1]: on 'call.ring' is not one of: call.ringing, call.ending; "
            "did you mean 'call.ringing'?",
        ),
        (
            [{"on": "call.ringing", "do": [{"type": "shout"}]}],
            "hooks[0].do[0]: type 'shout' is not one of: transfer, say",
        ),
        (
            [{"on": "call.ringing", "do": [{"type": "say", "exact": "x", "loud": True}]}],
            "hooks[0].do[0].loud: unknown field 'loud'",
        ),
    ],
)
def test_errors_inside_a_json_cell_name_the_inner_path(
    hooks: list[dict[str, Any]], message: str
) -> None:
    text = f"id,provider,hooks\nn1,vapi,{_csv_cell(json.dumps(hooks))}\n"
    assert only_error(from_csv(text)) == (2, "hooks", message)


def test_missing_required_field_of_a_nested_object_from_dotted_columns() -> None:
    assert only_error(from_csv("id,provider,authentication.username\nn1,vapi,u\n")) == (
        2,
        "authentication.password",
        "required field 'password' is missing",
    )


def test_server_and_server_url_columns_clash() -> None:
    intake = from_csv('id,provider,server,server.url\nn1,vapi,"{}",https://x\n')
    assert only_error(intake) == (2, "server.url", "sets the same field as 'server'")


# --- JSON input is strict ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "column", "message"),
    [
        (
            {"server": {"timeoutSeconds": True}},
            "server",
            "server.timeoutSeconds: expected a number, got true",
        ),
        (
            {"server": {"timeoutSeconds": "20"}},
            "server",
            "server.timeoutSeconds: expected a number, got '20'",
        ),
        ({"server.timeoutSeconds": "20"}, "server.timeoutSeconds", "expected a number, got '20'"),
        ({"name": 123}, "name", "expected text, got 123"),
        ({"name": None}, "name", "expected text, got null"),
        ({"server": "https://x"}, "server", "expected an object, got 'https://x'"),
    ],
)
def test_json_values_are_not_coerced(item: dict[str, Any], column: str, message: str) -> None:
    intake = from_json([{"id": "n1", "provider": "vapi", **item}])
    assert only_error(intake) == (1, column, message)


def test_json_string_for_a_bool_is_an_error_but_a_csv_cell_is_coerced() -> None:
    intake = from_json([{"id": "n1", "provider": "twilio", "smsEnabled": "true"}])
    assert only_error(intake) == (1, "smsEnabled", "expected true or false, got 'true'")
    body = only_body(from_csv("id,provider,smsEnabled\nn1,twilio,true\n"))
    assert body == {"provider": "twilio", "smsEnabled": True}


def test_json_string_20_is_an_error_but_csv_20_is_a_number() -> None:
    bad = from_json([{"id": "n1", "provider": "vapi", "server": {"timeoutSeconds": "20"}}])
    assert not bad.ok
    good = from_csv("id,provider,server.timeoutSeconds\nn1,vapi,20\n")
    assert only_body(good) == {"provider": "vapi", "server": {"timeoutSeconds": 20}}


# --- every bad row at once ---------------------------------------------------------------


def test_every_bad_row_is_reported_at_once() -> None:
    intake = from_csv(
        "id,provider,assistantId,server.timeoutSeconds,smsEnabled\n"
        "n1,vapi,asst_1,,\n"  # 2: fine
        ",vapi,asst_1,,\n"  # 3: no id
        "n3,twillio,,,\n"  # 4: unknown provider
        "n4,vapi,,soon,\n"  # 5: not a number
        "n5,vapi,,,yes\n"  # 6: twilio-only field
        "n1,vapi,,,\n"  # 7: listed twice
        "n7,twilio,,x,maybe,extra\n"  # 8: too many cells
        "n8,twilio,,abc,maybe\n"  # 9: two problems in one row
        "n9,twilio,asst_9,30,no\n"  # 10: fine
    )
    assert errors(intake) == [
        (3, "id", "the phone number id is missing"),
        (
            4,
            "provider",
            f"'twillio' is not a provider ({PROVIDER_LIST}); did you mean 'twilio'?",
        ),
        (5, "server.timeoutSeconds", "expected a number, got 'soon'"),
        (6, "smsEnabled", "'smsEnabled' is a field of twilio numbers, not of vapi numbers"),
        (7, "id", "number n1 is listed twice: rows 2 and 7"),
        (8, None, "the row has 6 cells but the header has 5"),
        (9, "server.timeoutSeconds", "expected a number, got 'abc'"),
        (9, "smsEnabled", "expected true or false, got 'maybe'"),
    ]
    assert [(row, number_id) for row, number_id, _ in bodies(intake)] == [(2, "n1"), (10, "n9")]
    assert intake.rows == 9
    assert intake.bad_rows == 7
    assert not intake.ok


def test_every_bad_json_item_is_reported_at_once() -> None:
    intake = from_json(
        [
            {"id": "n1", "provider": "vapi"},
            "n2",
            {"id": "n3", "provider": "vapi", "assistantID": "x"},
            None,
            {"id": "n5", "provider": "vapi", "name": False},
        ]
    )
    assert errors(intake) == [
        (2, None, "expected a JSON object, got a string"),
        (3, "assistantID", "unknown field 'assistantID'; did you mean 'assistantId'?"),
        (4, None, "expected a JSON object, got null"),
        (5, "name", "expected text, got false"),
    ]
    assert intake.bad_rows == 4
    assert len(intake.items) == 1


def test_errors_past_the_limit_are_counted_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs.batch.intake, "MAX_REPORTED_ERRORS", 2)
    intake = from_csv("id,provider\nn1,x\nn2,x\nn3,vapi\nn4,x\nn5,x\n")
    assert [e.row for e in intake.errors] == [2, 3]
    assert intake.errors_not_listed == 2
    assert intake.bad_rows == 4
    assert intake.rows == 5
    assert not intake.ok


def test_a_batch_without_rows_is_an_input_error() -> None:
    with pytest.raises(InputError, match="the batch has no rows: nothing to do"):
        from_csv("id,provider\n\n\n")
    with pytest.raises(InputError, match="the batch has no rows"):
        from_json({"defaults": {"provider": "vapi"}, "items": []})


def test_unreadable_file_is_an_input_error_not_a_row_error() -> None:
    with pytest.raises(InputError, match="no 'id' column"):
        from_csv("number,provider\nn1,vapi\n")
    with pytest.raises(InputError, match="the JSON cannot be read"):
        read_batch(io.StringIO('[{"id": "n1"'), Format.JSON)


# --- validate_records and RowValidator directly ------------------------------------------


def test_validate_records_applies_defaults_to_the_records_after_them() -> None:
    intake = validate_records(
        [
            Defaults({"provider": "vapi", "name": "from defaults"}),
            RawRecord(1, {"id": "n1"}),
            RawRecord(2, {"id": "n2", "name": "own"}),
        ]
    )
    assert bodies(intake) == [
        (1, "n1", {"provider": "vapi", "name": "from defaults"}),
        (2, "n2", {"provider": "vapi", "name": "own"}),
    ]
    assert intake.rows == 2


def test_row_validator_keeps_rows_independent() -> None:
    validator = RowValidator(provider="vapi", overrides={"server.url": "https://all"})
    first = validator.validate(RawRecord(2, {"id": "n1", "server.timeoutSeconds": "5"}, True))
    second = validator.validate(RawRecord(3, {"id": "n2"}, True))
    assert isinstance(first, BatchItem)
    assert isinstance(second, BatchItem)
    assert json.loads(first.body) == {
        "provider": "vapi",
        "server": {"url": "https://all", "timeoutSeconds": 5},
    }
    assert json.loads(second.body) == {"provider": "vapi", "server": {"url": "https://all"}}


def test_row_validator_reports_a_source_problem_as_is() -> None:
    result = RowValidator(provider="vapi").validate(RawRecord(7, problem="not valid JSON: x"))
    assert result == [RowError(7, None, "not valid JSON: x")]


def test_row_error_text_and_dict() -> None:
    error = RowError(4, "server.url", "expected text, got 5")
    assert str(error) == "row 4, column server.url: expected text, got 5"
    assert error.as_dict() == {"row": 4, "column": "server.url", "message": "expected text, got 5"}
    assert str(RowError(4, None, "unreadable")) == "row 4: unreadable"
    assert str(RowError(None, None, "whole file")) == "whole file"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("assistantID", "assistantId"),
        ("asistantId", "assistantId"),
        ("squadid", "squadId"),
        ("colour", None),
    ],
)
def test_suggest(name: str, expected: str | None) -> None:
    assert suggest(name, ["assistantId", "squadId", "workflowId", "name"]) == expected


def test_spreadsheet_habits_are_tolerated() -> None:
    # Cells of only spaces are empty, trailing empty cells past the header are ignored,
    # and "1_000" is not a number a person meant.
    intake = from_csv("id,provider,name,server.timeoutSeconds\nn1,vapi,  ,1_000,,\nn2,vapi, ,5\n")
    assert errors(intake) == [(2, "server.timeoutSeconds", "expected a number, got '1_000'")]
    assert bodies(intake) == [(3, "n2", {"provider": "vapi", "server": {"timeoutSeconds": 5}})]


def test_defaults_cannot_hold_an_id() -> None:
    text = '{"defaults": {"id": "x", "provider": "vapi"}, "items": [{"id": "a"}]}'
    with pytest.raises(InputError, match="cannot hold an id"):
        read_batch(io.StringIO(text), Format.JSON)


def test_a_bad_secret_value_is_never_echoed_back() -> None:
    text = (
        '{"id": "n1", "provider": "twilio", "twilioAuthToken": 123456789}\n'
        '{"id": "n2", "provider": "vapi", '
        '"authentication": {"username": "u", "password": 987654}}\n'
    )
    intake = read_batch(io.StringIO(text), Format.JSONL)
    messages = " ".join(str(e) for e in intake.errors)
    assert "123456789" not in messages and "987654" not in messages
    assert messages.count("expected text, got '***'") == 2
