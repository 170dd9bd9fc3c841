"""The example files the README shows are valid batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.batch.intake import read_batch
from jobs.batch.sources import detect_format

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").iterdir())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    with path.open(newline="", encoding="utf-8") as stream:
        intake = read_batch(stream, detect_format(path.name))
    assert intake.ok, intake.errors
    assert len(intake.items) >= 2


def test_there_are_examples_of_every_format() -> None:
    assert {p.suffix for p in EXAMPLES} == {".csv", ".json", ".jsonl"}
