"""A point in the journal as people give it: a seq, or a time (`--until`, `--since`).

    parse_until(store.journal, "120")                    # 120
    parse_until(store.journal, "2026-01-13T12:00:00Z")   # the last seq recorded by then
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from eventstore.errors import InvalidInputError
from eventstore.numbers import MAX_INT64, whole_number


class SeqClock(Protocol):
    """What a time needs to become a seq: both journals have it."""

    def seq_at(self, moment: datetime) -> int: ...


def parse_until(journal: SeqClock, value: str, *, option: str = "--until") -> int:
    """The seq `value` names: ASCII digits are a seq; anything else must be an ISO 8601 time
    (UTC when it has no offset), meaning the last event recorded at or before it (0 if
    none). Raises InvalidInputError naming `option` for anything else. The journal is read
    only for a time."""
    text = value.strip()
    if text.isascii() and text.isdigit():  # not "²", which isdigit() also accepts
        # Past the largest seq a journal can hold (SQLite's and PostgreSQL's bigint) is
        # simply "to the end", not a number the database would refuse.
        return whole_number(text, name=option, low=0, high=MAX_INT64, clamp=True)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"invalid {option} value {value!r}: expected a seq number or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(journal.seq_at(moment))
