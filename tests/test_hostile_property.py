"""Generated hostile batch files: whatever the bytes, reading and validating one ends in
items, row errors or one `InputError` (exit 2), never another exception (a traceback,
exit 1), and within a bound. `make fuzz` runs many more examples than the test command."""

from __future__ import annotations

import io
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.batch.intake import Intake, read_batch
from jobs.batch.sources import Format, InputError

EXAMPLES = int(os.environ.get("PHONEBATCH_FUZZ_EXAMPLES", "150"))
FUZZING = "PHONEBATCH_FUZZ_EXAMPLES" in os.environ  # `make fuzz`: new examples each run
NASTY_TEXT = st.sampled_from(
    ["\ud800", "\udce9", "\x00", "\x1b[2J", "\u202e", "..", ".", "/", "[/]", "\ufeff", "é",
     "9" * 5000, "[" * 2000, "{" * 40 + "}" * 40, "1e999", "-0", "18446744073709551616",
     "\r", "\n", '"', ",", "null", "true"]
)  # fmt: skip
CELL = st.one_of(st.text(max_size=20), NASTY_TEXT)
FIELDS = st.sampled_from(
    ["id", "provider", "assistantId", "name", "hooks", "server.url", "server.headers.X-A",
     "server.timeoutSeconds", "smsEnabled", "fallbackDestination", "twilioAuthToken",
     "authentication.password"]
)  # fmt: skip
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), CELL),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELL, inner, max_size=3),
    max_leaves=12,
)


def _read(text: str, fmt: Format) -> None:
    refused = ""
    try:
        result = read_batch(io.StringIO(text, newline=""), fmt, provider="vapi")
    except InputError as exc:
        refused = str(exc)
        assert refused  # one line saying what is wrong
        return
    assert isinstance(result, Intake)
    for error in result.errors:
        assert str(error).isprintable()  # shown as it is, nothing a terminal would run


@settings(
    max_examples=EXAMPLES, deadline=2000, derandomize=not FUZZING,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(header=st.lists(st.one_of(FIELDS, CELL), min_size=1, max_size=6), rows=st.lists(
    st.lists(CELL, max_size=7), max_size=5))  # fmt: skip
def test_any_csv_is_read_or_refused_in_words(header: list[str], rows: list[list[str]]) -> None:
    lines = [",".join(header)] + [",".join(row) for row in rows]
    _read("\n".join(lines) + "\n", Format.CSV)


@settings(
    max_examples=EXAMPLES, deadline=2000, derandomize=not FUZZING,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(items=st.lists(st.dictionaries(st.one_of(FIELDS, CELL), JSON_VALUE, max_size=5),
                      max_size=4), raw=st.booleans())  # fmt: skip
def test_any_json_or_jsonl_is_read_or_refused_in_words(
    items: list[dict[str, object]], raw: bool
) -> None:
    as_json = json.dumps(items, ensure_ascii=raw)
    _read(as_json, Format.JSON)
    _read("\n".join(json.dumps(i, ensure_ascii=raw) for i in items) + "\n", Format.JSONL)


@settings(
    max_examples=EXAMPLES, deadline=2000, derandomize=not FUZZING,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip
@given(text=st.text(max_size=300), fmt=st.sampled_from(list(Format)))
def test_any_text_at_all_is_read_or_refused_in_words(text: str, fmt: Format) -> None:
    _read(text, fmt)
