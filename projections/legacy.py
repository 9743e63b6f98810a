"""Legacy recovery files (`tasks.json.failed`): what they bring into the journal
(docs/design.md §5, §10).

The old pipeline wrote the whole backlog it held when it gave up. Importing it as it is
would undo every update the journal recorded since, so only what the file changed relative
to the state it was written against is applied. Used by `doctor --fix` and by
`evstore import FILE.failed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from eventstore.errors import InvalidInputError
from eventstore.events import (
    BacklogImported,
    Event,
    ItemAdded,
    ItemRemoved,
    ItemStatusChanged,
    ItemUpdated,
)
from projections.backlog import BacklogState, TasksProjection
from projections.batch_runs import parse_time
from projections.imports import ParsedBacklog, diff_backlogs, import_event, read_recovery_file

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from pathlib import Path

    from eventstore.store import Store

LEGACY_FILE = "tasks.json.failed"


@dataclass(frozen=True)
class Pending:
    """What a legacy recovery file brings: the events to append, and how many of its
    differences the journal has superseded since it was written."""

    events: list[Event]
    superseded: int
    clock_skew: str | None = None  # why the file's timestamp was not believed, when it was not

    @property
    def count(self) -> int:
        return len(self.events)


def recovery_events(  # noqa: PLR0913 - the file, where it goes, and the state it meets
    store: Store, session: str, parsed: ParsedBacklog, written_at: datetime | None,
    current: dict[str, Any] | None, *, source: str,
) -> Pending:
    """The events that bring a legacy file's pending updates into the journal.

    The file's `pendingUpdates` is the whole backlog as the old pipeline held it when
    it gave up. Its differences from the journal's current state would also undo every
    update the journal recorded after the file was written, so only what the file
    changed relative to the state it was written against (the journal at the file's
    `timestamp`, or right after the session's first import when that is later) is
    applied; a field the journal changed since is newer and kept as the journal has it.
    Used by `doctor --fix` and by `evstore import FILE.failed`.
    """
    seed = import_event(parsed, source=source)
    if current is None:
        return Pending([seed], 0)
    events = diff_backlogs(current, parsed.doc, fallback=seed)
    skew = _clock_skew(store, written_at)
    base = _recovery_base(store, session, None if skew else written_at)
    if base is None or not events:
        return Pending(list(events), 0, skew)
    kept, superseded = _not_superseded(events, base, current)
    if kept == [seed] and _differs(base, current):
        raise InvalidInputError(
            "its differences can only be imported as a whole backlog, which would undo "
            "updates the journal recorded since it was written"
        )
    return Pending(kept, superseded, skew)


def _clock_skew(store: Store, written_at: datetime | None) -> str | None:
    """Why a file's timestamp cannot place it in the journal's order, or None.

    A time later than the journal's last event claims the file saw every acknowledged
    update, so all of them would be undone. Only a machine whose clock ran ahead writes
    that (a pipeline gives up before evstore imports its session), so the time is clamped
    to the journal's head and the file is taken as written when the time is unknown:
    against the session's first import, every later journal update kept."""
    if written_at is None:
        return None
    head = store.journal.head()
    last = next(iter(store.journal.read(after=head - 1, until=head)), None)
    if last is None:
        return None
    head_time = parse_time(last.recorded_at)
    if written_at <= head_time:
        return None
    return (f"its timestamp {written_at.isoformat()} is later than the journal's head "
            f"(seq {head}, {last.recorded_at}): the writing machine's clock was ahead, so it "
            "was clamped to the head and every update the journal recorded after the "
            "session's first import is kept")


def _recovery_base(
    store: Store, session: str, written_at: datetime | None
) -> dict[str, Any] | None:
    """The backlog a legacy file was written against (see `recovery_events`)."""
    first = next(iter(store.journal.read(session, types=["BacklogImported"], limit=1)), None)
    if first is None:
        return None
    until = first.seq
    if written_at is not None:
        until = max(until, store.journal.seq_at(written_at))
    tasks = next((p for p in store.projections if p.name == TasksProjection.name), None)
    if tasks is None:
        return None
    state, _, _ = store.runner.fold(tasks, session, until=until)
    doc: dict[str, Any] | None = state.doc
    return doc


def read_legacy(data: bytes, *, source: str) -> tuple[ParsedBacklog, datetime | None] | None:
    """A tasks.json.failed's pending backlog and when it was written (None if unknown);
    None when the bytes are not a recovery file."""
    recovery = read_recovery_file(data, source=source)
    if recovery is None:
        return None
    stamp = orjson.loads(data).get("timestamp")
    try:
        written_at = parse_time(stamp) if isinstance(stamp, str) else None
    except ValueError:
        written_at = None
    return recovery[0], written_at


def read_legacy_file(path: Path) -> tuple[ParsedBacklog, datetime | None]:
    """A tasks.json.failed's pending backlog and when it was written (None if unknown);
    InvalidInputError when it holds no pending updates."""
    legacy = read_legacy(path.read_bytes(), source=str(path))
    if legacy is None:
        raise InvalidInputError("no pendingUpdates in it")
    return legacy


_MISSING = object()


def _field(index: dict[str, Any], item_id: str, key: str) -> Any:
    found = index.get(item_id)
    return found[0].get(key, _MISSING) if found is not None else _MISSING


def _differs(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is not b
    return orjson.dumps(a) != orjson.dumps(b)  # as JSON: Python says 1 == True


def _not_superseded(  # noqa: C901 - one branch per event type
    events: Sequence[Event], base: dict[str, Any], current: dict[str, Any]
) -> tuple[list[Event], int]:
    """`events` (current → the file's backlog) less every change to something the journal
    changed after `base` (the state the file was written against): (kept, dropped)."""
    before, now = BacklogState(base).index, BacklogState(current).index

    def changed(item_id: str, key: str) -> bool:
        return _differs(_field(before, item_id, key), _field(now, item_id, key))

    def subtree_changed(item_id: str) -> bool:
        if item_id not in before:
            return True
        return _differs(before[item_id][0], now[item_id][0]) if item_id in now else True

    kept: list[Event] = []
    dropped = 0
    for event in events:
        if isinstance(event, ItemStatusChanged):
            if changed(event.item_id, "status"):
                dropped += 1
                continue
        elif isinstance(event, ItemUpdated):
            changes = {k: v for k, v in event.changes.items() if not changed(event.item_id, k)}
            removed = [k for k in event.removed if not changed(event.item_id, k)]
            dropped += len(event.changes) - len(changes) + len(event.removed) - len(removed)
            if not changes and not removed:
                continue
            event = ItemUpdated(item_id=event.item_id, changes=changes, removed=removed)  # noqa: PLW2901
        elif isinstance(event, ItemAdded):
            if event.item.get("id") in before:  # the journal removed it since
                dropped += 1
                continue
        elif isinstance(event, ItemRemoved):
            if subtree_changed(event.item_id):  # added or updated by the journal since
                dropped += 1
                continue
        elif isinstance(event, BacklogImported):
            pass  # judged by the caller: only a whole re-import reproduces the file
        kept.append(event)
    return kept, dropped
