"""An item's story, from the journal: each status it held, for how long, who set it, and
the failures, fix tasks and batch runs that touched it. Pure: events in, entries out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from eventstore.journal import StoredEvent
from projections.backlog import BacklogState
from projections.batch_runs import parse_time

_BATCH_KINDS = {
    "BatchItemStarted": "started",
    "BatchItemCompleted": "completed",
    "BatchItemFailed": "failed",
    "BatchItemSkipped": "skipped",
}


def item_history(events: Iterable[StoredEvent], item_id: str, *, now: datetime) -> list[dict[str, Any]]:
    """Entries in journal order. Status entries carry `held_s`: how long the item stayed in
    that status (until the next change, or until `now` for the current one)."""
    entries: list[dict[str, Any]] = []
    for event in events:
        entry = _entry(event, item_id)
        if entry is not None:
            entry.update(seq=event.seq, at=event.recorded_at, by=_by(event))
            entries.append(entry)
    statuses = [e for e in entries if e["kind"] in ("imported", "added", "status")]
    for index, current in enumerate(statuses):
        following = statuses[index + 1] if index + 1 < len(statuses) else None
        end = parse_time(following["at"]) if following else now
        current["held_s"] = round((end - parse_time(current["at"])).total_seconds(), 3)
    return entries


def _entry(event: StoredEvent, item_id: str) -> dict[str, Any] | None:  # noqa: PLR0911 - one answer per event type
    data, kind = event.data, event.type
    if kind == "BacklogImported":
        item = BacklogState(data["backlog"]).item(item_id)
        return None if item is None else {"kind": "imported", "status": item.get("status"), "source": data.get("source")}
    if kind == "ItemAdded" and data["item"].get("id") == item_id:
        return {"kind": "added", "status": data["item"].get("status"), "parent_id": data.get("parent_id")}
    if kind == "ItemStatusChanged" and data["item_id"] == item_id:
        return {"kind": "status", "status": data["status"], "reason": data.get("reason")}
    if kind == "ItemUpdated" and data["item_id"] == item_id and "status" in data.get("changes", {}):
        return {"kind": "status", "status": data["changes"]["status"], "reason": "updated"}
    if kind == "ItemRemoved" and data["item_id"] == item_id:
        return {"kind": "removed"}
    if kind == "TaskFailed" and data["item_id"] == item_id:
        return {"kind": "failed", "error": data["error"]}
    if kind == "FixTaskCreated" and item_id in (data["original_id"], data["fix_id"]):
        return {"kind": "fix", "fix_id": data["fix_id"], "original_id": data["original_id"], "attempt": data["attempt"]}
    if kind == "FixLimitReached" and data["original_id"] == item_id:
        return {"kind": "fix_limit", "attempts": data["attempts"]}
    if kind in _BATCH_KINDS and data.get("item") == item_id:
        return {"kind": "batch", "batch_id": data["batch_id"], "outcome": _BATCH_KINDS[kind],
                "detail": data.get("error") or data.get("reason")}
    return None


def _by(event: StoredEvent) -> dict[str, Any]:
    meta = event.meta
    return {key: meta.get(key) for key in ("tool", "user", "host", "pid") if key in meta}
