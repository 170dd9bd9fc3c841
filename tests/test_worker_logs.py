"""Worker log lines: JSON naming the item, whatever the message holds."""

from __future__ import annotations

import json
import logging

from worker.logs import JsonFormatter, about_item


def test_a_line_orjson_refuses_is_still_json() -> None:
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "bad cell %s", ("\ud800",), None)
    with about_item("b1", 7, "n1"):
        line = json.loads(JsonFormatter().format(record))  # orjson refuses the lone surrogate
    assert (line["batch_id"], line["row"], line["number_id"]) == ("b1", 7, "n1")
    assert line["level"] == "error" and line["message"].startswith("bad cell")
