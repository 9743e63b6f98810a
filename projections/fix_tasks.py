"""Fix-task recovery (docs/design.md §9): a failed task gets a fix subtask, up to a limit.

The decision (which fix number, which id, or the limit) and its events are made in one
write transaction (Store.append_decided), so two `fail` calls racing for one item cannot
both create fix #2: the second sees the first's fix and makes #3, or hits the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventstore.errors import FixLimitError, InvalidInputError
from eventstore.events import Event, FixLimitReached, FixTaskCreated, ItemAdded, TaskFailed
from eventstore.logs import get_logger
from projections.backlog_schema import MAX_TITLE
from projections.fixes import DEFAULT_MAX_FIX_TASKS, FixState

if TYPE_CHECKING:
    from eventstore.store import Store
    from projections.backlog import BacklogState

log = get_logger("evstore.fixes")

MAX_FIX_TASKS_LIMIT = 10
_SUBTASK_ID = re.compile(r"^(?P<task>P\d+\.M\d+\.T\d+)\.S(?P<n>\d+)$")


@dataclass(frozen=True)
class FailureOutcome:
    original_id: str
    attempt: int
    fix_id: str
    fix_item: dict[str, Any]
    max_fix_tasks: int

    def as_dict(self) -> dict[str, Any]:
        return {"original_id": self.original_id, "attempt": self.attempt, "fix_id": self.fix_id,
                "max_fix_tasks": self.max_fix_tasks, "fix_item": self.fix_item}


def record_failure(
    store: Store,
    session: str,
    item_id: str,
    error: str,
    *,
    max_fix_tasks: int = DEFAULT_MAX_FIX_TASKS,
) -> FailureOutcome:
    """Record that `item_id` failed; create its next fix subtask, or raise FixLimitError
    (exit 6) once `max_fix_tasks` fixes were tried, after recording that too."""
    if not 1 <= max_fix_tasks <= MAX_FIX_TASKS_LIMIT:
        raise InvalidInputError(
            f"invalid --max-fix-tasks value {max_fix_tasks}: expected 1 to {MAX_FIX_TASKS_LIMIT}"
        )
    if not error.strip():
        raise InvalidInputError("fail needs --error MSG: the error is what the fix task works from")
    store.session(session)

    def decide() -> tuple[list[Event], FailureOutcome | FixLimitReached]:
        backlog: BacklogState = store.state(session, "tasks")
        fixes: FixState = store.state(session, "fix-history-json")
        found = backlog.index.get(item_id) if backlog.doc is not None else None
        if found is None:
            raise InvalidInputError(f"unknown item {item_id!r} in session {session!r}")
        item, siblings, parent = found
        if item.get("type") not in ("Subtask", "Task"):
            raise InvalidInputError(
                f"item {item_id!r} is a {item.get('type')}: fix tasks are made for tasks and "
                "subtasks"
            )
        entry = fixes.fix_map.get(item_id)
        attempts = entry["attempts"] if entry else 0
        failed = TaskFailed(item_id=item_id, error=error)
        if attempts >= max_fix_tasks:
            limit = FixLimitReached(original_id=item_id, attempts=attempts, last_error=error,
                                    max_fix_tasks=max_fix_tasks)
            return [failed, limit], limit
        attempt = attempts + 1
        fix_item = _fix_item(backlog, item, item_id, attempt=attempt, error=error,
                             max_fix_tasks=max_fix_tasks)
        if item["type"] == "Subtask":
            placement = {"parent_id": parent, "after_id": _after(siblings, item_id, entry)}
        else:
            kids = item.get("subtasks") or []
            placement = {"parent_id": item_id, "after_id": kids[-1]["id"] if kids else None}
        created = FixTaskCreated(original_id=item_id, fix_id=fix_item["id"], attempt=attempt,
                                 error=error, max_fix_tasks=max_fix_tasks)
        outcome = FailureOutcome(item_id, attempt, fix_item["id"], fix_item, max_fix_tasks)
        return [failed, created, ItemAdded(item=fix_item, **placement)], outcome

    outcome, _ = store.append_decided(session, decide)
    if isinstance(outcome, FixLimitReached):
        history = store.state(session, "fix-history-json").history_lines()
        log.info("fix_limit_reached", session=session, item=item_id, attempts=outcome.attempts)
        raise FixLimitError(
            f"Max fix tasks ({max_fix_tasks}) reached for {item_id}", history=history
        )
    log.info(
        "fix_task_created",
        session=session,
        item=item_id,
        fix_id=outcome.fix_id,
        attempt=outcome.attempt,
    )
    return outcome


def _after(siblings: list[dict[str, Any]], item_id: str, entry: dict[str, Any] | None) -> str:
    # Right after the failing item, or after its latest fix still present, so fixes stay
    # in the order they were made.
    present = {s.get("id") for s in siblings}
    previous = [fix for fix in (entry or {}).get("fixTaskIds", []) if fix in present]
    return previous[-1] if previous else item_id


def _fix_item(  # noqa: PLR0913 - the item, which attempt this is, and why
    backlog: BacklogState, item: dict[str, Any], item_id: str, *, attempt: int, error: str,
    max_fix_tasks: int,
) -> dict[str, Any]:
    task_id = item_id.rsplit(".", 1)[0] if item["type"] == "Subtask" else item_id
    first_line = error.strip().splitlines()[0]
    return {
        "type": "Subtask",
        "id": _next_subtask_id(backlog, task_id),
        "title": _short(f"[FIX {item_id} #{attempt}] {first_line}"),
        "status": "Planned",
        "story_points": 1,
        "dependencies": [],
        "context_scope": (
            "CONTRACT DEFINITION:\n"
            f"1. RESEARCH NOTE: {item_id} failed (fix attempt {attempt} of {max_fix_tasks}) with:\n"
            f"{error.strip()}\n"
            f"2. INPUT: the work of {item_id} as it stands, and the error above.\n"
            "3. LOGIC: find the cause of the failure and fix it; do not weaken or skip tests.\n"
            f"4. OUTPUT: {item_id} passes when it is run again."
        ),
    }


def _short(title: str) -> str:
    # The pipeline refuses titles past MAX_TITLE; the whole error is in context_scope.
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def _next_subtask_id(backlog: BacklogState, task_id: str) -> str:
    """The next `<task>.S<n>` free anywhere in the backlog (valid in the backlog's id
    scheme, P<n>.M<n>.T<n>.S<n>)."""
    numbers = [int(m.group("n")) for i in backlog.index
               if (m := _SUBTASK_ID.match(i)) and m.group("task") == task_id]
    n = max(numbers, default=0) + 1
    while f"{task_id}.S{n}" in backlog.index:
        n += 1
    return f"{task_id}.S{n}"
