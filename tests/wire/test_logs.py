"""Log lines are JSON objects with the caller's extra fields."""

from __future__ import annotations

import json
import logging

from wire.logs import JsonFormatter


def test_json_line_has_extra_fields() -> None:
    record = logging.LogRecord("relayd", logging.INFO, __file__, 1, "vm %s online", ("v1",), None)
    record.workspace_id = "w1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "vm v1 online"
    assert line["workspace_id"] == "w1"
    assert line["level"] == "info"
