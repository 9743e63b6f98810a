"""JSON bytes as JavaScript's `JSON.stringify(doc, null, 2)` writes them.

The pipelines that read and write tasks.json are JavaScript: they parse the file into
objects and stringify it back. orjson's OPT_INDENT_2 output matches JSON.stringify byte for
byte (2-space indent, `": "`, raw UTF-8, `[]`/`{}` for empties, the same string escapes, no
trailing newline) once the document holds what a JavaScript object would:

* numbers: JavaScript has one number type, so `2.0` is written `2`; integral floats that
  fit 64 bits become ints when they enter (`normalize`). Floats JavaScript writes in plain
  decimal where orjson uses an exponent (about 1e-6 ≤ |x| < 1e-5, and integral values
  from 2**63 to 1e21) are rendered as JavaScript does by `dumps(js_numbers=True)`.
* key order: JavaScript objects list "array index" keys ("0", "7", "42") first, in numeric
  order, then the other keys in insertion order; `normalize` reorders such objects.
"""

from __future__ import annotations

from typing import Any

import orjson

_ARRAY_INDEX_LIMIT = 2**32 - 1
_INT64 = 2**63  # orjson writes ints up to 64 bits; larger integral floats stay floats
_DIGITS = frozenset("0123456789")


def dumps(doc: Any, *, js_numbers: bool = False) -> bytes:
    """`JSON.stringify(doc, null, 2)`. Pass js_numbers=True when `needs_js_numbers(doc)`."""
    if js_numbers:
        doc = _with_js_numbers(doc)
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def loads(data: bytes | str) -> Any:
    """Parse JSON (orjson's strict RFC 8259 parser) into what JavaScript would hold."""
    return normalize(orjson.loads(data))


def normalize(value: Any) -> Any:
    """Make parsed JSON hold what a JavaScript object would (see the module docstring).

    Updates dicts and lists in place (and returns `value`): callers own what they pass.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list, float)):
                value[key] = normalize(item)
        return js_key_order(value)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list, float)):
                value[index] = normalize(item)
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64:
        return int(js_number(value))
    return value


def normalize_document(value: Any) -> tuple[Any, bool]:
    """`normalize(value)` and `needs_js_numbers` of the result, in one walk: a document
    folded from an import is a hundred thousand items, and floats are rare in it."""
    floats: list[float] = []

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(item, (dict, list, float)):
                    node[key] = walk(item)
            return js_key_order(node)
        if isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, (dict, list, float)):
                    node[index] = walk(item)
            return node
        normal = normalize(node)
        if isinstance(normal, float):
            floats.append(normal)
        return normal

    normal = walk(value)
    return normal, any(needs_js_numbers(number) for number in floats)


def js_key_order(obj: dict[str, Any]) -> dict[str, Any]:
    """Reorder `obj` in place as a JavaScript object lists its keys."""
    for key in obj:
        # Only a key starting with a digit can be an array index: one cheap test per key
        # (this runs on every object of every document parsed).
        if key[:1] in _DIGITS and _is_array_index(key):
            break
    else:
        return obj
    items = list(obj.items())
    obj.clear()
    obj.update(
        sorted((kv for kv in items if _is_array_index(kv[0])), key=lambda kv: int(kv[0]))
    )
    obj.update(kv for kv in items if not _is_array_index(kv[0]))
    return obj


def needs_js_numbers(value: Any) -> bool:
    """Whether `value` holds a float orjson would write differently from JavaScript."""
    if isinstance(value, float):
        return orjson.dumps(value).decode() != js_number(value)
    if isinstance(value, dict):
        return any(
            needs_js_numbers(v) for v in value.values() if isinstance(v, (dict, list, float))
        )
    if isinstance(value, list):
        return any(needs_js_numbers(v) for v in value if isinstance(v, (dict, list, float)))
    return False


def js_number(x: float) -> str:
    """ECMAScript Number::toString for a finite float (shortest round-trip digits)."""
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number(-x)
    mantissa, _, exponent = repr(x).partition("e")
    point = mantissa.index(".") if "." in mantissa else len(mantissa)
    raw = mantissa.replace(".", "")
    digits = raw.lstrip("0")
    n = point - (len(raw) - len(digits)) + (int(exponent) if exponent else 0)
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    head = digits[0] + (f".{digits[1:]}" if k > 1 else "")
    return f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"


def _is_array_index(key: str) -> bool:
    return (
        key.isascii()
        and key.isdigit()
        and (key == "0" or key[0] != "0")
        and int(key) < _ARRAY_INDEX_LIMIT
    )


def _with_js_numbers(value: Any) -> Any:
    # A copy: orjson.Fragment (pre-rendered JSON) must never reach state or events.
    if isinstance(value, dict):
        return {k: _with_js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_js_numbers(v) for v in value]
    if isinstance(value, float) and orjson.dumps(value).decode() != js_number(value):
        return orjson.Fragment(js_number(value))
    return value
