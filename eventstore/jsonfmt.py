"""JSON bytes as JavaScript's `JSON.stringify(doc, null, 2)` writes them.

orjson's OPT_INDENT_2 output matches JSON.stringify byte for byte (2-space indent, `": "`,
raw UTF-8, `[]`/`{}` for empties, no trailing newline) for documents parsed by `loads`.
The one difference is numbers: JavaScript has no integral floats, so `2.0` in a file is
written back as `2`; `loads` folds such floats to ints to keep that promise.
"""

from __future__ import annotations

from typing import Any

import orjson

_JS_SAFE_INTEGRAL = 1e21  # from here up JSON.stringify switches to exponent notation


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def dumps_compact(doc: Any) -> bytes:
    return orjson.dumps(doc)


def loads(data: bytes | str) -> Any:
    """Parse JSON (orjson's strict RFC 8259 parser) with JavaScript's view of numbers."""
    return _fold_floats(orjson.loads(data))


def _fold_floats(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list, float)):
                value[key] = _fold_floats(item)
        return value
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list, float)):
                value[index] = _fold_floats(item)
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < _JS_SAFE_INTEGRAL:
        return int(value)
    return value
