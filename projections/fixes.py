"""fix-history.json and fix-history.md: a Ralph loop's fix-task history (docs/design.md §5, §9).

fix-history.json has the shape of a Ralph state file's recovery fields, so
`jq -s '.[0] * .[1]' .ralph-state.json fix-history.json` merges it into one; fix-history.md
is the `## Fix Task History` section of a `.progress.md`. Both exist once a fix task does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from eventstore.jsonfmt import dumps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.events import Event
    from eventstore.records import StoredEvent

DEFAULT_MAX_FIX_TASKS = 3


class FixState:
    """fixTaskMap plus what the verdicts need: which originals hit the limit, and the
    latest status of each original (PASS once it reaches Complete)."""

    __slots__ = ("fix_map", "limit_reached", "max_fix_tasks", "statuses")

    def __init__(self) -> None:
        self.max_fix_tasks = DEFAULT_MAX_FIX_TASKS
        self.fix_map: dict[str, dict[str, Any]] = {}
        self.limit_reached: list[str] = []
        self.statuses: dict[str, str] = {}

    def verdict(self, original: str) -> str:
        if self.statuses.get(original) == "Complete":
            return "PASS"
        if original in self.limit_reached:
            return "FAIL"
        return "PENDING"

    def history_lines(self) -> list[str]:
        return [
            # Ralph's grammar: "1 fix attempted", "2 fixes attempted".
            f"- Task {original}: {entry['attempts']} "
            f"{'fix' if entry['attempts'] == 1 else 'fixes'} attempted "
            f"({', '.join(entry['fixTaskIds'])}) - Final: {self.verdict(original)}"
            for original, entry in self.fix_map.items()
        ]

    def dump(self) -> bytes:
        return orjson.dumps({"max": self.max_fix_tasks, "map": self.fix_map,
                             "limit": self.limit_reached, "statuses": self.statuses})

    @classmethod
    def load(cls, data: bytes) -> FixState:
        raw = orjson.loads(data)
        state = cls()
        state.max_fix_tasks, state.fix_map = raw["max"], raw["map"]
        state.limit_reached, state.statuses = raw["limit"], raw["statuses"]
        return state


def fold_fixes(state: FixState, event: StoredEvent) -> FixState:
    data = event.data
    kind = event.type
    if kind == "FixTaskCreated":
        entry = state.fix_map.setdefault(data["original_id"], _entry())
        entry["attempts"] = data["attempt"]
        entry["fixTaskIds"].append(data["fix_id"])
        entry["lastError"] = data["error"]
        state.max_fix_tasks = data.get("max_fix_tasks") or state.max_fix_tasks
        state.statuses.pop(data["original_id"], None)  # it just failed: not passing now
    elif kind == "FixLimitReached":
        entry = state.fix_map.setdefault(data["original_id"], _entry())
        entry["attempts"] = data["attempts"]
        entry["lastError"] = data["last_error"]
        state.max_fix_tasks = data.get("max_fix_tasks") or state.max_fix_tasks
        if data["original_id"] not in state.limit_reached:
            state.limit_reached.append(data["original_id"])
        state.statuses.pop(data["original_id"], None)
    elif kind == "TaskFailed" and data["item_id"] in state.fix_map:
        state.fix_map[data["item_id"]]["lastError"] = data["error"]
        state.statuses.pop(data["item_id"], None)
    elif kind == "ItemStatusChanged" and data["item_id"] in state.fix_map:
        state.statuses[data["item_id"]] = data["status"]
    elif kind == "ItemUpdated" and data["item_id"] in state.fix_map and "status" in data["changes"]:
        state.statuses[data["item_id"]] = data["changes"]["status"]
    return state


def _entry() -> dict[str, Any]:
    return {"attempts": 0, "fixTaskIds": [], "lastError": ""}


class _FixProjection:
    def initial(self) -> FixState:
        return FixState()

    def fold(self, state: FixState, event: StoredEvent) -> FixState:
        return fold_fixes(state, event)

    def dump_state(self, state: FixState) -> bytes:
        return state.dump()

    def load_state(self, data: bytes) -> FixState:
        return FixState.load(data)

    def validate(self, state: FixState, event: Event, stream: str) -> None:  # noqa: ARG002 - Projection's signature
        return None

    # Lookups (eventstore/projection.py LookupProjection): nothing to validate, ever.
    keeps_entries = False

    def lookup_keys(self, event: Event) -> Sequence[str]:  # noqa: ARG002 - the protocol's
        return ()

    def validate_lookup(self, entries: dict[str, Any], event: Event, stream: str) -> None:
        pass

    def touched_keys(self, event: Event) -> Sequence[str]:  # noqa: ARG002 - the protocol's
        return ()

    def lookup_entries(self, state: FixState, keys: Sequence[str] | None) -> dict[str, Any]:  # noqa: ARG002 - the protocol's
        return {}


class FixHistoryJsonProjection(_FixProjection):
    name = "fix-history-json"
    file_name = "fix-history.json"

    def render(self, state: FixState) -> bytes | None:
        if not state.fix_map:
            return None
        document = {
            "recoveryMode": True,
            "maxFixTasksPerOriginal": state.max_fix_tasks,
            "fixTaskMap": state.fix_map,
        }
        return dumps(document) + b"\n"  # as Ralph state files end


class FixHistoryMarkdownProjection(_FixProjection):
    name = "fix-history-md"
    file_name = "fix-history.md"

    def render(self, state: FixState) -> bytes | None:
        if not state.fix_map:
            return None
        return ("## Fix Task History\n\n" + "\n".join(state.history_lines()) + "\n").encode()
