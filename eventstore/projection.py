"""The small protocol the runner drives: name, file name, initial state, fold, render.

The core never imports the folds themselves (they live in the `projections` package);
anything with these members can be run, checkpointed and exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.events import Event
    from eventstore.records import StoredEvent

# Bytes start:end of a file replaced by new bytes (a PatchingProjection's answer).
Edit = tuple[int, int, bytes]


@runtime_checkable
class Projection(Protocol):
    """A pure fold of one session's events into a document, and that document's bytes.

    `fold` may update `state` in place and return it: the runner owns every state it
    passes in, and copying a large backlog per event would make replay quadratic.
    `render` returns None when the file should not exist (the runner then removes the
    file at its path in the session's export dir, whoever wrote it).
    `fold` sees an event's seq, stream, version, type, data and recorded_at; its meta and
    event_id are not loaded on the replay path.
    `validate` raises InvalidInputError for an event that makes no sense in `state`
    (an unknown item, say), before it is appended.
    """

    name: str
    file_name: str

    def initial(self) -> Any: ...

    def fold(self, state: Any, event: StoredEvent) -> Any: ...

    def render(self, state: Any) -> bytes | None: ...

    def dump_state(self, state: Any) -> bytes: ...

    def load_state(self, data: bytes) -> Any: ...

    def validate(self, state: Any, event: Event, stream: str) -> None: ...


@runtime_checkable
class PatchingProjection(Projection, Protocol):
    """A projection that can also update its last exported file for a few events without
    folding its state (the backlog: status changes are one string each). `edits` returns
    where `previous` changes, sorted and not overlapping ([] when it stays as it is), or
    None whenever it cannot be sure, and the runner folds and renders as always."""

    def edits(self, previous: bytes, events: Sequence[StoredEvent]) -> list[Edit] | None: ...


def edited(previous: bytes, edits: Sequence[Edit]) -> list[bytes | memoryview]:
    """The parts of `previous` with `edits` applied, in order: views of `previous` (not
    copies) between the new bytes. Written one after another they are the new file."""
    view = memoryview(previous)
    parts: list[bytes | memoryview] = []
    at = 0
    for start, end, value in edits:
        parts += [view[at:start], value]
        at = end
    parts.append(view[at:])
    return parts


@runtime_checkable
class LookupProjection(Projection, Protocol):
    """A projection that validates most events from a few lookup entries the journal keeps
    beside the events (docs/design.md §3), not from its whole state: checking one status
    update on a 100,000-item backlog then reads two rows instead of loading the backlog.

    Entries are JSON values by key, per stream. The store keeps them current in every
    append's transaction it validates, and trusts them only at the stream's version; an
    append made without them (a raw journal append, a staged one) leaves them behind, and
    the next validated append rebuilds them from the state.

    - `keeps_entries`: whether it keeps any entry (False: it only says, with
      `lookup_keys`, which events need nothing of it, such as a batch for a status update).
    - `lookup_keys(event)`: the keys whose entries are enough to validate `event` and fold
      it into them; [] when `event` needs nothing of this projection; None when it needs
      the whole state.
    - `validate_lookup(entries, event, stream)`: raise InvalidInputError as `validate`
      would, then fold `event` into `entries` (a key set to None is deleted).
    - `touched_keys(event)`: the keys whose entries `event` may change (None: any).
    - `lookup_entries(state, keys)`: the entries of `keys` (all, when None) in `state`,
      None for a key without one; None when this state cannot be looked up (ids that
      repeat, say), so validation always uses the state.
    """

    keeps_entries: bool

    def lookup_keys(self, event: Event) -> Sequence[str] | None: ...

    def validate_lookup(self, entries: dict[str, Any], event: Event, stream: str) -> None: ...

    def touched_keys(self, event: Event) -> Sequence[str] | None: ...

    def lookup_entries(
        self, state: Any, keys: Sequence[str] | None
    ) -> dict[str, Any] | None: ...
