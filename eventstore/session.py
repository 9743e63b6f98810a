"""Batched status updates (docs/design.md §7): validate at once, append all in one transaction."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from eventstore.events import ItemStatusChanged, validate_status
from eventstore.logs import get_logger

if TYPE_CHECKING:
    from eventstore.records import AppendResult
    from eventstore.store import Store

log = get_logger("evstore.session")


@dataclass(frozen=True)
class FlushStats:
    items_written: int
    write_ops_saved: int
    efficiency: str
    last_seq: int

    @classmethod
    def of(cls, items: int, result: AppendResult) -> FlushStats:
        saved = max(0, items - 1)
        efficiency = f"{saved / items * 100:.1f}%" if items else "0.0%"
        return cls(items, saved, efficiency, result.last_seq)


class Session:
    """Accumulates `update_item_status` calls; `flush_updates` makes them durable at once.

    Safe to share between threads: a flush takes the updates pending when it starts and
    leaves any made meanwhile for the next flush; a failed flush keeps them all.
    """

    def __init__(self, store: Store, session_id: str) -> None:
        self.store = store
        self.id = session_id
        self._pending: list[ItemStatusChanged] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    @property
    def pending(self) -> tuple[ItemStatusChanged, ...]:
        with self._lock:
            return tuple(self._pending)

    def update_item_status(
        self, item_id: str, status: str, *, reason: str | None = None
    ) -> dict[str, Any] | None:
        """Queue a status change; an unknown item or status raises InvalidInputError now.

        Returns the backlog document as it will be once the pending updates are flushed
        (`view()`), as the PRP pipeline's `updateItemStatus` returns its updated backlog."""
        validate_status(status)
        event = ItemStatusChanged(item_id=item_id, status=status, reason=reason)
        state_checks = [(p, self.store.state(self.id, p.name)) for p in self.store.projections]
        for projection, state in state_checks:
            projection.validate(state, event, self.id)
        with self._lock:
            self._pending.append(event)
        return self.view()

    def view(self) -> dict[str, Any] | None:
        """The backlog document (`tasks.json` as a dict) with every pending update applied:
        a copy, equal key for key to what `tasks.json` holds after `flush_updates()` and
        `project`. The journal is untouched. None when the session has no backlog."""
        doc = self.store.state(self.id, "tasks").doc
        if doc is None:
            return None
        with self._lock:
            pending = list(self._pending)
        # A deep copy without Python-level recursion: orjson keeps key order and numbers.
        copy: dict[str, Any] = orjson.loads(orjson.dumps(doc))
        if pending:
            index = _index(copy)
            for event in pending:
                item = index.get(event.item_id)
                if item is not None:
                    item["status"] = event.status
        return copy

    def flush_updates(self) -> FlushStats | None:
        """Append every pending update in one transaction; None when nothing was pending."""
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending)
            if not batch:
                return None
            result = self.store.append(self.id, batch)
            with self._lock:
                del self._pending[: len(batch)]
        stats = FlushStats.of(len(batch), result)
        log.info(
            "updates_flushed",
            session=self.id,
            items_written=stats.items_written,
            write_ops_saved=stats.write_ops_saved,
            efficiency=stats.efficiency,
            position=result.last_seq,
        )
        return stats


_CHILD_KEY = {"Phase": "milestones", "Milestone": "tasks", "Task": "subtasks"}


def _index(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """id → item over the whole document; the first occurrence wins, as in the projection."""
    found: dict[str, dict[str, Any]] = {}
    stack: list[Any] = [doc.get("backlog") or []]
    while stack:
        for item in stack.pop():
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                found.setdefault(item["id"], item)
                kids = item.get(_CHILD_KEY.get(str(item.get("type")), ""))
                if isinstance(kids, list):
                    stack.append(kids)
    return found
