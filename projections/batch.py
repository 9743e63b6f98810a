"""batch-progress.json: the batch orchestrator's progress file, schema v1 (docs/design.md §5, §8).

Present while a batch is unfinished, gone (removed atomically) once it finishes or is
abandoned. `queued_items` keeps the orchestrator's meaning, the whole queue in run order;
what remains is the queue less completed, failed, skipped and in-flight items.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from eventstore.errors import InvalidInputError
from eventstore.events import (
    BatchAbandoned,
    BatchFinished,
    BatchHealingAttempted,
    BatchItemCompleted,
    BatchItemFailed,
    BatchItemSkipped,
    BatchItemStarted,
    BatchResumed,
    BatchStarted,
    Event,
)
from eventstore.jsonfmt import dumps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.records import StoredEvent

BATCH_EVENTS = frozenset(
    {
        "BatchStarted", "BatchResumed", "BatchItemStarted", "BatchItemCompleted",
        "BatchItemFailed", "BatchItemSkipped", "BatchHealingAttempted", "BatchFinished",
        "BatchAbandoned",
    }
)


def js_time(recorded_at: str) -> str:
    """Journal time (microseconds) as JavaScript's toISOString writes it (milliseconds)."""
    return recorded_at[:23] + "Z" if len(recorded_at) > 24 else recorded_at


@dataclass
class Batch:
    batch_id: str
    pid: int
    host: str
    pid_start: int | None
    started_at: str
    updated_at: str
    parallel: int
    queued: list[str]
    in_flight: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    healing_attempts: int = 0
    last_healing_at: str | None = None
    # The journal time of its latest event, never exported. Staleness counts from it: a
    # batch imported from a legacy file keeps the file's updated_at, but it was active
    # when it was imported.
    active_at: str = ""

    @property
    def last_activity(self) -> str:
        return self.active_at or self.updated_at  # states saved before active_at existed

    @property
    def remaining(self) -> list[str]:
        done = {*self.completed, *self.failed, *self.skipped, *self.in_flight}
        return [item for item in self.queued if item not in done]

    def progress(self) -> dict[str, Any]:
        """The schema v1 document, every field, in the orchestrator's order."""
        return {
            "schema_version": 1,
            "session_id": self.batch_id,
            "pid": self.pid,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "parallel": self.parallel,
            "queued_items": list(self.queued),
            "current_item": self.in_flight[0] if self.in_flight else None,
            "completed": list(self.completed),
            "failed": list(self.failed),
            "skipped": list(self.skipped),
            "healing_attempts": self.healing_attempts,
            "last_healing_at": self.last_healing_at,
        }


class BatchState:
    __slots__ = ("batch",)

    def __init__(self, batch: Batch | None = None) -> None:
        self.batch = batch


class BatchProgressProjection:
    name = "batch"
    file_name = "batch-progress.json"

    def initial(self) -> BatchState:
        return BatchState()

    def fold(self, state: BatchState, event: StoredEvent) -> BatchState:
        if event.type in BATCH_EVENTS:
            _fold(state, event.type, event.data, js_time(event.recorded_at))
        return state

    def render(self, state: BatchState) -> bytes | None:
        # The orchestrator writes JSON.stringify(progress, null, 2) plus a newline (as the
        # real files end); so does this.
        return None if state.batch is None else dumps(state.batch.progress()) + b"\n"

    def dump_state(self, state: BatchState) -> bytes:
        return orjson.dumps(asdict(state.batch) if state.batch else None)

    def load_state(self, data: bytes) -> BatchState:
        raw = orjson.loads(data)
        return BatchState(Batch(**raw) if raw else None)

    # Lookups (eventstore/projection.py LookupProjection): a batch event needs the batch,
    # which is small; every other event needs nothing of this projection.
    keeps_entries = False

    def lookup_keys(self, event: Event) -> Sequence[str] | None:
        return None if event.type in BATCH_EVENTS else ()

    def validate_lookup(self, entries: dict[str, Any], event: Event, stream: str) -> None:
        pass  # only events that need nothing of this projection come here

    def touched_keys(self, event: Event) -> Sequence[str] | None:  # noqa: ARG002 - the protocol's
        return ()

    def lookup_entries(self, state: BatchState, keys: Sequence[str] | None) -> dict[str, Any]:  # noqa: ARG002 - the protocol's
        return {}

    def validate(self, state: BatchState, event: Event, stream: str) -> None:
        if not isinstance(event, (BatchStarted, BatchResumed, BatchItemStarted, BatchItemCompleted,
                                  BatchItemFailed, BatchItemSkipped, BatchHealingAttempted,
                                  BatchFinished, BatchAbandoned)):
            return
        batch = state.batch
        if isinstance(event, BatchStarted):
            if batch is not None:
                raise InvalidInputError(
                    f"session {stream!r} already has an unfinished batch {batch.batch_id}: "
                    "finish or abandon it first"
                )
            return
        if batch is None:
            raise InvalidInputError(f"session {stream!r} has no unfinished batch: run `evstore "
                                    "batch start`")
        if event.batch_id != batch.batch_id:
            raise InvalidInputError(f"batch {event.batch_id!r} is not the unfinished batch "
                                    f"{batch.batch_id} of session {stream!r}")
        if isinstance(event, BatchItemStarted):
            if event.item not in batch.remaining:
                raise InvalidInputError(f"item {event.item!r} is not waiting in batch "
                                        f"{batch.batch_id}")
            if len(batch.in_flight) >= batch.parallel:
                raise InvalidInputError(f"batch {batch.batch_id} already has {batch.parallel} "
                                        "item(s) in flight")
        # Whether an item may be marked done, failed or skipped is the workflow's call
        # (projections.batch_runs): an imported legacy batch records outcomes of items it
        # never saw start.


def batch_progress_defect(data: bytes) -> str | None:
    """Why `data` is not a schema v1 batch-progress.json, or None when it is one: `doctor`
    sets aside a file the orchestrator could not read back."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(doc, dict):
        return f"not a schema v1 batch progress document (a JSON {type(doc).__name__})"
    version = doc.get("schema_version")
    if version != 1 or isinstance(version, bool):
        return f"not a schema v1 batch progress document (schema_version {version!r})"
    if not isinstance(doc.get("session_id"), str) or not isinstance(doc.get("queued_items"), list):
        return "not a schema v1 batch progress document (session_id or queued_items missing)"
    for name in ("completed", "failed", "skipped"):
        if name in doc and not isinstance(doc[name], list):
            return f"not a schema v1 batch progress document ({name} is not a list)"
    return None


def _fold(state: BatchState, kind: str, data: dict[str, Any], at: str) -> None:  # noqa: C901, PLR0912 - one branch per event type
    if kind == "BatchStarted":
        state.batch = Batch(
            batch_id=data["batch_id"], pid=data["pid"], host=data["host"],
            pid_start=data.get("pid_start"), started_at=data.get("started_at") or at,
            updated_at=data.get("updated_at") or at, parallel=data["parallel"],
            queued=list(data["queued_items"]), healing_attempts=data.get("healing_attempts", 0),
            last_healing_at=data.get("last_healing_at"), active_at=at,
        )
        return
    batch = state.batch
    if batch is None or data.get("batch_id") != batch.batch_id:
        return
    batch.updated_at = data.get("at") or at  # an imported outcome keeps the file's time
    batch.active_at = at
    if kind == "BatchResumed":
        batch.pid, batch.host, batch.pid_start = data["pid"], data["host"], data.get("pid_start")
        batch.in_flight.clear()  # the dead owner's items in flight are run again
        if data.get("retry_failed"):
            batch.failed.clear()
    elif kind == "BatchItemStarted":
        item = data["item"]  # every BatchItem* event has one (eventstore.events)
        if item not in batch.in_flight:
            batch.in_flight.append(item)
    elif kind in ("BatchItemCompleted", "BatchItemFailed", "BatchItemSkipped"):
        item = data["item"]
        if item in batch.in_flight:
            batch.in_flight.remove(item)
        for outcome in (batch.completed, batch.failed, batch.skipped):
            if item in outcome:
                outcome.remove(item)
        target = {"BatchItemCompleted": batch.completed, "BatchItemFailed": batch.failed,
                  "BatchItemSkipped": batch.skipped}[kind]
        target.append(item)
        if kind == "BatchItemFailed":
            batch.errors[item] = data["error"]
    elif kind == "BatchHealingAttempted":
        batch.healing_attempts += 1
        batch.last_healing_at = at
    elif kind in ("BatchFinished", "BatchAbandoned"):
        state.batch = None
