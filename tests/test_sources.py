"""Reading batch files: CSV, JSON and JSONL as records, with the row numbers a person sees."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

import jobs.batch.sources
from jobs.batch.sources import (
    Defaults,
    Format,
    InputError,
    RawRecord,
    _JsonStream,
    detect_format,
    read_csv,
    read_json,
    read_jsonl,
    read_records,
)


def csv_rows(text: str) -> list[RawRecord]:
    return list(read_csv(io.StringIO(text, newline="")))


def json_records(text: str) -> list[Defaults | RawRecord]:
    return list(read_json(io.StringIO(text)))


def json_rows(text: str) -> list[RawRecord]:
    records = json_records(text)
    assert all(isinstance(r, RawRecord) for r in records)
    return [r for r in records if isinstance(r, RawRecord)]


def jsonl_rows(text: str) -> list[RawRecord]:
    return list(read_jsonl(io.StringIO(text)))


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the JSON reader's window tiny so values straddle chunk boundaries."""
    monkeypatch.setattr(jobs.batch.sources, "_CHUNK", 7)


# --- detect_format -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("batch.csv", Format.CSV),
        ("BATCH.CSV", Format.CSV),
        ("dir.v2/batch.json", Format.JSON),
        ("batch.jsonl", Format.JSONL),
        ("batch.ndjson", Format.JSONL),
    ],
)
def test_detect_format_by_extension(name: str, expected: Format) -> None:
    assert detect_format(name) is expected


def test_declared_format_wins_over_the_extension() -> None:
    assert detect_format("batch.csv", "JSONL") is Format.JSONL
    assert detect_format("", "json") is Format.JSON  # stdin has no name


def test_unknown_declared_format_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"unknown format 'xml': use csv, json or jsonl"):
        detect_format("batch.csv", "xml")


@pytest.mark.parametrize("name", ["batch.txt", "batch", ""])
def test_unrecognised_extension_asks_for_format(name: str) -> None:
    with pytest.raises(InputError, match="pass --format") as info:
        detect_format(name)
    assert repr(name) in str(info.value)


def test_read_records_dispatches_by_format() -> None:
    csv_text = "id,name\nn1,a\n"
    json_text = '[{"id": "n1"}]'
    jsonl_text = '{"id": "n1"}\n'
    assert list(read_records(io.StringIO(csv_text), Format.CSV)) == [
        RawRecord(2, {"id": "n1", "name": "a"}, textual=True)
    ]
    assert list(read_records(io.StringIO(json_text), Format.JSON)) == [RawRecord(1, {"id": "n1"})]
    assert list(read_records(io.StringIO(jsonl_text), Format.JSONL)) == [RawRecord(1, {"id": "n1"})]


# --- CSV rows ----------------------------------------------------------------------------


def test_csv_header_is_row_1_and_first_data_row_is_row_2() -> None:
    rows = csv_rows("id,name\nn1,first\nn2,second\n")
    assert [(r.row, r.values) for r in rows] == [
        (2, {"id": "n1", "name": "first"}),
        (3, {"id": "n2", "name": "second"}),
    ]
    assert all(r.textual and r.problem is None for r in rows)


def test_csv_blank_lines_are_skipped_but_counted() -> None:
    rows = csv_rows("id,name\nn1,a\n\n , \nn2,b\n")
    assert [(r.row, r.values["id"]) for r in rows] == [(2, "n1"), (5, "n2")]


def test_csv_quoted_multiline_cell_is_one_row() -> None:
    rows = csv_rows('id,name\nn1,"line one\nline two"\nn2,b\n')
    assert [(r.row, r.values) for r in rows] == [
        (2, {"id": "n1", "name": "line one\nline two"}),
        (3, {"id": "n2", "name": "b"}),
    ]


def test_csv_crlf_line_endings() -> None:
    rows = csv_rows("id,name\r\nn1,a\r\nn2,b\r\n")
    assert [(r.row, r.values) for r in rows] == [
        (2, {"id": "n1", "name": "a"}),
        (3, {"id": "n2", "name": "b"}),
    ]


def test_csv_empty_cells_are_left_out() -> None:
    rows = csv_rows("id,name,assistantId\nn1,,asst_1\nn2,b,\n")
    assert rows[0].values == {"id": "n1", "assistantId": "asst_1"}
    assert rows[1].values == {"id": "n2", "name": "b"}


def test_csv_short_row_is_read_with_the_cells_it_has() -> None:
    assert csv_rows("id,name,assistantId\nn1,a\n")[0].values == {"id": "n1", "name": "a"}


def test_csv_header_names_are_stripped() -> None:
    assert csv_rows(" id , name \nn1,a\n")[0].values == {"id": "n1", "name": "a"}


def test_csv_cell_text_is_kept_as_written() -> None:
    assert csv_rows("id,name\nn1, spaced \n")[0].values["name"] == " spaced "


def test_csv_row_with_too_many_cells_is_a_row_problem_not_fatal() -> None:
    rows = csv_rows("id,name\nn1,a,extra\nn2,b\n")
    assert rows[0].row == 2
    assert rows[0].values == {}
    assert rows[0].problem == "the row has 3 cells but the header has 2"
    assert (rows[1].row, rows[1].values, rows[1].problem) == (3, {"id": "n2", "name": "b"}, None)


def test_csv_utf8_bom_before_the_header_is_ignored() -> None:
    rows = csv_rows("\ufeffid,name\nn1,a\n")
    assert rows[0].values == {"id": "n1", "name": "a"}


def test_csv_empty_file_is_an_input_error() -> None:
    with pytest.raises(InputError, match="the file is empty") as info:
        csv_rows("")
    assert info.value.row is None


def test_csv_header_without_id_column() -> None:
    with pytest.raises(InputError) as info:
        csv_rows("name,assistantId\na,b\n")
    assert info.value.row == 1
    assert info.value.message == "the header row has no 'id' column"
    assert str(info.value) == "row 1: the header row has no 'id' column"


@pytest.mark.parametrize("near", ["ID", "Id", "_id"])
def test_csv_header_id_hint(near: str) -> None:
    with pytest.raises(InputError) as info:
        csv_rows(f"{near},name\nn1,a\n")
    assert info.value.row == 1
    assert info.value.message == (
        f"the header row has no 'id' column (found {near!r}: rename it to 'id')"
    )


def test_csv_duplicate_column() -> None:
    with pytest.raises(InputError) as info:
        csv_rows("id,name,name\nn1,a,b\n")
    assert info.value.row == 1
    assert info.value.message == "column 'name' appears twice in the header row"


def test_csv_empty_column_name() -> None:
    with pytest.raises(InputError) as info:
        csv_rows("id,,name\nn1,x,a\n")
    assert info.value.row == 1
    assert info.value.message == "column 2 of the header row has no name"


def test_csv_unclosed_quote_names_the_row_it_opened_in() -> None:
    with pytest.raises(InputError) as info:
        csv_rows('id,name\nn1,a\nn2,"unclosed\nn3,c\nn4,d\n')
    assert info.value.row == 3
    assert "the CSV cannot be read" in info.value.message


def test_csv_syntax_error_row_counts_a_multiline_cell_as_one_row() -> None:
    with pytest.raises(InputError) as info:
        csv_rows('id,name\nn1,"two\nlines"\nn2,"bad"quote\n')
    assert info.value.row == 3  # physical line 4
    assert "the CSV cannot be read" in info.value.message


# --- JSONL rows --------------------------------------------------------------------------


def test_jsonl_row_is_the_line_number_and_blank_lines_count() -> None:
    rows = jsonl_rows('{"id": "n1"}\n\n   \n{"id": "n2", "server": {"timeoutSeconds": 20}}\n')
    assert rows == [
        RawRecord(1, {"id": "n1"}),
        RawRecord(4, {"id": "n2", "server": {"timeoutSeconds": 20}}),
    ]
    assert not any(r.textual for r in rows)


def test_jsonl_bad_line_is_a_row_problem_and_reading_goes_on() -> None:
    rows = jsonl_rows('{"id": "n1"}\n{"id": \n[1, 2]\n"text"\n{"id": "n5"}\n')
    assert [(r.row, r.problem) for r in rows] == [
        (1, None),
        (2, "not valid JSON: Expecting value (column 8)"),
        (3, "expected a JSON object, got a list"),
        (4, "expected a JSON object, got a string"),
        (5, None),
    ]
    assert rows[4].values == {"id": "n5"}


# --- JSON rows ---------------------------------------------------------------------------


def test_json_list_rows_are_positions_from_1() -> None:
    rows = json_rows('[\n  {"id": "n1"},\n\n  {"id": "n2", "smsEnabled": true}\n]\n')
    assert rows == [RawRecord(1, {"id": "n1"}), RawRecord(2, {"id": "n2", "smsEnabled": True})]


def test_json_empty_list_has_no_records() -> None:
    assert json_records("  [ ]  ") == []


def test_json_non_object_items_are_row_problems_not_fatal() -> None:
    rows = json_rows('[{"id": "n1"}, 3, 2.5, null, "x", [1], true, {"id": "n8"}]')
    assert [(r.row, r.problem) for r in rows] == [
        (1, None),
        (2, "expected a JSON object, got a number"),
        (3, "expected a JSON object, got a number"),
        (4, "expected a JSON object, got null"),
        (5, "expected a JSON object, got a string"),
        (6, "expected a JSON object, got a list"),
        (7, "expected a JSON object, got true or false"),
        (8, None),
    ]
    assert rows[7].values == {"id": "n8"}


def test_json_defaults_before_items_come_first() -> None:
    records = json_records(
        '{"defaults": {"provider": "vapi", "assistantId": "a1"},'
        ' "items": [{"id": "n1"}, {"id": "n2"}]}'
    )
    assert records == [
        Defaults({"provider": "vapi", "assistantId": "a1"}),
        RawRecord(1, {"id": "n1"}),
        RawRecord(2, {"id": "n2"}),
    ]


def test_json_defaults_after_items_still_come_first() -> None:
    records = json_records(
        '{"items": [{"id": "n1"}, {"id": "n2"}],'
        ' "defaults": {"provider": "vapi", "assistantId": "a1"}}'
    )
    assert records == [
        Defaults({"provider": "vapi", "assistantId": "a1"}),
        RawRecord(1, {"id": "n1"}),
        RawRecord(2, {"id": "n2"}),
    ]


def test_json_object_with_items_only() -> None:
    assert json_records('{"items": [{"id": "n1"}]}') == [RawRecord(1, {"id": "n1"})]


def test_json_object_without_items_is_an_input_error() -> None:
    with pytest.raises(InputError, match='the batch object has no "items" list'):
        json_records('{"defaults": {"provider": "vapi"}}')


@pytest.mark.parametrize(
    "text",
    [
        '{"items": [], "extra": 1}',
        '{"Items": []}',
        '{"items": [], "items": []}',
    ],
)
def test_json_object_unexpected_key(text: str) -> None:
    with pytest.raises(InputError, match=r"unexpected key .* expected \"defaults\" and \"items\""):
        json_records(text)


def test_json_defaults_must_be_an_object() -> None:
    with pytest.raises(InputError, match='"defaults" must be an object of field values'):
        json_records('{"defaults": ["vapi"], "items": []}')


@pytest.mark.parametrize("text", ["", "   \n", '"items"', "42", "null"])
def test_json_top_level_must_be_a_list_or_object(text: str) -> None:
    with pytest.raises(InputError, match=r"a JSON batch is a list of objects or \{\"defaults\""):
        json_records(text)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[{"id": "n1"},\n {"id": }\n]', 2),
        ('[\n{"id": "n1"}\n\n\n{"id": "n2"}]', 5),  # missing comma
        ('[{"id": "n1"},\n]', 2),  # trailing comma
        ('[{"id": "n1"}\n\n', 3),  # no closing bracket
        ('{"items": [{"id": "n1"}]\n"defaults": {}}', 2),
    ],
)
def test_json_syntax_error_is_an_input_error_with_the_line(text: str, line: int) -> None:
    with pytest.raises(InputError) as info:
        json_records(text)
    assert info.value.message.startswith("the JSON cannot be read: ")
    assert info.value.message.endswith(f"(line {line})")


def test_json_missing_comma_message() -> None:
    with pytest.raises(InputError) as info:
        json_records('[{"id": "n1"} {"id": "n2"}]')
    assert info.value.message == "the JSON cannot be read: expected ']', found '{' (line 1)"


def test_json_unclosed_list_message() -> None:
    with pytest.raises(InputError) as info:
        json_records('[{"id": "n1"}')
    assert info.value.message == (
        "the JSON cannot be read: expected ']', found the end of the file (line 1)"
    )


@pytest.mark.parametrize("text", ['[{"id": "n1"}] x', '[{"id": "n1"}]\n\n[]', '{"items": []} }'])
def test_json_trailing_garbage_is_an_error(text: str) -> None:
    with pytest.raises(InputError, match="unexpected text after the end of the batch"):
        json_records(text)


def test_json_trailing_whitespace_is_fine() -> None:
    assert json_rows('[{"id": "n1"}]\n\n  \t\n') == [RawRecord(1, {"id": "n1"})]


# --- the streaming reader across chunk boundaries -----------------------------------------

DOCUMENT: list[Any] = [
    {"id": "n1", "server": {"timeoutSeconds": 12345, "url": "https://example.com/a?b=c"}},
    {"id": "n2", "server": {"timeoutSeconds": 2.5}, "smsEnabled": False},
    {"id": "n3", "values": [1e3, -7, 1.5e2, 0, 123456789012, -0.25, 3e-2, 10.0]},
    {"id": "n4", "name": 'quote " and \\ back, ]} brackets', "nested": {"a": [{"b": None}]}},
    {"id": "n5", "name": "ünïcødé ☎"},
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 64])
@pytest.mark.parametrize("indent", [None, 2])
def test_json_list_split_at_any_chunk_size_reads_the_same(
    monkeypatch: pytest.MonkeyPatch, chunk: int, indent: int | None
) -> None:
    monkeypatch.setattr(jobs.batch.sources, "_CHUNK", chunk)
    text = json.dumps(DOCUMENT, indent=indent, ensure_ascii=False)
    rows = json_rows(text)
    assert [r.values for r in rows] == DOCUMENT
    assert [r.row for r in rows] == [1, 2, 3, 4, 5]
    values = rows[2].values["values"]
    assert [type(v) for v in values] == [type(v) for v in DOCUMENT[2]["values"]]


@pytest.mark.usefixtures("tiny_chunks")
@pytest.mark.parametrize(
    ("prefix", "number"),
    [
        # `[` + prefix puts the number's first character at offset 1 + len(prefix); with a
        # window of 7 the cut falls inside the number at these places.
        ("", "1234567890"),  # cut after digits
        ("    ", "12.5"),  # cut right before the '.'
        ("   ", "12.5"),  # cut right after the '.'
        ("    ", "12e3"),  # cut right before the 'e'
        ("   ", "12e+3"),  # cut right after the 'e'
        ("  ", "12e+3"),  # cut right after the '+'
        ("     ", "-5"),  # cut right after the '-'
    ],
)
def test_json_number_cut_by_the_chunk_edge(prefix: str, number: str) -> None:
    reader = _JsonStream(io.StringIO(f"[{prefix}{number}, 1]"))
    reader.take("[")
    value = reader.value()
    assert value == json.loads(number)
    assert type(value) is type(json.loads(number))
    assert reader.peek() == ","


@pytest.mark.usefixtures("tiny_chunks")
def test_json_number_at_the_very_end_of_the_stream() -> None:
    reader = _JsonStream(io.StringIO("123456789"))
    assert reader.value() == 123456789
    assert reader.peek() == ""


@pytest.mark.usefixtures("tiny_chunks")
def test_json_defaults_after_items_across_chunks() -> None:
    text = (
        '{"items": [{"id": "n1"}, {"id": "n2", "server": {"timeoutSeconds": 12.75}}],\n'
        ' "defaults": {"provider": "vapi"}}'
    )
    assert json_records(text) == [
        Defaults({"provider": "vapi"}),
        RawRecord(1, {"id": "n1"}),
        RawRecord(2, {"id": "n2", "server": {"timeoutSeconds": 12.75}}),
    ]


@pytest.mark.usefixtures("tiny_chunks")
def test_json_error_line_counts_lines_already_dropped_from_the_window() -> None:
    text = '[\n{"id": "a-long-identifier"},\n\n\n{"id": "n2"},\n\n{"id": }\n]'
    with pytest.raises(InputError) as info:
        json_records(text)
    assert info.value.message.endswith("(line 7)")


@pytest.mark.usefixtures("tiny_chunks")
def test_json_records_are_streamed_not_read_whole() -> None:
    stream = io.StringIO('[{"id": "n1"}, {"id": "n2"}, {"id": "n3"}, ' + " " * 1000 + "]")
    records = read_json(stream)
    assert next(records) == RawRecord(1, {"id": "n1"})
    assert stream.tell() < 40  # only a window of the text has been read so far


def test_json_stream_peek_and_take() -> None:
    reader = _JsonStream(io.StringIO("  \n [ ]"))
    assert reader.peek() == "["
    reader.take("[")
    with pytest.raises(InputError) as info:
        reader.take("{")
    assert info.value.message == "the JSON cannot be read: expected '{', found ']' (line 2)"
    reader.take("]")
    assert reader.peek() == ""
