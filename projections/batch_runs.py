"""Batch runs (docs/design.md §8): the orchestrator's operations, each one decision and one append.

Every operation reads the session's batch state, decides its events and appends them in
one write transaction (Store.append_decided), so two orchestrators racing on one session
cannot both take the same item or both start a batch: the second decides on the state the
first left.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from eventstore.errors import ConcurrencyError, InvalidInputError
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
from eventstore.logs import get_logger
from eventstore.numbers import MAX_PARALLEL
from eventstore.owner import is_alive, start_ticks, this_host
from eventstore.records import utc_now

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore.store import Store
    from projections.batch import Batch

log = get_logger("evstore.batch")

STALE_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class StartOutcome:
    batch_id: str
    action: str  # started | resumed | restarted (an old batch abandoned, a new one started)
    abandoned: str | None
    remaining: list[str]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NextOutcome:
    item: str | None
    batch_id: str
    remaining: list[str]
    in_flight: list[str]
    # Remaining items that are backlog items waiting on dependencies not yet Complete,
    # each with those dependencies; they stay queued and are handed out once free.
    held: dict[str, list[str]] = field(default_factory=dict)
    reason: str | None = None  # why nothing was handed out



class BatchRun:
    """The batch operations of one session. `alive`, `clock` and `host` are injectable."""

    def __init__(  # noqa: PLR0913 - the seams are keyword-only with defaults
        self,
        store: Store,
        session: str,
        *,
        alive: Callable[[int, int | None], bool] = is_alive,
        clock: Callable[[], datetime] = utc_now,
        host: str | None = None,
        create: bool = False,
        export_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if create and not store.has_session(session):
            # A batch orchestrator (wreckit) keeps no backlog: its session starts here,
            # exporting beside the project unless told otherwise.
            _create_session(store, session, export_dir)
        store.session(session)  # refuses an unknown session before anything else
        self.store = store
        self.session = session
        self._alive = alive
        self._clock = clock
        self._host = host or this_host()

    # --- reading ----------------------------------------------------------------------------

    def batch(self) -> Batch | None:
        batch: Batch | None = self.store.state(self.session, "batch").batch
        return batch

    def _required(self) -> Batch:
        batch = self.batch()
        if batch is None:
            raise InvalidInputError(
                f"session {self.session!r} has no unfinished batch: run `evstore batch start "
                "ITEM...`"
            )
        return batch

    def status(self) -> dict[str, Any] | None:
        batch = self.batch()
        if batch is None:
            return None
        return {
            **batch.progress(),
            "remaining": batch.remaining,
            "in_flight": list(batch.in_flight),
            "held": self._held(batch.remaining),
            "host": batch.host,
            "errors": dict(batch.errors),
        }

    def _held(self, items: Sequence[str]) -> dict[str, list[str]]:
        """The items that are backlog items with dependencies not yet Complete, and those
        dependencies (as the PRP orchestrator's canExecute: a dependency naming no item
        does not hold one back). Items that are not backlog ids are never held, nor items
        the backlog has Complete already: what they waited for no longer matters."""
        backlog = self.store.state(self.session, "tasks")
        if backlog.doc is None:
            return {}
        held: dict[str, list[str]] = {}
        for item_id in items:
            item = backlog.item(item_id)
            deps = item.get("dependencies") if item is not None else None
            if not isinstance(deps, list) or item.get("status") == "Complete":
                continue
            waiting = [d for d in deps if isinstance(d, str)
                       and (dep := backlog.item(d)) is not None and dep.get("status") != "Complete"]
            if waiting:
                held[item_id] = waiting
        return held

    # --- start / resume -----------------------------------------------------------------------

    def start(  # noqa: C901 - the options of `batch start`, each checked in turn
        self,
        items: Sequence[str],
        *,
        parallel: int = 1,
        resume: bool = True,
        retry_failed: bool = False,
        owner_pid: int | None = None,
    ) -> StartOutcome:
        """Start a batch, or resume the unfinished one whose owner died (docs/design.md §8).

        A batch whose owner is alive on this host is refused even past 24 h: a live
        process owns it, and taking it over would run its items twice."""
        queue = _checked_items(items)
        if not 1 <= parallel <= MAX_PARALLEL:
            raise InvalidInputError(
                f"invalid --parallel value {parallel}: expected 1 to {MAX_PARALLEL}"
            )
        owner = owner_pid if owner_pid is not None else os.getpid()
        owner_start = start_ticks(owner)

        def decide() -> tuple[list[Event], StartOutcome]:
            fresh = BatchStarted(
                batch_id=str(uuid.uuid4()), pid=owner, host=self._host, parallel=parallel,
                queued_items=queue, pid_start=owner_start,
            )
            current = self.batch()
            if current is None:
                return [fresh], StartOutcome(fresh.batch_id, "started", None, queue)
            ours = (current.host == self._host and current.pid == owner
                    and current.pid_start in (None, owner_start))
            if ours and resume:  # the owner asking again: nothing changes hands
                return [], StartOutcome(current.batch_id, "resumed", None, current.remaining)
            if (
                not ours
                and current.host == self._host
                and self._alive(current.pid, current.pid_start)
            ):
                raise ConcurrencyError(
                    f"batch {current.batch_id} of session {self.session!r} is run by process "
                    f"{current.pid}, still alive on {current.host}: wait for it or stop it"
                )
            age = self._clock() - parse_time(current.last_activity)
            if age > STALE_AFTER:
                warning = (f"batch {current.batch_id} is stale (last update "
                           f"{current.last_activity}, "
                           f"{age.total_seconds() / 3600:.0f} h ago): abandoned, starting afresh")
                reason = f"stale: no update for {age.total_seconds() / 3600:.0f} h"
                return (
                    [BatchAbandoned(batch_id=current.batch_id, reason=reason), fresh],
                    StartOutcome(fresh.batch_id, "restarted", current.batch_id, queue, [warning]),
                )
            if not resume:
                return ([BatchAbandoned(batch_id=current.batch_id, reason="--no-resume"), fresh],
                        StartOutcome(fresh.batch_id, "restarted", current.batch_id, queue))
            if current.host != self._host:
                raise ConcurrencyError(
                    f"batch {current.batch_id} is owned by process {current.pid} on host "
                    f"{current.host}, which this machine cannot check: pass --no-resume to abandon "
                    "it"
                )
            warnings = []
            if list(queue) != current.queued:
                warnings.append(f"resuming batch {current.batch_id} with its own queue of "
                                f"{len(current.queued)} items, not the {len(queue)} given")
            resumed = BatchResumed(batch_id=current.batch_id, pid=owner, host=self._host,
                                   pid_start=owner_start, retry_failed=retry_failed)
            remaining = [i for i in current.queued
                         if i not in {*current.completed, *current.skipped}
                         and (retry_failed or i not in current.failed)]
            return [resumed], StartOutcome(current.batch_id, "resumed", None, remaining, warnings)

        outcome: StartOutcome
        outcome, _ = self.store.append_decided(self.session, decide)
        for warning in outcome.warnings:
            log.warning("batch_start_warning", session=self.session, message=warning)
        log.info("batch_started", session=self.session, batch_id=outcome.batch_id,
                 action=outcome.action, remaining=len(outcome.remaining))
        return outcome

    # --- the loop -------------------------------------------------------------------------------

    def next(self) -> NextOutcome:
        """Hand out the first remaining item and mark it in flight; None when the queue is
        empty or `parallel` items are already in flight."""

        def decide() -> tuple[list[Event], NextOutcome]:
            batch = self._required()
            remaining = batch.remaining
            if not remaining:
                return [], NextOutcome(None, batch.batch_id, remaining, list(batch.in_flight),
                                       reason="queue empty")
            held = self._held(remaining)
            if len(batch.in_flight) >= batch.parallel:
                return [], NextOutcome(None, batch.batch_id, remaining, list(batch.in_flight), held,
                                       reason=f"{batch.parallel} item(s) in flight, the --parallel "
                                              "limit")
            runnable = [item for item in remaining if item not in held]
            if not runnable:
                return [], NextOutcome(None, batch.batch_id, remaining, list(batch.in_flight), held,
                                       reason="every remaining item waits on dependencies")
            item = runnable[0]
            return ([BatchItemStarted(batch_id=batch.batch_id, item=item)],
                    NextOutcome(item, batch.batch_id, [i for i in remaining if i != item],
                                [*batch.in_flight, item], held))

        outcome: NextOutcome
        outcome, _ = self.store.append_decided(self.session, decide)
        return outcome

    def done(self, item: str) -> None:
        self._resolve(
            item, lambda b: BatchItemCompleted(batch_id=b.batch_id, item=item), in_flight=True
        )

    def fail(self, item: str, error: str) -> None:
        if not error.strip():
            raise InvalidInputError("batch fail needs --error MSG: say what went wrong")
        self._resolve(
            item,
            lambda b: BatchItemFailed(batch_id=b.batch_id, item=item, error=error),
            in_flight=True,
        )

    def skip(self, item: str, reason: str) -> None:
        if not reason.strip():
            raise InvalidInputError("batch skip needs --reason MSG")
        self._resolve(
            item,
            lambda b: BatchItemSkipped(batch_id=b.batch_id, item=item, reason=reason),
            in_flight=False,
        )

    def heal(self) -> int:
        def decide() -> tuple[list[Event], int]:
            batch = self._required()
            return [BatchHealingAttempted(batch_id=batch.batch_id)], batch.healing_attempts + 1

        attempts: int
        attempts, _ = self.store.append_decided(self.session, decide)
        return attempts

    def finish(self) -> str:
        def decide() -> tuple[list[Event], str]:
            batch = self._required()
            return [BatchFinished(batch_id=batch.batch_id)], batch.batch_id

        batch_id: str
        batch_id, _ = self.store.append_decided(self.session, decide)
        return batch_id

    def _resolve(self, item: str, make: Callable[[Batch], Event], *, in_flight: bool) -> None:
        def decide() -> tuple[list[Event], None]:
            batch = self._required()
            if in_flight and item not in batch.in_flight:
                shown = ", ".join(batch.in_flight) or "none"
                raise InvalidInputError(
                    f"item {item!r} is not in flight in batch {batch.batch_id} (in flight: {shown})"
                )
            if not in_flight and (
                item not in batch.queued or item in {*batch.completed, *batch.skipped}
            ):
                raise InvalidInputError(f"item {item!r} is not waiting in batch {batch.batch_id}")
            return [make(batch)], None

        self.store.append_decided(self.session, decide)


def _create_session(store: Store, session: str, export_dir: str | os.PathLike[str] | None) -> None:
    try:
        store.create_session(session, export_dir if export_dir is not None else store.root)
    except ConcurrencyError:
        # Another orchestrator created it between our look and our append: theirs stands.
        if not store.has_session(session):
            raise


def _first_repeated(items: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _checked_items(items: Sequence[str]) -> list[str]:
    queue = [item.strip() for item in items]
    if not queue:
        raise InvalidInputError("batch start needs at least one ITEM")
    if any(not item for item in queue):
        raise InvalidInputError("batch start: an ITEM is empty")
    twice = _first_repeated(queue)
    if twice is not None:
        raise InvalidInputError(f"batch start: item {twice!r} is given twice")
    return queue


def legacy_events(progress: Any, *, source: str, host: str, pid_start: int | None) -> list[Event]:
    """A legacy batch-progress.json (schema v1, healing fields optional) as events, so a
    run begun before evstore continues under it.

    Its `current_item` is not put in flight: the process that had it is gone (or about
    to hand over), and an item current when its owner died is run again. `pid_start` is
    the file owner's start time if it is alive now, else -1, which no process matches:
    a legacy file has no start time, and a dead owner's pid must not be taken for a
    later process that reuses it."""
    if not isinstance(progress, dict) or progress.get("schema_version") != 1:
        raise InvalidInputError(f"{source}: not a batch-progress.json of schema_version 1")
    try:
        batch_id = _typed(progress, "session_id", str, source)
        queue = _typed(progress, "queued_items", list, source)
        pid = _typed(progress, "pid", int, source)
        parallel = _typed(progress, "parallel", int, source)
        lists = {
            name: _typed(progress, name, list, source)
            for name in ("completed", "failed", "skipped")
        }
        started_at, updated_at, last_healing_at = (
            _time(progress, name, source)
            for name in ("started_at", "updated_at", "last_healing_at")
        )
        current = progress.get("current_item")
        healing = progress.get("healing_attempts", 0)
    except KeyError as exc:
        raise InvalidInputError(f"{source}: missing field {exc.args[0]!r}") from None
    strings = [*queue, *lists["completed"], *lists["failed"], *lists["skipped"]]
    if not all(isinstance(item, str) and item for item in strings):
        raise InvalidInputError(f"{source}: item ids must be non-empty strings")
    twice = _first_repeated(queue)
    if twice is not None:
        # `batch next` would hand the item out twice, as `batch start a a` refuses to.
        raise InvalidInputError(
            f"{source}: queued_items lists {twice!r} twice: list each item once"
        )
    if not 1 <= parallel <= MAX_PARALLEL or not isinstance(healing, int) or healing < 0:
        raise InvalidInputError(
            f"{source}: parallel must be 1 to {MAX_PARALLEL} and healing_attempts a count"
        )
    if current is not None and not isinstance(current, str):
        raise InvalidInputError(f"{source}: current_item must be a string or null")
    # The file's times travel with the events, so the batch exported from the journal
    # says when it was last updated and healed as the file did, not when it was imported.
    events: list[Event] = [
        BatchStarted(batch_id=batch_id, pid=pid, host=host, parallel=parallel, queued_items=queue,
                     pid_start=pid_start, started_at=started_at, updated_at=updated_at,
                     healing_attempts=healing, last_healing_at=last_healing_at)
    ]
    events += [
        BatchItemCompleted(batch_id=batch_id, item=i, at=updated_at) for i in lists["completed"]
    ]
    events += [BatchItemFailed(batch_id=batch_id, item=i, error="failed before import from "
                                                                f"{source}",
                               at=updated_at) for i in lists["failed"]]
    events += [BatchItemSkipped(batch_id=batch_id, item=i, reason="skipped before import from "
                                                                  f"{source}",
                                at=updated_at) for i in lists["skipped"]]
    return events


def _time(progress: dict[str, Any], name: str, source: str) -> str | None:
    """An optional ISO 8601 time of a legacy file, kept as written; anything else is refused."""
    value = progress.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"{source}: {name} must be an ISO 8601 time or null")
    try:
        parse_time(value)
    except ValueError:
        raise InvalidInputError(
            f"{source}: {name} must be an ISO 8601 time, got {value!r}"
        ) from None
    return value


def _typed(progress: dict[str, Any], name: str, kind: type, source: str) -> Any:
    value = progress[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidInputError(f"{source}: {name} must be a {kind.__name__}, got "
                                f"{type(value).__name__}")
    return value


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
