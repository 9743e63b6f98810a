"""The journal's hash chain (docs/design.md §3): each event's link commits to every event
before it, so a journal that lost or swapped events (a deleted WAL, a replaced file, rows
edited behind the triggers) cannot pass for an unbroken one.

link(n) = sha256(link(n-1) · seq · stream · version · type · data · event_id), with the
journal's id in place of link(n-1) for the first chained event. `data` is the JSON text
exactly as stored, so both backends compute the same links.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

_SEPARATOR = "\x1f"  # cannot occur in a seq, version or event id; ends the text fields
_sha256 = hashlib.sha256


def link(  # noqa: PLR0913, PLR0917 - one argument per linked column, in hashed order
    prev: str, seq: int, stream: str, version: int, type_: str, data: str, event_id: str
) -> str:
    # One f-string: this runs for every event appended (the separator is _SEPARATOR).
    text = f"{prev}\x1f{seq}\x1f{stream}\x1f{version}\x1f{type_}\x1f{data}\x1f{event_id}"
    return _sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Break:
    seq: int
    why: str


def first_break(journal_id: str, chain_from: int, rows: Iterable[tuple[Any, ...]]) -> Break | None:
    """The first seq after `chain_from` where the chain does not hold, or None.

    `rows` are (seq, stream, version, type, data text, event_id, chain) in seq order,
    starting after `chain_from`."""
    prev, expected_seq = journal_id, chain_from + 1
    for seq, stream, version, type_, data, event_id, stored in rows:
        if seq != expected_seq:
            return Break(expected_seq, f"seq {expected_seq} is missing (next is {seq})")
        if stored is None:
            return Break(seq, "it carries no chain link")
        if stored != link(prev, seq, stream, version, type_, data, event_id):
            return Break(seq, "its chain link does not follow from the events before it")
        prev, expected_seq = stored, seq + 1
    return None
