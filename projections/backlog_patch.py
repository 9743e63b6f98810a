"""tasks.json updated in place for status changes, without folding the whole backlog.

A status change alters one string in the file. When the file on disk is exactly the last
export and every event since is a status change, the new file is the old bytes with
those strings replaced: the same bytes a full render would give (JSON.stringify writes a
status as its JSON string, and nothing else in the file depends on it), for the cost of
reading and writing the file. On a 100,000-item backlog that is what keeps exporting
one update near the cost of writing the file (docs/design.md §5).

Anything unusual gives up (None) and the caller folds and renders as always: an id that
appears as `"id": ...` more than once or not at all, a status that is not a string, an
object not laid out as JSON.stringify lays it out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from eventstore.projection import edited

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.projection import Edit

# More changes than this and a full render is as cheap as searching for each.
MAX_PATCHED_EVENTS = 50


def patch_statuses(previous: bytes, changes: Sequence[tuple[str, str]]) -> bytes | None:
    """`previous` (a tasks.json as evstore writes it) with each (item id, status) applied
    in order; None when any change cannot be placed with certainty."""
    edits = status_edits(previous, changes)
    return None if edits is None else b"".join(edited(previous, edits))


def status_edits(previous: bytes, changes: Sequence[tuple[str, str]]) -> list[Edit] | None:
    """Where each (item id, status) changes `previous`: (start, end, new bytes) of each
    status string, in file order; None when any change cannot be placed with certainty.
    The caller writes the file from these without joining it (a big file is not copied)."""
    if len(changes) > MAX_PATCHED_EVENTS:
        return None
    wanted = dict(changes)  # the last change of an item is the one that shows
    spans: list[Edit] = []
    for item_id, status in wanted.items():
        found = _status_span(previous, item_id)
        if found is None:
            return None
        spans.append((*found, orjson.dumps(status)))
    spans.sort()
    return spans


def _status_span(data: bytes, item_id: str) -> tuple[int, int] | None:
    """Where the JSON string of `item_id`'s status lies in `data`."""
    key = b'"id": ' + orjson.dumps(item_id)
    first = data.find(key)
    if first < 0 or data.find(key, first + 1) >= 0:
        return None  # absent, or more than one candidate: let the fold decide
    line = data.rfind(b"\n", 0, first) + 1
    indent = first - line
    if (
        indent < 2
        or data[line:first] != b" " * indent
        or data[first + len(key) : first + len(key) + 1] not in (b",", b"\n")
    ):
        return None
    outer = b"\n" + b" " * (indent - 2)
    start = data.rfind(outer + b"{", 0, first)
    end = data.find(outer + b"}", first)
    if start < 0 or end < 0:
        return None
    marker = b"\n" + b" " * indent + b'"status": '
    at = data.find(marker, start, end)
    if at < 0 or data.find(marker, at + 1, end) >= 0:
        return None
    value = at + len(marker)
    closing = _string_end(data, value)
    return None if closing is None else (value, closing)


def _string_end(data: bytes, at: int) -> int | None:
    """The index just past the JSON string starting at `at` (None if it is not one)."""
    if data[at:at + 1] != b'"':
        return None
    i = at + 1
    while True:
        quote = data.find(b'"', i)
        if quote < 0:
            return None
        slashes = 0
        while data[quote - 1 - slashes] == 0x5C:  # backslashes before it
            slashes += 1
        if slashes % 2 == 0:
            return quote + 1
        i = quote + 1


def status_changes(events: Sequence[Any]) -> list[tuple[str, str]] | None:
    """(item id, status) of each event, or None when any event is not a status change."""
    changes = []
    for event in events:
        if event.type != "ItemStatusChanged":
            return None
        changes.append((event.data["item_id"], event.data["status"]))
    return changes
