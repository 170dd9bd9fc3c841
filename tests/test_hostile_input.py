"""Input that cannot be sent is refused with its row before anything is written: ids that
are not one path segment, text that is not UTF-8 (lone surrogates), NUL characters."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from jobs.batch.intake import parse_assignments, read_batch
from jobs.batch.sources import Format, InputError
from jobs.batch.text import (
    ID_MAX_LENGTH,
    first_text_problem,
    id_problem,
    printable,
    text_problem,
)
from tests.helpers import run_cli, stored


@pytest.mark.parametrize(
    ("number_id", "said"),
    [
        ("..", "cannot be '..'"),
        (".", "cannot be '.'"),
        ("a/b", "cannot hold '/'"),
        ("a\\b", "cannot hold '/'"),
        ("n\x1b[31mred", "control or unassigned character (U+001B)"),
        ("n\u202eevil", "control or unassigned character (U+202E)"),
        ("n\udce9", "lone surrogate (U+DCE9)"),
        ("n\x00", "NUL character"),
        ("x" * (ID_MAX_LENGTH + 1), f"longer than {ID_MAX_LENGTH} characters"),
    ],
)
def test_an_id_that_is_not_one_clean_path_segment_is_refused(number_id: str, said: str) -> None:
    problem = id_problem(number_id)
    assert problem is not None and said in problem
    assert problem.isprintable()  # shown as a code point, never raw


@pytest.mark.parametrize(
    "number_id", ["6f1d2a4e-0b7c-4e8f-9a51-3c2d1e0f9a11", "n1", "número-1", "a.b", "..a"]
)
def test_ordinary_ids_pass(number_id: str) -> None:
    assert id_problem(number_id) is None


def test_text_problems_name_the_field_even_nested() -> None:
    assert text_problem("Front desk") is None and text_problem("Réception") is None
    values = {"id": "n1", "server": {"headers": {"X-Key": "ok", "X-Bad": "a\ud800"}}}
    found = first_text_problem(values)
    assert found is not None and found[0] == "server.headers.X-Bad" and "U+D800" in found[1]
    assert first_text_problem({"hooks": [{"do": ["fine", "nul\x00"]}]}) == (
        "hooks[0].do[1]",
        "holds a NUL character (U+0000), which no text field may hold",
    )


def test_a_file_with_such_rows_is_refused_row_by_row() -> None:
    text = (
        "id,provider,assistantId,name\n"
        "ok-1,twilio,asst_1,Desk\n"
        "..,twilio,asst_1,Desk\n"
        "ok-2,twilio,asst_1,Desk \udce9\n"
        "ok-3,twilio,asst_1,\x00\n"
    )
    intake = read_batch(io.StringIO(text), Format.CSV)
    assert not intake.ok and len(intake.items) == 1
    assert [(e.row, e.column) for e in intake.errors] == [(3, "id"), (4, "name"), (5, "name")]
    json_text = json.dumps([{"id": "n\ud800", "provider": "vapi"}])  # "\ud800" in the JSON
    (error,) = read_batch(io.StringIO(json_text), Format.JSON).errors
    assert error.row == 1 and error.column == "id" and "lone surrogate" in error.message


def test_set_and_where_values_are_checked_too() -> None:
    with pytest.raises(InputError, match="lone surrogate"):
        parse_assignments(["name=bad\udce9"])
    with pytest.raises(InputError) as raised:
        parse_assignments(["name\x1b[2J"])
    assert "\x1b" not in str(raised.value)  # shown escaped, never raw


def test_submit_of_bytes_that_are_not_utf8_exits_2_and_writes_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The issue's reproduction: in the C locale stdin turns a stray byte into a lone
    surrogate, which used to fail halfway through writing the batch."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "REDIS_URL": redis_url}
    env.pop("LANG", None)
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "submit", "-", "--format", "csv"],
        input=b"id,provider,assistantId\nn\xe9,twilio,a\n", env=env, capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, stderr
    assert "row 2" in stderr and "Traceback" not in stderr
    assert stored(redis_client) == {}  # no batch record, no item, no task


def test_printable_escapes_what_a_terminal_would_run() -> None:
    assert printable("Front desk [bold]") == "Front desk [bold]"
    assert printable("a\x1b[2Jb\u202ec\nd") == "a\\x1b[2Jb\\u202ec\\nd"


def test_names_and_ids_are_shown_as_text_never_as_markup_or_escapes(
    tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """A batch named `[/]` used to crash `status` (rich markup), and escape sequences in
    names were printed raw."""
    path = tmp_path / "ok.csv"
    path.write_text("id,provider,assistantId\nn1,vapi,asst_1\n")
    env = {"REDIS_URL": redis_url}
    name = "[/] [bold]x\x1b[2J"
    submitted = run_cli("submit", str(path), "--name", name, "--json", env=env)
    assert submitted.returncode == 0, submitted.stderr
    batch_id = json.loads(submitted.stdout)["batch_id"]

    status = run_cli("status", batch_id, env=env)
    listed = run_cli("list", env=env)

    for shown in (status, listed):
        assert shown.returncode == 0, shown.stderr
        assert "[/] [bold]x\\x1b[2J" in shown.stdout and "\x1b" not in shown.stdout


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("fmt", "text", "said"),
    [
        (Format.JSON, '[{"id": "n1", "provider": "vapi", "name": 18446744073709551616}]',
         "out of range"),
        (Format.JSON, '[{"id": "n1", "provider": "vapi", "name": ' + "9" * 5000 + "}]",
         "(5000 digits) is out of range"),
        (Format.JSON, '[{"id": "n1", "provider": "vapi", "hooks": ' + _deep(1100) + "}]",
         "nested deeper than 32 levels"),
        (Format.JSON, '[{"id": "n1", "provider": "vapi", "name": 1e999}]', "out of range"),
    ],
)  # fmt: skip
def test_a_json_file_past_the_limits_is_refused_with_its_line(
    fmt: Format, text: str, said: str
) -> None:
    with pytest.raises(InputError, match=re.escape(said)) as raised:
        read_batch(io.StringIO(text), fmt)
    assert "(line 1)" in str(raised.value)


@pytest.mark.parametrize(
    ("fmt", "text", "column", "said"),
    [
        (Format.JSONL, '{"id": "n1", "provider": "vapi", "name": ' + "9" * 5000 + "}\n",
         None, "out of range"),
        (Format.JSONL, '{"id": "n1", "provider": "vapi", "hooks": ' + _deep(40) + "}\n",
         "hooks", "nested deeper than 32 levels"),
        (Format.CSV, "id,provider,hooks\nn1,vapi," + _deep(1100) + "\n",
         "hooks", "nested deeper than 32 levels"),
        (Format.CSV, "id,provider,server.timeoutSeconds\nn1,vapi," + "9" * 5000 + "\n",
         "server.timeoutSeconds", "out of range"),
        (Format.JSONL,
         '{"id": "n1", "provider": "vapi", "server": {"url": "https://a.example", "headers": '
         + '{"a": ' * 300 + '"x"' + "}" * 300 + "}}\n",
         "server.headers.a", "nested deeper than 32 levels"),
    ],
)  # fmt: skip
def test_a_row_past_the_limits_is_a_named_row_error(
    fmt: Format, text: str, column: str | None, said: str
) -> None:
    intake = read_batch(io.StringIO(text), fmt)
    (error,) = intake.errors
    assert error.row in (1, 2) and said in error.message
    if column is not None:
        assert error.column is not None and error.column.startswith(column)


def test_a_set_value_past_the_limits_is_a_row_error_too() -> None:
    text = "id,provider\nn1,vapi\n"
    intake = read_batch(io.StringIO(text), Format.CSV, overrides={"hooks": _deep(1100)})
    (error,) = intake.errors
    assert error.column == "--set hooks" and "nested deeper" in error.message


@pytest.mark.parametrize("file", ["/etc/passwd", "../secrets.csv", "a/../../b.csv", "C:\\x.csv"])
def test_a_schedule_file_outside_the_schedules_folder_is_refused(file: str) -> None:
    from config.schedules import ScheduleError, parse_schedules

    text = f'[[schedule]]\nname = "n"\ncron = "0 19 * * *"\nfile = {json.dumps(file)}\n'
    with pytest.raises(ScheduleError, match="relative to the schedules file"):
        parse_schedules(text)


def test_a_schedules_file_that_is_not_utf8_is_named_not_printed(tmp_path: Path) -> None:
    from config.schedules import ScheduleError, load_schedules

    path = tmp_path / "schedules.toml"
    path.write_bytes(b'[[schedule]]\nname = "secret-\xff-stuff"\n' + b"x" * 5000)
    with pytest.raises(ScheduleError) as raised:
        load_schedules(path)
    assert "not UTF-8" in str(raised.value) and "stuff" not in str(raised.value)


def test_stdin_with_a_byte_order_mark_and_unreadable_paths(tmp_path: Path) -> None:
    rows = json.dumps([{"id": "n1", "provider": "vapi", "assistantId": "a"}]).encode()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "validate", "-", "--format", "json"],
        input=b"\xef\xbb\xbf" + rows, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    looped = run_cli("validate", str(loop), env={})
    assert looped.returncode == 2 and "cannot be read" in looped.stderr


def test_wide_long_and_endless_inputs_fail_fast_with_where() -> None:
    from jobs.batch.sources import MAX_COLUMNS, MAX_ITEM, MAX_LINE

    header = "id,provider," + ",".join(f"x{i}" for i in range(MAX_COLUMNS))
    with pytest.raises(InputError, match="columns: at most") as wide:
        read_batch(io.StringIO(header + "\n"), Format.CSV)
    assert wide.value.row == 1
    endless = io.StringIO("\0" * (MAX_LINE + 10))  # /dev/zero: no newline, ever
    for fmt in (Format.CSV, Format.JSONL):
        endless.seek(0)
        with pytest.raises(InputError, match="line 1 is longer than"):
            read_batch(endless, fmt)
    big = '[{"id": "n1", "provider": "vapi", "name": "' + "x" * (MAX_ITEM + 10) + '"}]'
    with pytest.raises(InputError, match="an item is larger than"):
        read_batch(io.StringIO(big), Format.JSON)


def test_a_row_wrong_in_many_ways_is_summed_up() -> None:
    from jobs.batch.intake import MAX_ERRORS_PER_ROW

    names = [f"x{i}" for i in range(60)]
    text = "id,provider," + ",".join(names) + "\nn1,vapi," + ",".join("1" for _ in names) + "\n"
    errors = read_batch(io.StringIO(text), Format.CSV).errors
    assert len(errors) == MAX_ERRORS_PER_ROW + 1
    assert errors[-1].message == f"... and {60 - MAX_ERRORS_PER_ROW} more problems in this row"


def test_selection_values_are_validated_like_a_row() -> None:
    from jobs.batch.selection import values_problems

    assert values_problems({"assistantId": "asst_1"}) == []
    assert values_problems({"twilioAuthToken": "t"}) == []  # twilio numbers take it
    (problem,) = values_problems({"assistantID": "asst_1"})
    assert problem.column == "--set assistantID" and "did you mean 'assistantId'" in problem.message
    assert values_problems({"server.timeoutSeconds": "soon"})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("big.json", '[{"id": "n1", "provider": "vapi", "name": 18446744073709551616}]'),
        ("digits.jsonl", '{"id": "n1", "provider": "vapi", "name": ' + "9" * 5000 + "}\n"),
        ("deep.json", '[{"id": "n1", "provider": "vapi", "hooks": ' + _deep(1100) + "}]"),
        ("deep.csv", "id,provider,hooks\nn1,vapi," + _deep(1100) + "\n"),
        ("headers.jsonl", '{"id": "n1", "provider": "vapi", "server": {"url": "https://a.example",'
         ' "headers": ' + '{"a": ' * 300 + '"x"' + "}" * 300 + "}}\n"),
        ("surrogate.json", '[{"id": "n1", "provider": "vapi", "name": "\\ud800"}]'),
        ("dots.csv", "id,provider,assistantId\n..,vapi,a\n"),
    ],
)  # fmt: skip
def test_the_issues_inputs_exit_2_with_nothing_written(
    name: str, content: str, tmp_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    path = tmp_path / name
    path.write_text(content)
    done = run_cli("submit", str(path), env={"REDIS_URL": redis_url})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and ("row" in done.stderr + done.stdout
                                               or "line" in done.stderr)  # fmt: skip
    assert stored(redis_client) == {}
