"""What is wrong with JSON input, said in the user's terms rather than the parser's.

orjson reports a number past a double's range as "number is infinity when parsed as
double" and any invalid UTF-8 as "surrogates not allowed" at char 0, wherever the bad
byte is; neither tells the user what to fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import orjson

_MAX_SHOWN = 60


def json_problem(exc: orjson.JSONDecodeError, data: bytes | str) -> str:
    """`not valid JSON: ...` for `exc`, raised parsing `data`, naming what and where."""
    message = str(exc)
    if "surrogates not allowed" in message and isinstance(data, bytes):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as bad:
            line = data.count(b"\n", 0, bad.start) + 1
            return (
                f"not valid UTF-8 at byte {bad.start} (line {line}): "
                "save the input as UTF-8"
            )
    if message.startswith("number is infinity"):
        where = f"line {exc.lineno} column {exc.colno}"
        number = _number_at(data, exc.pos)
        kind = "number" if set("eE.") & set(number[:20]) else "integer"
        return (
            f"{kind} too large at {where} ({number}): JSON numbers must be within "
            "±1.7976931348623157e308; write it as a string"
        )
    return f"not valid JSON: {message}"


def _number_at(data: bytes | str, pos: int) -> str:
    text = data[pos:] if isinstance(data, str) else data[pos:].decode("utf-8", "replace")
    length = 0
    while length < len(text) and text[length] in "+-0123456789.eE":
        length += 1
    if length <= _MAX_SHOWN:
        return text[:length]
    return f"{text[:20]}... ({length} characters)"
