"""Work selection: which backlog item an agent takes next, and what holds the others back.

The PRP pipeline's orchestrator walks Phase > Milestone > Task > Subtask depth-first,
parent before children, and takes the first item whose status is pending (`Planned`).
An item with `dependencies` may run only when each of them is `Complete`; a dependency
naming no item does not hold it back (as the orchestrator's `canExecute` ignores it) but
is reported, and so is a cycle, which can never complete. A parent whose children are
all done is not work to take: only its status lags.

Pure: a backlog document in, typed answers out. The Store makes these decisions inside
its write transaction when an item is claimed (docs/design.md §13), so two agents never
take the same item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

Level = Literal["any", "task", "subtask"]
LEVELS: tuple[Level, ...] = ("any", "task", "subtask")
DEFAULT_PENDING: tuple[str, ...] = ("Planned",)
DONE: frozenset[str] = frozenset({"Complete", "Obsolete"})
_CHILD_KEY = {"Phase": "milestones", "Milestone": "tasks", "Task": "subtasks"}
_LEVEL_TYPE = {"task": "Task", "subtask": "Subtask"}


@dataclass(frozen=True)
class WorkItem:
    """An item as selection sees it: where it sits, and what it waits for."""

    id: str
    type: str
    title: str
    status: str
    path: tuple[str, ...]  # the ids of its ancestors, outermost first
    dependencies: tuple[str, ...]
    blocked_by: tuple[str, ...] = ()  # dependencies present and not Complete
    missing: tuple[str, ...] = ()  # dependencies naming no item

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "title": self.title, "status": self.status,
            "path": list(self.path), "dependencies": list(self.dependencies),
            "blocked_by": list(self.blocked_by), "missing": list(self.missing),
        }


@dataclass(frozen=True)
class Selection:
    """What `next` found: the item (None when nothing is ready), the first pending item it
    skipped because of unmet dependencies, and dependency problems worth a warning."""

    item: WorkItem | None
    skipped: WorkItem | None = None
    warnings: tuple[str, ...] = ()
    claimed: bool = False
    seq: int | None = None  # the claim's seq, when one was appended
    owner: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "item": self.item.as_dict() if self.item else None,
            "blocked_by": self.skipped.as_dict() if self.skipped else None,
            "warnings": list(self.warnings),
            "claimed": self.claimed,
            "seq": self.seq,
            "owner": self.owner,
        }


@dataclass
class _Walk:
    """One pre-order pass over the backlog, with an id index for dependency lookups."""

    doc: dict[str, Any] | None
    items: list[tuple[dict[str, Any], tuple[str, ...]]] = field(default_factory=list)
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        backlog = self.doc.get("backlog") if isinstance(self.doc, dict) else None
        if isinstance(backlog, list):
            self._visit(backlog, ())

    def _visit(self, siblings: list[Any], path: tuple[str, ...]) -> None:
        # Iterative, so a hostile depth cannot exhaust the stack.
        stack: list[tuple[Iterator[Any], tuple[str, ...]]] = [(iter(siblings), path)]
        while stack:
            iterator, here = stack[-1]
            item = next(iterator, None)
            if item is None:
                stack.pop()
                continue
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            self.items.append((item, here))
            self.by_id.setdefault(item["id"], item)
            kids = _children(item)
            if kids:
                stack.append((iter(kids), (*here, item["id"])))


def _children(item: dict[str, Any]) -> list[Any]:
    key = _CHILD_KEY.get(str(item.get("type")))
    kids = item.get(key) if key else None
    return kids if isinstance(kids, list) else []


def _dependencies(item: dict[str, Any]) -> tuple[str, ...]:
    deps = item.get("dependencies")
    if not isinstance(deps, list):
        return ()
    return tuple(d for d in deps if isinstance(d, str))


def _work_item(walk: _Walk, item: dict[str, Any], path: tuple[str, ...]) -> WorkItem:
    deps = _dependencies(item)
    missing = tuple(d for d in deps if d not in walk.by_id)
    blocked = tuple(
        d for d in deps if d in walk.by_id and walk.by_id[d].get("status") != "Complete"
    )
    return WorkItem(
        id=item["id"], type=str(item.get("type", "")), title=str(item.get("title", "")),
        status=str(item.get("status", "")), path=path, dependencies=deps,
        blocked_by=blocked, missing=missing,
    )


def _all_done(item: dict[str, Any]) -> bool:
    kids = [k for k in _children(item) if isinstance(k, dict)]
    return bool(kids) and all(k.get("status") in DONE for k in kids)


def _candidates(
    walk: _Walk, pending: Collection[str], level: Level
) -> Iterator[WorkItem]:
    """Pending items in pre-order at `level`, blocked ones included (callers sort them)."""
    wanted = _LEVEL_TYPE.get(level)
    for item, path in walk.items:
        if item.get("status") not in pending:
            continue
        if wanted is not None and item.get("type") != wanted:
            continue
        if _all_done(item):
            continue
        yield _work_item(walk, item, path)


def dependency_problems(doc: dict[str, Any] | None) -> list[str]:
    """Dependencies naming no item, and cycles among dependencies, as sentences."""
    return _problems(_Walk(doc))


def _problems(walk: _Walk) -> list[str]:
    problems: list[str] = []
    for item, _ in walk.items:
        missing = [d for d in _dependencies(item) if d not in walk.by_id]
        if missing:
            problems.append(f"{item['id']} depends on missing item(s) {', '.join(missing)}")
    problems.extend(
        f"dependency cycle: {' -> '.join([*cycle, cycle[0]])}" for cycle in _cycles(walk)
    )
    return problems


def _cycles(walk: _Walk) -> list[list[str]]:
    """Each cycle once (iterative colouring DFS: a hostile graph cannot recurse deeply)."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(walk.by_id, white)
    cycles: list[list[str]] = []
    for start in walk.by_id:
        if colour[start] != white:
            continue
        colour[start] = grey
        trail = [start]
        stack = [iter(_dependencies(walk.by_id[start]))]
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                stack.pop()
                colour[trail.pop()] = black
                continue
            if dep not in colour:
                continue
            if colour[dep] == grey:
                cycles.append(trail[trail.index(dep):])
            elif colour[dep] == white:
                colour[dep] = grey
                trail.append(dep)
                stack.append(iter(_dependencies(walk.by_id[dep])))
    return cycles


def select_next(
    doc: dict[str, Any] | None,
    *,
    pending: Sequence[str] = DEFAULT_PENDING,
    level: Level = "any",
) -> Selection:
    """The first pending item, in pre-order, whose dependencies are all Complete."""
    walk = _Walk(doc)
    skipped: WorkItem | None = None
    chosen: WorkItem | None = None
    for candidate in _candidates(walk, frozenset(pending), level):
        if candidate.blocked_by:
            skipped = skipped or candidate
            continue
        chosen = candidate
        break
    return Selection(item=chosen, skipped=skipped, warnings=tuple(_problems(walk)))


def ready_items(
    doc: dict[str, Any] | None,
    *,
    pending: Sequence[str] = DEFAULT_PENDING,
    level: Level = "any",
) -> list[WorkItem]:
    """Every item `select_next` could return, in the order it would return them."""
    walk = _Walk(doc)
    return [c for c in _candidates(walk, frozenset(pending), level) if not c.blocked_by]


def blocked_items(
    doc: dict[str, Any] | None,
    *,
    pending: Sequence[str] = DEFAULT_PENDING,
    level: Level = "any",
) -> list[WorkItem]:
    """Every pending item held back by dependencies that are not Complete, in order."""
    walk = _Walk(doc)
    return [c for c in _candidates(walk, frozenset(pending), level) if c.blocked_by]
