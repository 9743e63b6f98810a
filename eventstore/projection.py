"""The small protocol the runner drives: name, file name, initial state, fold, render.

The core never imports the folds themselves (they live in the `projections` package);
anything with these members can be run, checkpointed and exported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.events import Event
    from eventstore.persistence import StoredEvent


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
    folding its state (the backlog: status changes are one string each). `patch` returns
    None whenever it cannot be sure, and the runner folds and renders as always."""

    def patch(self, previous: bytes, events: Sequence[StoredEvent]) -> bytes | None: ...
