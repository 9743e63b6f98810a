"""Validating an append from lookup entries instead of whole states (docs/design.md §3).

A command that appends one status update in a fresh process would otherwise load the
session's whole folded state (on a 100,000-item backlog, tens of megabytes) to learn that
one item exists. Projections that implement `LookupProjection` name the few entries an
event needs; the journal keeps those entries beside the events, written in the same
transaction as each append the store validates, with the stream version they are current
at. Entries behind the stream are never trusted: the append then validates from the
state as always, and rebuilds them from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard

from eventstore.projection import LookupProjection
from eventstore.records import LookupWrite

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from eventstore.events import Event
    from eventstore.persistence import Journal
    from eventstore.projection import Projection
    from eventstore.records import StoredEvent


def validate_by_lookup(
    journal: Journal,
    projections: Iterable[Projection],
    session: str,
    chosen: Sequence[Event],
    pending: list[StoredEvent],
) -> list[LookupWrite] | None:
    """Validate `chosen` (to be stored as `pending`) from lookup entries, and the writes
    that keep the entries current; None when some projection needs its whole state for
    them (or its entries are not current), and nothing was decided."""
    needs: list[tuple[LookupProjection, list[str]]] = []
    for projection in projections:
        if not _keeps_lookups(projection):
            return None
        keys: list[str] = []
        for event in chosen:
            wanted = projection.lookup_keys(event)
            if wanted is None:
                return None
            keys.extend(wanted)
        if keys:
            needs.append((projection, keys))
    before, after = pending[0].version - 1, pending[-1].version
    read = []
    for projection, keys in needs:
        found = journal.lookup(projection.name, session, keys)
        if found.version != before:
            return None
        read.append((projection, found.entries))
    writes = []
    for projection, entries in read:
        for event in chosen:
            projection.validate_lookup(entries, event, session)
        writes.append(LookupWrite(projection.name, session, after, entries))
    return writes


def lookup_writes(  # noqa: PLR0913 - the journal, what is appended, and the states after it
    journal: Journal,
    projections: Iterable[Projection],
    session: str,
    *,
    chosen: Sequence[Event],
    pending: list[StoredEvent],
    states: dict[str, Any],
) -> list[LookupWrite]:
    """The writes that bring each projection's entries to `states` (the states after
    `chosen`): only the keys the events touch when the entries were current before them,
    else every entry, rebuilt."""
    writes = []
    before, after = pending[0].version - 1, pending[-1].version
    for projection in projections:
        if not _keeps_lookups(projection):
            continue
        touched = _touched(projection, chosen)
        if touched == []:
            continue
        state = states[projection.name]
        current = journal.lookup(projection.name, session).version == before
        if current and touched is not None:
            entries = projection.lookup_entries(state, touched)
            replace = False
        else:
            entries = projection.lookup_entries(state, None)
            replace = True
        if entries is None:  # this state cannot be looked up: validate from it always
            writes.append(LookupWrite(projection.name, session, None, {}))
        else:
            writes.append(LookupWrite(projection.name, session, after, entries, replace=replace))
    return writes


_KEEPS: dict[type, bool] = {}


def _keeps_lookups(projection: Projection) -> TypeGuard[LookupProjection]:
    """isinstance against the protocol, once per class: a runtime protocol check walks
    every member each time, and this runs on every append."""
    kind = type(projection)
    keeps = _KEEPS.get(kind)
    if keeps is None:
        keeps = _KEEPS[kind] = isinstance(projection, LookupProjection)
    return keeps


def _touched(projection: LookupProjection, chosen: Sequence[Event]) -> list[str] | None:
    touched: list[str] = []
    for event in chosen:
        keys = projection.touched_keys(event)
        if keys is None:
            return None
        touched.extend(keys)
    return touched
