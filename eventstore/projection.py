"""The small protocol the runner drives: name, file name, initial state, fold, render.

The core never imports the folds themselves (they live in the `projections` package);
anything with these members can be run, checkpointed and exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.events import Event
    from eventstore.journal import StoredEvent

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
