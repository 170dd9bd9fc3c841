"""The body shortcut (`jobs.batch.body_cache`) gives exactly what the full validation path gives.

Rows are drawn from bodies valid for the spec (every provider, nested objects, lists),
written as CSV cells would hold them: dotted columns or JSON cells, booleans and numbers
as text. Some cells are then spoiled and odd columns added, so that rows which must fail
go through both paths too. Each row is validated twice, by a validator with the shortcut
and one without it, and the results must be equal: the same body text to the byte, or
the same errors.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Annotated, Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from pydantic import AfterValidator, ValidationInfo, field_validator, model_validator

import jobs.batch.body_cache
from jobs.batch.body_cache import BodyCache
from jobs.batch.intake import read_batch
from jobs.batch.models import PROVIDERS, UPDATE_MODELS, VapiPhoneNumberUpdate
from jobs.batch.sources import Format, RawRecord
from jobs.batch.validation import BatchItem, RowError, RowValidator
from tests.test_models_fidelity import FIDELITY_SETTINGS, bodies, spec_body_schema, spec_variant

SPEC_BODIES = {p: bodies(spec_body_schema(spec_variant(p))) for p in PROVIDERS}
TRUE_TEXTS = ("true", "yes", "1", "TRUE", " Yes ")
FALSE_TEXTS = ("false", "no", "0", "False")
JUNK_CELLS = (
    "abc", "{", "{}", "[1", "[]", "true", "no", "12", "-3", "1.5e3", "nan", "1_000", "+7",
    'é "quoted" \\', '{"type": "number"}', '{"type":"say","exact":"hi"}', "null", "  x  ",
)  # fmt: skip
ODD_COLUMNS = (
    "nmae", "server", "server..url", "provider.x", "id.x", "server.url.deep", "hooks.0",
    ".x", "twilioAuthToken", "smsEnabled", "authentication.realm", "sipUri", "number",
    "credentialId", "server.headers.X-Key", "fallbackDestination.type", "name.first",
)  # fmt: skip
OVERRIDES: tuple[dict[str, str], ...] = (
    {}, {}, {"assistantId": "asst_set"}, {"server.url": "https://set.example.com"},
    {"server.timeoutSeconds": "5"}, {"name": "set name"}, {"smsEnabled": "yes"},
    {"server.bogus": "1"}, {"provider": "vapi"}, {"hooks": "[]"}, {"server.headers.A": "b"},
)  # fmt: skip
DEFAULTS: tuple[dict[str, Any], ...] = (
    {}, {}, {"server": {"url": "https://d.example.com"}}, {"assistantId": "asst_d"},
    {"hooks": []}, {"provider": "twilio"}, {"server": {"timeoutSeconds": "x"}},
    {"server": {"headers": {"Z": "1"}}, "name": "d"},
)  # fmt: skip


class NoShortcut(BodyCache):
    def __init__(self) -> None:
        super().__init__({}, lambda provider: None)

    def body(self, provider: str, values: Any) -> str | None:
        return None


def without_shortcut(validator: RowValidator) -> RowValidator:
    validator._bodies = NoShortcut()
    return validator


# --- drawing rows ---------------------------------------------------------------------


def _scalar_text(draw: st.DrawFn, value: Any) -> str:
    if value is True:
        return draw(st.sampled_from(TRUE_TEXTS))
    if value is False:
        return draw(st.sampled_from(FALSE_TEXTS))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _cells(draw: st.DrawFn, column: str, value: Any) -> dict[str, str]:
    """How a person might write `value` in a CSV: dotted columns, a JSON cell, or text."""
    if isinstance(value, dict) and value and draw(st.booleans()):
        cells: dict[str, str] = {}
        for key, inner in value.items():
            cells.update(_cells(draw, f"{column}.{key}", inner))
        return cells
    if isinstance(value, dict | list):
        return {column: json.dumps(value, ensure_ascii=draw(st.booleans()))}
    return {column: _scalar_text(draw, value)}


@st.composite
def text_rows(draw: st.DrawFn) -> dict[str, str]:
    """One row's cells apart from its id: a valid body written out, perhaps spoiled."""
    provider = draw(st.sampled_from(PROVIDERS))
    body = draw(SPEC_BODIES[provider])
    cells: dict[str, str] = {}
    if draw(st.integers(0, 9)):  # now and then the provider comes from elsewhere
        cells["provider"] = draw(st.sampled_from((*PROVIDERS, "twillio", " vapi")))
    for key, value in body.items():
        if key != "provider":
            cells.update(_cells(draw, key, value))
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):
        column = draw(st.sampled_from([*cells, *ODD_COLUMNS]))
        cells[column] = draw(st.sampled_from(JUNK_CELLS) | st.text(max_size=6))
    order = draw(st.permutations(list(cells)))
    return {column: cells[column] for column in order}


def as_record(row: int, number_id: str, cells: dict[str, str]) -> RawRecord:
    # As `read_csv` gives a row: a blank cell is no value at all.
    values = {"id": number_id, **cells}
    return RawRecord(row, {k: v for k, v in values.items() if v.strip()}, textual=True)


Result = BatchItem | list[RowError] | tuple[str, str]


def outcome(validator: RowValidator, record: RawRecord) -> Result:
    try:
        return validator.validate(record)
    except Exception as exc:  # a crash must be the same crash both ways
        return type(exc).__name__, str(exc)


def both_ways(
    records: list[RawRecord], make: Callable[[], RowValidator], defaults: dict[str, Any]
) -> tuple[list[Result], list[Result], int]:
    fast, full = make(), without_shortcut(make())
    if defaults:
        fast.set_defaults(defaults)
        full.set_defaults(defaults)
    hits = 0
    original = fast._bodies.body

    def counted(provider: str, values: Any) -> str | None:
        nonlocal hits
        found = original(provider, values)
        hits += found is not None
        return found

    fast._bodies.body = counted  # type: ignore[method-assign]
    return [outcome(fast, r) for r in records], [outcome(full, r) for r in records], hits


# --- the property -----------------------------------------------------------------------


def test_shortcut_and_full_path_agree_on_every_row() -> None:
    shortcut_bodies = 0

    # Derandomized: the same 400 rows every run, so how often the shortcut is taken is a
    # fact about the code, not about this run's luck.
    @settings(FIDELITY_SETTINGS, max_examples=400, phases=[Phase.generate], derandomize=True)
    @given(
        rows=st.lists(text_rows(), min_size=1, max_size=4),
        overrides=st.sampled_from(OVERRIDES),
        defaults=st.sampled_from(DEFAULTS),
        provider=st.sampled_from((None, *PROVIDERS)),
        repeat=st.booleans(),
    )
    def check(
        rows: list[dict[str, str]],
        overrides: dict[str, str],
        defaults: dict[str, Any],
        provider: str | None,
        repeat: bool,
    ) -> None:
        nonlocal shortcut_bodies
        if repeat:  # the same cells again, new ids: the second time comes from the cache
            rows = rows + rows
        records = [as_record(n + 2, f"n{n}", cells) for n, cells in enumerate(rows)]
        fast, full, hits = both_ways(
            records, lambda: RowValidator(provider=provider, overrides=overrides), defaults
        )
        assert fast == full
        shortcut_bodies += hits

    check()
    assert shortcut_bodies > 200, "the shortcut was hardly ever taken: the test proves little"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rows_with_every_kind_of_column_take_the_shortcut(provider: str) -> None:
    columns = {
        "name": "Front desk \"main\" é", "assistantId": "asst_1",
        "server.url": "https://hooks.example.com", "server.timeoutSeconds": "20",
        "server.headers.X-Api-Key": "12345", "server.staticIpAddressesEnabled": "yes",
        "hooks": '[{"on": "call.ringing", "do": [{"type": "say", "exact": "One moment"}]}]',
        "fallbackDestination.type": "number", "fallbackDestination.number": "+15550001111",
        "fallbackDestination.message": "Transferring you now",
    }  # fmt: skip
    records = [
        as_record(n + 2, f"n{n}", {"provider": provider, **columns, "name": f"Line {n}"})
        for n in range(3)
    ]
    fast, full, hits = both_ways(records, RowValidator, {})
    assert fast == full
    assert all(isinstance(r, BatchItem) for r in fast)
    assert hits == 3


def test_a_csv_file_gives_the_same_items_and_errors_both_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = (
        "id,provider,assistantId,name,server.url,server.timeoutSeconds,smsEnabled\n"
        "n1,twilio,asst_1,One,https://h,20,yes\n"
        "n2,twilio,asst_1,Two,https://h,twenty,yes\n"
        "n3,vapi,asst_1,Three,https://h,20,\n"
        "n1,twilio,asst_1,Four,https://h,20,no\n"
        "n5,vonage,asst_1,,https://h,,\n"
    )
    fast = read_batch(io.StringIO(text, newline=""), Format.CSV)
    monkeypatch.setattr(jobs.batch.validation, "BodyCache", lambda models, base: NoShortcut())
    full = read_batch(io.StringIO(text, newline=""), Format.CSV)
    assert (fast.items, fast.errors) == (full.items, full.errors)
    assert [e.row for e in fast.errors] == [3, 5]


# --- when the shortcut must stand aside -------------------------------------------------


class GuardedVapi(VapiPhoneNumberUpdate):
    @model_validator(mode="after")
    def name_needs_an_assistant(self) -> GuardedVapi:
        if self.name is not None and self.assistant_id is None:
            raise ValueError("a name needs an assistant")
        return self


def test_models_as_they_are_have_independent_fields() -> None:
    # If this fails, a model gained a validator across fields: the shortcut no longer
    # serves it (see `_independent`), and 100,000-row files validate at the full cost.
    assert all(jobs.batch.body_cache._independent(model) for model in UPDATE_MODELS.values())


class CheckedName(VapiPhoneNumberUpdate):
    @field_validator("name")
    @classmethod
    def name_after_assistant(cls, value: str, info: ValidationInfo) -> str:
        if "assistant_id" not in info.data:
            raise ValueError("a name needs an assistant")
        return value


class AnnotatedName(VapiPhoneNumberUpdate):
    name: Annotated[str, AfterValidator(str.strip)] = "unnamed"


class PostInit(VapiPhoneNumberUpdate):
    def model_post_init(self, context: Any) -> None:
        pass


@pytest.mark.parametrize("model", [GuardedVapi, CheckedName, AnnotatedName, PostInit])
def test_models_that_may_look_across_fields_are_not_independent(model: type[Any]) -> None:
    assert not jobs.batch.body_cache._independent(model)


def test_a_model_with_a_model_validator_gets_no_shortcut() -> None:
    assert not jobs.batch.body_cache._independent(GuardedVapi)
    cache = BodyCache({"vapi": GuardedVapi}, lambda provider: {})
    assert cache.body("vapi", {"id": "n1", "provider": "vapi", "name": "x"}) is None


def test_defaults_changed_midway_are_used_from_then_on() -> None:
    validator = RowValidator(provider="vapi")
    record = as_record(2, "n1", {"name": "x"})
    first = validator.validate(record)
    validator.set_defaults({"assistantId": "asst_d"})
    second = validator.validate(as_record(3, "n2", {"name": "x"}))
    assert isinstance(first, BatchItem) and isinstance(second, BatchItem)
    assert json.loads(first.body) == {"name": "x", "provider": "vapi"}
    assert json.loads(second.body) == {"name": "x", "assistantId": "asst_d", "provider": "vapi"}


def test_a_value_that_is_not_text_goes_the_full_way() -> None:
    cache = BodyCache(UPDATE_MODELS, lambda provider: {})
    assert cache.body("vapi", {"id": "n1", "name": "x", "server.url": "https://h"}) is not None
    assert cache.body("vapi", {"id": "n1", "name": 5, "server.url": "https://h"}) is None
    assert cache.body("vapi", {"id": "n1", "name": "x", "server.url": 5}) is None


def test_past_the_bounds_rows_still_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs.batch.body_cache, "MAX_SHAPES", 1)
    monkeypatch.setattr(jobs.batch.body_cache, "MAX_VALUES_PER_FIELD", 1)
    records = [
        as_record(2, "n1", {"provider": "vapi", "server.url": "https://a"}),
        as_record(3, "n2", {"provider": "vapi", "server.url": "https://b"}),
        as_record(4, "n3", {"provider": "twilio", "smsEnabled": "yes"}),
    ]
    fast, full, hits = both_ways(records, RowValidator, {})
    assert fast == full
    assert hits == 2  # the third row's shape is one too many: the full path took it
