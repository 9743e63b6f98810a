"""An item's story, from the journal: each status it held, for how long, who set it, and
the failures, fix tasks and batch runs that touched it. Pure: events in, entries out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.backlog import BacklogState
from projections.batch_runs import parse_time

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

    from eventstore.records import StoredEvent

_BATCH_KINDS = {
    "BatchItemStarted": "started",
    "BatchItemCompleted": "completed",
    "BatchItemFailed": "failed",
    "BatchItemSkipped": "skipped",
}
STATUS_KINDS = frozenset({"imported", "added", "status"})


def item_history(
    events: Iterable[StoredEvent], item_id: str, *, now: datetime
) -> list[dict[str, Any]]:
    """Entries in journal order. Status entries carry `held_s`: how long the item stayed in
    that status (until the next change, or until `now` for the current one)."""
    entries = [
        entry
        for event in events
        for touched, entry in entries_of(event, only=item_id)
        if touched == item_id
    ]
    add_held_times(entries, now=now)
    return entries


def entries_of(
    event: StoredEvent, *, only: str | None = None, authors: dict[Any, dict[str, Any]] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(item id, entry) for every item `event` touches; `only` narrows an import's walk to
    one item, so following a single item does not build an entry for every item imported.
    `authors` caches `by` per stored meta: one writer's thousands of events share one."""
    for item_id, entry in _touched(event, only):
        entry.update(seq=event.seq, at=event.recorded_at, by=_by(event, authors))
        yield item_id, entry


def add_held_times(entries: list[dict[str, Any]], *, now: datetime) -> None:
    """Set `held_s` on each status entry of one item's entries (journal order)."""
    statuses = [e for e in entries if e["kind"] in STATUS_KINDS]
    for index, current in enumerate(statuses):
        following = statuses[index + 1] if index + 1 < len(statuses) else None
        end = parse_time(following["at"]) if following else now
        current["held_s"] = round((end - parse_time(current["at"])).total_seconds(), 3)


def _touched(  # noqa: C901, PLR0912 - one answer per event type
    event: StoredEvent, only: str | None
) -> Iterator[tuple[str, dict[str, Any]]]:
    data, kind = event.data, event.type
    if kind == "ItemStatusChanged":
        yield (
            data["item_id"],
            {"kind": "status", "status": data["status"], "reason": data.get("reason")},
        )
    elif kind == "BacklogImported":
        index = BacklogState(data["backlog"]).index
        if only is None:
            items = [found[0] for found in index.values()]
        else:
            items = [index[only][0]] if only in index else []
        for item in items:
            yield (
                item["id"],
                {"kind": "imported", "status": item.get("status"), "source": data.get("source")},
            )
    elif kind == "ItemAdded" and isinstance(data["item"].get("id"), str):
        yield (
            data["item"]["id"],
            {
                "kind": "added",
                "status": data["item"].get("status"),
                "parent_id": data.get("parent_id"),
            },
        )
    elif kind == "ItemUpdated" and "status" in data.get("changes", {}):
        yield (
            data["item_id"],
            {"kind": "status", "status": data["changes"]["status"], "reason": "updated"},
        )
    elif kind == "ItemRemoved":
        yield data["item_id"], {"kind": "removed"}
    elif kind == "TaskFailed":
        yield data["item_id"], {"kind": "failed", "error": data["error"]}
    elif kind == "FixTaskCreated":
        entry = {
            "fix_id": data["fix_id"],
            "original_id": data["original_id"],
            "attempt": data["attempt"],
        }
        for item_id in dict.fromkeys((data["original_id"], data["fix_id"])):
            yield item_id, {"kind": "fix", **entry}
    elif kind == "FixLimitReached":
        yield data["original_id"], {"kind": "fix_limit", "attempts": data["attempts"]}
    elif kind in _BATCH_KINDS and isinstance(data.get("item"), str):
        yield (
            data["item"],
            {
                "kind": "batch",
                "batch_id": data["batch_id"],
                "outcome": _BATCH_KINDS[kind],
                "detail": data.get("error") or data.get("reason"),
            },
        )


def author(event: StoredEvent, authors: dict[Any, dict[str, Any]] | None = None) -> dict[str, Any]:
    """`by` of an entry made from `event` (cached per stored meta in `authors`)."""
    return _by(event, authors)


def _by(event: StoredEvent, authors: dict[Any, dict[str, Any]] | None) -> dict[str, Any]:
    key = event.meta_key
    if authors is None or key is None:
        return _author(event.meta)
    by = authors.get(key)
    if by is None:
        by = authors[key] = _author(event.meta)
    return by


def _author(meta: dict[str, Any]) -> dict[str, Any]:
    # `owner`: who claimed or released work (`evstore next --claim --owner`); `client`: the
    # agent's MCP client (`evstore mcp`); both beside the process that wrote the event.
    by: dict[str, Any] = {
        name: meta.get(name) for name in ("tool", "user", "host", "pid", "owner") if name in meta
    }
    client = meta.get("client")
    if isinstance(client, dict):  # an MCP client, from its initialize handshake
        by["client"] = " ".join(str(client[k]) for k in ("name", "version") if client.get(k))
    return by
