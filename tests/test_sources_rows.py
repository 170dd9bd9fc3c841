"""CSV rows as records, for any mix of filled, blank, missing and extra cells.

`read_csv` takes a quick way for a row with every cell filled; whatever the cells, the
records must be the ones the plain rule gives: blank cells dropped, blank rows skipped,
a row with more filled cells than the header refused.
"""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.batch.sources import RawRecord, read_csv

HEADER = ["id", "provider", "name", "server.url"]
CELLS = st.sampled_from(["", " ", "\t", "\u00a0", "x", " y ", "é", "a,b", 'q"q', "l\nl"])


def plain_rule(rows: list[list[str]]) -> list[RawRecord]:
    """The records as the rule states them, one row at a time."""
    records = []
    for number, cells in enumerate(rows, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(HEADER) and any(c.strip() for c in cells[len(HEADER) :]):
            problem = f"the row has {len(cells)} cells but the header has {len(HEADER)}"
            records.append(RawRecord(number, problem=problem))
            continue
        values = {n: c for n, c in zip(HEADER, cells, strict=False) if c.strip()}
        records.append(RawRecord(number, values, textual=True))
    return records


@settings(max_examples=300, deadline=None, database=None)
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=6), max_size=8))
def test_records_follow_the_plain_rule(rows: list[list[str]]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(HEADER)
    writer.writerows(rows)
    records = list(read_csv(io.StringIO(text.getvalue(), newline="")))
    assert records == plain_rule(rows)
