"""What `evstore report` shows of one session, folded in a single pass over its events:
the backlog at the end, how many items held each status after every event, each item's
timeline, the batch runs and the fix-task history. Pure: events in, plain data out; the
HTML is the CLI's business."""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from projections.backlog import BacklogState, TasksProjection
from projections.batch_runs import parse_time
from projections.fixes import FixState, fold_fixes
from projections.history import STATUS_KINDS, add_held_times, author, entries_of

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from eventstore.records import StoredEvent

# The pipeline's statuses, roughly from done to not started; others follow by name.
STATUS_ORDER = (
    "Complete",
    "Implementing",
    "Researching",
    "Retrying",
    "Ready",
    "Planned",
    "Failed",
    "Obsolete",
)
# Events that can change more than one item's status, after which counts are taken afresh.
_STRUCTURAL = frozenset({"BacklogImported", "ItemAdded", "ItemRemoved"})
# A backlog imported with more items than this is a "big" one: its import is kept as one
# shared entry rather than one per item, and the page loads its tree on demand.
BIG_BACKLOG = 2000
# An item's latest outcome in its run.
_OUTCOMES = {
    "BatchItemCompleted": "completed",
    "BatchItemFailed": "failed",
    "BatchItemSkipped": "skipped",
}


def status_key(status: str) -> tuple[int, str]:
    return (
        (STATUS_ORDER.index(status), "") if status in STATUS_ORDER else (len(STATUS_ORDER), status)
    )


def session_report(  # noqa: PLR0913 - keyword-only knobs with defaults
    session: str,
    events: Iterable[StoredEvent],
    *,
    now: datetime,
    max_points: int = 2000,
    max_entries: int = 25,
    big: int = BIG_BACKLOG,
) -> dict[str, Any]:
    """The report data of one session. The chart holds at most `max_points` points (evenly
    sampled, the last one always kept) and each timeline its first entry and its last
    `max_entries - 1`, so the page stays small for any journal.

    When the first import brings more than `big` items, `timelines.imported` holds that
    import's entry once (`kind`, `source`, `seq`, `at`, `by`, `held_s` until `now`) and
    `timelines.items` only the items something happened to since: every other item's
    timeline is that entry with its current status. `big` is then true."""
    fold = _ReportFold(max_entries, big)
    status_changed, apply = fold.status_changed, fold.apply
    for event in events:
        if event.type == "ItemStatusChanged":
            status_changed(event)
        else:
            apply(event)
    return {
        "session": session,
        "events": fold.applied,
        "first_seq": fold.first_seq,
        "last_seq": fold.last_seq,
        "first_at": fold.first_at,
        "last_at": fold.last_at,
        "counts": _ordered(fold.counts),
        "backlog": fold.tasks.doc["backlog"] if fold.tasks.doc else [],
        "chart": fold.chart(max_points, end=(fold.last_seq, fold.last_at)),
        "timelines": _compact(
            {item: timeline.result(now, fold.authors) for item, timeline in fold.timelines.items()},
            imported=fold.shared_import(now),
        ),
        "big": fold.imported is not None,
        "batches": [
            {**run, "counts": dict(Counter(run["outcomes"].values()))}
            for run in fold.batches.values()
        ],
        "fixes": _fix_rows(fold.fixes),
    }


class _Timeline:
    """One item's first entry and its latest ones, bounded. Entries of status changes stay
    events until the end, when only the few kept are turned into entries."""

    __slots__ = ("first", "first_ends", "recent", "total")

    def __init__(self, first: dict[str, Any], limit: int) -> None:
        self.first = first
        self.first_ends: str | None = None  # when the first status was replaced
        self.recent: deque[dict[str, Any] | StoredEvent] = deque(maxlen=limit - 1)
        self.total = 1

    def add(self, entry: dict[str, Any] | StoredEvent, at: str, *, is_status: bool) -> None:
        if is_status and self.first_ends is None:
            self.first_ends = at
        self.recent.append(entry)
        self.total += 1

    def result(self, now: datetime, authors: dict[Any, dict[str, Any]]) -> dict[str, Any]:
        recent = [
            e if isinstance(e, dict) else next(entries_of(e, authors=authors))[1]
            for e in self.recent
        ]
        omitted = self.total - 1 - len(recent)
        if not omitted:
            entries = [self.first, *recent]
            add_held_times(entries, now=now)
            return {"entries": entries, "omitted": 0}
        if self.first["kind"] in STATUS_KINDS:
            ends = parse_time(self.first_ends) if self.first_ends else now
            self.first["held_s"] = round((ends - parse_time(self.first["at"])).total_seconds(), 3)
        add_held_times(recent, now=now)
        return {"entries": [self.first, *recent], "omitted": omitted}


class _ReportFold:
    def __init__(self, max_entries: int, big: int) -> None:
        self._max_entries = max(2, max_entries)
        self._big = big
        # A big first import, kept once: its entry, and each item's status then (an item
        # leaves this map when something happens to it and it gets a timeline of its own).
        self.imported: dict[str, Any] | None = None
        self._at_import: dict[str, Any] = {}
        self._projection = TasksProjection()
        self.tasks: BacklogState = self._projection.initial()
        self.fixes = FixState()
        self.counts: Counter[str] = Counter()
        self.timelines: dict[str, _Timeline] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.applied = 0
        self.first_seq = self.last_seq = 0
        self.first_at: str | None = None
        self.last_at: str | None = None
        self.authors: dict[Any, dict[str, Any]] = {}  # `by` per stored meta
        # The chart as changes: (seq, at, status left, status entered) for one item, or
        # (seq, at, None, all counts) after a structural event. Counts are rebuilt only
        # at the points the chart keeps.
        self._changes: list[tuple[int, str, str | None, Any]] = []

    def status_changed(self, event: StoredEvent) -> None:
        """apply() for the event nearly every journal is made of, without its general
        steps: a third of the time of `report` on 100,000 events."""
        data = event.data
        item_id, status = data["item_id"], data["status"]
        found = self.tasks.index.get(item_id)
        if found is not None:
            item = found[0]
            previous = str(item.get("status"))
            item["status"] = status
            if previous != status:
                self._moved(event, previous, status)
        timeline = self.timelines.get(item_id)
        if timeline is None:
            self._add_entry(item_id, next(entries_of(event, authors=self.authors))[1])
        else:
            timeline.add(event, event.recorded_at, is_status=True)
        if self.fixes.fix_map:
            fold_fixes(self.fixes, event)
        self._seen(event)

    def apply(self, event: StoredEvent) -> None:
        kind, data = event.type, event.data
        previous = self._status_before(kind, data)
        self.tasks = self._projection.fold(self.tasks, event)
        self.fixes = fold_fixes(self.fixes, event)
        self._count(event, previous)
        if kind == "BacklogImported" and not self.timelines and len(self.tasks.index) > self._big:
            # One entry for the whole import instead of one per item: on 100,000 items
            # these entries were most of the fold's time and of the page.
            self.imported = {"kind": "imported", "source": data.get("source"), "seq": event.seq,
                             "at": event.recorded_at, "by": author(event, self.authors)}
            self._at_import = {i: found[0].get("status") for i, found in self.tasks.index.items()}
        else:
            for item_id, entry in entries_of(event, authors=self.authors):
                self._add_entry(item_id, entry)
        if kind.startswith("Batch"):
            self._batch(kind, data, event.recorded_at)
        self._seen(event)

    def _add_entry(self, item_id: str, entry: dict[str, Any]) -> None:
        timeline = self.timelines.get(item_id)
        if timeline is None and self.imported is not None and item_id in self._at_import:
            first = {
                "kind": "imported",
                "status": self._at_import.pop(item_id),
                "source": self.imported["source"],
                "seq": self.imported["seq"],
                "at": self.imported["at"],
                "by": self.imported["by"],
            }
            timeline = self.timelines[item_id] = _Timeline(first, self._max_entries)
        if timeline is None:
            self.timelines[item_id] = _Timeline(entry, self._max_entries)
        else:
            timeline.add(entry, entry["at"], is_status=entry["kind"] in STATUS_KINDS)

    def shared_import(self, now: datetime) -> dict[str, Any] | None:
        """The big import's entry as every untouched item's timeline holds it."""
        if self.imported is None:
            return None
        held = round((now - parse_time(self.imported["at"])).total_seconds(), 3)
        return {**self.imported, "held_s": held}

    def _seen(self, event: StoredEvent) -> None:
        if not self.applied:
            self.first_seq, self.first_at = event.seq, event.recorded_at
        self.applied += 1
        self.last_seq, self.last_at = event.seq, event.recorded_at

    def _status_before(self, kind: str, data: dict[str, Any]) -> str | None:
        if kind == "ItemUpdated":  # ItemStatusChanged takes status_changed()
            found = self.tasks.index.get(data["item_id"])
            if found is not None:
                return str(found[0].get("status"))
        return None

    def _count(self, event: StoredEvent, previous: str | None) -> None:
        if event.type in _STRUCTURAL:
            fresh = Counter(str(item.get("status")) for item, _, _ in self.tasks.index.values())
            if fresh != self.counts:
                self.counts = fresh
                self._changes.append((event.seq, event.recorded_at, None, Counter(fresh)))
            return
        if previous is None:
            return
        current = str(self.tasks.index[event.data["item_id"]][0].get("status"))
        if current != previous:
            self._moved(event, previous, current)

    def _moved(self, event: StoredEvent, previous: str, current: str) -> None:
        """One item left `previous` for `current`."""
        counts = self.counts
        counts[previous] -= 1
        if not counts[previous]:
            del counts[previous]
        counts[current] += 1
        self._changes.append((event.seq, event.recorded_at, previous, current))

    def chart(self, max_points: int, *, end: tuple[int, str | None]) -> dict[str, Any]:
        """Items per status after each change, at the sampled points, and once more at
        `end` (the last event) so the lines run to the end of the journal."""
        picks = set(_sample(len(self._changes), max_points))
        counts: Counter[str] = Counter()
        seqs: list[int] = []
        ats: list[str | None] = []
        snapshots: list[dict[str, int]] = []
        for index, (seq, at, left, entered) in enumerate(self._changes):
            if left is None:
                counts = Counter(entered)
            else:
                counts[left] -= 1
                counts[entered] += 1
            if index in picks:
                seqs.append(seq)
                ats.append(at)
                snapshots.append(dict(counts))
        if seqs and end[0] > seqs[-1]:
            seqs.append(end[0])
            ats.append(end[1])
            snapshots.append(snapshots[-1])
        statuses = sorted(
            {status for snapshot in snapshots for status, n in snapshot.items() if n},
            key=status_key,
        )
        return {
            "seq": seqs,
            "at": ats,
            "series": {
                status: [snapshot.get(status, 0) for snapshot in snapshots] for status in statuses
            },
            "sampled": len(picks) < len(self._changes),
            "changes": len(self._changes),
        }

    def _batch(self, kind: str, data: dict[str, Any], at: str) -> None:
        batch_id = data["batch_id"]  # every Batch* event has one (eventstore.events)
        if kind == "BatchStarted":
            self.batches[batch_id] = {
                "batch_id": batch_id, "started_at": data.get("started_at") or at, "updated_at": at,
                "host": data["host"], "pid": data["pid"], "parallel": data["parallel"],
                "queued": len(data["queued_items"]), "outcomes": {}, "errors": {},
                "resumed": 0, "healing_attempts": 0, "state": "running",
            }
            return
        run = self.batches.get(batch_id)
        if run is None:
            return
        run["updated_at"] = at
        if kind == "BatchItemStarted":
            run["outcomes"][data["item"]] = "in flight"
        elif kind in _OUTCOMES:
            run["outcomes"][data["item"]] = _OUTCOMES[kind]
            if kind == "BatchItemFailed":
                run["errors"][data["item"]] = data["error"]
        elif kind == "BatchResumed":
            run["resumed"] += 1
        elif kind == "BatchHealingAttempted":
            run["healing_attempts"] += 1
        elif kind == "BatchFinished":
            run["state"] = "finished"
        elif kind == "BatchAbandoned":
            run["state"] = "abandoned"


def _sample(length: int, limit: int) -> list[int]:
    """Indices of at most `limit` evenly spread points, always ending with the last."""
    if length <= limit:
        return list(range(length))
    step = length / limit
    return [min(length - 1, int((k + 1) * step) - 1) for k in range(limit)]


def _compact(
    timelines: dict[str, dict[str, Any]], *, imported: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Timelines without empty fields, and each author written once (`by` becomes an index
    into `authors`): the same writer on every entry otherwise doubles the page."""
    authors: dict[tuple[tuple[str, Any], ...], int] = {}
    if imported is not None:
        imported = {k: v for k, v in imported.items() if v is not None}
        imported["by"] = authors.setdefault(tuple(imported["by"].items()), len(authors))
    for timeline in timelines.values():
        kept = []
        for entry in timeline["entries"]:
            key = tuple(entry.pop("by").items())
            entry["by"] = authors.setdefault(key, len(authors))
            kept.append({k: v for k, v in entry.items() if v is not None})
        timeline["entries"] = kept
    compacted: dict[str, Any] = {"authors": [dict(key) for key in authors], "items": timelines}
    if imported is not None:
        compacted["imported"] = imported
    return compacted


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return {status: counts[status] for status in sorted(counts, key=status_key)}


def _fix_rows(state: FixState) -> list[dict[str, Any]]:
    return [
        {"original_id": original, "attempts": entry["attempts"], "fix_ids": entry["fixTaskIds"],
         "last_error": entry["lastError"], "verdict": state.verdict(original)}
        for original, entry in state.fix_map.items()
    ]
