"""Whole numbers typed by people: parsed without ever building a huge int.

Python refuses to convert more than 4,300 digits ("Exceeds the limit") and SQLite and
PostgreSQL refuse integers past 2**63 - 1 (OverflowError, "Integer exceeds 64-bit range"):
both would surface as a traceback. Every integer a user gives is bounded here first.
"""

from __future__ import annotations

from eventstore.errors import InvalidInputError

# The largest integer both journals can store (a signed 64-bit seq, version or count).
MAX_INT64 = 2**63 - 1
_MAX_DIGITS = len(str(MAX_INT64))
# Items in flight at once in a batch run: far more than any pipeline runs, far less than
# a number that only a typo (or an attack on the exported file) produces.
MAX_PARALLEL = 1000
# Linux's PID_MAX_LIMIT: no process id is larger.
MAX_PID = 2**22


def shown(text: str, limit: int = 24) -> str:
    """`text` quoted for an error message, cut short when long (a 5,000-digit number)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def whole_number(  # noqa: PLR0913 - keyword-only knobs, most with defaults
    value: object, *, name: str, low: int, high: int, clamp: bool = False, unit: str = ""
) -> int:
    """`value` (an int or its decimal text) as an int from `low` to `high`.

    With `clamp`, a number above `high` means `high` (a seq past any journal's is "the
    end"); without, it is refused like any other out-of-range number, by `name`.
    """
    given = str(value)
    digits = given.strip().removeprefix("+")
    expected = f"expected a whole number{unit} from {low} to {high}"
    if isinstance(value, bool) or not (digits.isascii() and digits.isdigit()):
        raise InvalidInputError(f"invalid {name} value {shown(given)}: {expected}")
    stripped = digits.lstrip("0") or "0"
    number = high + 1 if len(stripped) > _MAX_DIGITS else int(stripped)
    if number > high:
        if clamp:
            return high
        raise InvalidInputError(f"invalid {name} value {shown(given)}: {expected} (too large)")
    if number < low:
        raise InvalidInputError(f"invalid {name} value {shown(given)}: {expected} (too small)")
    return number
