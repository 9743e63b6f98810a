"""Validating an append from lookup entries instead of whole states (docs/design.md §3).

A command that appends one status update in a fresh process would otherwise load the
session's whole folded state (on a 100,000-item backlog, tens of megabytes) to learn that
one item exists. Projections that implement `LookupProjection` name the few entries an
event needs; the journal keeps those entries beside the events, written in the same
transaction as each append the store validates, and marked current. Any append that does
not keep them (a raw journal append, a streamed one, a store without that projection)
takes the mark off in its own transaction, and unmarked entries are never trusted: the
append then validates from the state as always, and rebuilds them from it.

An append that changes no entry (a status update: statuses are not entries) writes
nothing. `Marks` remembers the stream versions at which this process left entries
current, so an append with the states in memory need not read the mark back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard

from eventstore.projection import LookupProjection
from eventstore.records import LookupWrite

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from eventstore.events import Event
    from eventstore.persistence import Journal
    from eventstore.projection import Projection
    from eventstore.records import StoredEvent

# (projection, stream) -> the stream version at which this process last left them current.
Marks = dict[tuple[str, str], int]


def validate_by_lookup(
    journal: Journal,
    projections: Iterable[Projection],
    session: str,
    chosen: Sequence[Event],
) -> list[LookupWrite] | None:
    """Validate `chosen` from lookup entries, and the writes
    that keep the entries current; None when some projection needs its whole state for
    them (or its entries are not current), and nothing was decided."""
    needs: list[tuple[LookupProjection, list[str]]] = []
    for projection in projections:
        if not _looks_up(projection):
            return None
        keys = _keys(projection.lookup_keys, chosen)
        if keys is None:
            return None
        if projection.keeps_entries:
            needs.append((projection, keys))
    read = []
    for projection, keys in needs:
        found = journal.lookup(projection.name, session, keys)
        if not found.current:
            return None
        read.append((projection, found.entries))
    writes = []
    for projection, entries in read:
        original = dict(entries)
        for event in chosen:
            projection.validate_lookup(entries, event, session)
        changes: dict[str, Any] = {key: value for key, value in entries.items()
                                   if key not in original or original[key] != value}
        changes.update((key, None) for key in original if key not in entries)
        writes.append(LookupWrite(projection.name, session, changes))
    return writes


def lookup_writes(  # noqa: PLR0913 - the journal, what is appended, and the states after it
    journal: Journal,
    projections: Iterable[Projection],
    session: str,
    *,
    chosen: Sequence[Event],
    pending: list[StoredEvent],
    states: dict[str, Any],
    marks: Marks,
) -> list[LookupWrite]:
    """The writes that bring each projection's entries to `states` (the states after
    `chosen`): only the keys the events touch when the entries were current before them
    (known from `marks` without a read when this process made them so), else every entry,
    rebuilt."""
    writes = []
    before = pending[0].version - 1
    for projection in projections:
        if not _looks_up(projection) or not projection.keeps_entries:
            continue
        name = projection.name
        current = (marks.get((name, session)) == before
                   or journal.lookup(name, session).current)
        touched = _keys(projection.touched_keys, chosen) if current else None
        entries = projection.lookup_entries(states[name], touched)
        if entries is None:  # this state cannot be looked up: validate from it always
            writes.append(LookupWrite(name, session, {}, drop=True))
        else:
            writes.append(LookupWrite(name, session, entries, replace=touched is None))
    return writes


def marks_of(writes: Sequence[LookupWrite], version: int) -> Marks:
    """The entries `writes` leave current at stream `version` (to remember once they
    commit)."""
    return {(w.projection, w.stream): version for w in writes if not w.drop}


_LOOKS_UP: dict[type, bool] = {}


def _looks_up(projection: Projection) -> TypeGuard[LookupProjection]:
    """isinstance against the protocol, once per class: a runtime protocol check walks
    every member each time, and this runs on every append."""
    kind = type(projection)
    found = _LOOKS_UP.get(kind)
    if found is None:
        found = _LOOKS_UP[kind] = isinstance(projection, LookupProjection)
    return found


def _keys(
    of: Callable[[Event], Sequence[str] | None], chosen: Sequence[Event]
) -> list[str] | None:
    """The keys `of` names for every event of `chosen`; None when it names None for one."""
    found: list[str] = []
    for event in chosen:
        keys = of(event)
        if keys is None:
            return None
        found.extend(keys)
    return found
