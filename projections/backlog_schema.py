"""The PRP pipeline's backlog schema: what every item of a tasks.json must look like.

The pipeline (hacky-hack's zod models) reads tasks.json with these rules, so an item that
breaks them is one it cannot load: four levels, Phase > Milestone > Task > Subtask, each
item's `type` naming its level and its id in the level's format, extending its parent's
(`P1` > `P1.M1` > `P1.M1.T1` > `P1.M1.T1.S1`); statuses from the vocabulary; a title of
1-200 characters; a description on every level above Subtask; on a Subtask, whole story
points from 1 to 21, a list of dependency ids and a `context_scope` contract whose four
numbered sections come in order.

Pure functions returning problems as sentences (never raising): appends refuse on the
first, `import` warns with each, `doctor` reports them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from eventstore.events import STATUSES

if TYPE_CHECKING:
    from collections.abc import Container, Iterable, Iterator

LEVELS = ("Phase", "Milestone", "Task", "Subtask")
# The array that holds an item's children, by level (a Subtask has none).
CHILDREN = {"Phase": "milestones", "Milestone": "tasks", "Task": "subtasks"}
_ID_FORMAT = {
    "Phase": (re.compile(r"P\d+"), "P{N}"),
    "Milestone": (re.compile(r"P\d+\.M\d+"), "P{N}.M{N}"),
    "Task": (re.compile(r"P\d+\.M\d+\.T\d+"), "P{N}.M{N}.T{N}"),
    "Subtask": (re.compile(r"P\d+\.M\d+\.T\d+\.S\d+"), "P{N}.M{N}.T{N}.S{N}"),
}
MAX_TITLE = 200
STORY_POINTS = (1, 21)
_CONTRACT_PREFIX = "CONTRACT DEFINITION:\n"
_CONTRACT_SECTIONS = (
    ("1. RESEARCH NOTE:", re.compile(r"1\.\s*RESEARCH\sNOTE:", re.MULTILINE)),
    ("2. INPUT:", re.compile(r"2\.\s*INPUT:", re.MULTILINE)),
    ("3. LOGIC:", re.compile(r"3\.\s*LOGIC:", re.MULTILINE)),
    ("4. OUTPUT:", re.compile(r"4\.\s*OUTPUT:", re.MULTILINE)),
)
_CHILD_KEYS = frozenset(CHILDREN.values())
# Per level, the children's keys an item of it must not hold, in the order they are named.
_STRAY_CHILD_KEYS = {
    kind: tuple(sorted(_CHILD_KEYS - {CHILDREN[kind]} if kind in CHILDREN else _CHILD_KEYS))
    for kind in LEVELS
}


def backlog_problems(doc: Any, *, statuses: bool = True) -> list[str]:
    """Every way `doc` (a parsed tasks.json) breaks the schema; [] when it keeps it.
    Without `statuses`, statuses outside the vocabulary are left to the caller."""
    if not isinstance(doc, dict) or not isinstance(doc.get("backlog"), list):
        return ['not a backlog: expected an object with a "backlog" array']
    found = subtree_problems(doc["backlog"], level=0, parent_id=None)
    return [p for p in found if statuses or _STATUS_MARK not in p]


def subtree_problems(
    items: Iterable[Any],
    *,
    level: int,
    parent_id: str | None,
    taken: Container[str] = frozenset(),
) -> Iterator[str]:
    """Problems of `items` (siblings at `level`) and everything under them; `taken` holds
    the ids already used elsewhere in the backlog (not changed)."""
    return _subtree(items, level=level, parent_id=parent_id, taken=taken, seen=set())


def _subtree(
    items: Iterable[Any], *, level: int, parent_id: str | None, taken: Container[str],
    seen: set[str],
) -> Iterator[str]:
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            where = (
                f"item {position + 1} under {parent_id}" if parent_id else f"phase {position + 1}"
            )
            yield f"{where} is not an object"
            continue
        item_id = item.get("id")
        if isinstance(item_id, str):
            if item_id in seen or item_id in taken:
                yield f"item {item_id!r}: its id is used twice (ids must be unique)"
            seen.add(item_id)
        yield from item_problems(item, level=level, parent_id=parent_id)
        if level + 1 < len(LEVELS):
            kids = item.get(CHILDREN[LEVELS[level]])
            if isinstance(kids, list):
                own = item_id if isinstance(item_id, str) else parent_id
                yield from _subtree(kids, level=level + 1, parent_id=own, taken=taken, seen=seen)


def item_problems(item: dict[str, Any], *, level: int, parent_id: str | None) -> Iterator[str]:
    """Problems of one item's own fields at `level` (its children are not looked at)."""
    if level >= len(LEVELS):
        name = _name(item, parent_id)
        yield f"{name}: nested below a Subtask (Phase > Milestone > Task > Subtask)"
        return
    kind = LEVELS[level]
    for problem in fields_problems(item, kind, parent_id):
        yield f"{_name(item, parent_id)}: {problem}"
    expected = CHILDREN.get(kind)
    for key in _STRAY_CHILD_KEYS[kind]:
        if key in item:
            holds = f'its children go in "{expected}"' if expected else "a Subtask has none"
            yield f'{_name(item, parent_id)}: has "{key}" ({holds})'
    if expected is not None and expected not in item:
        yield f'{_name(item, parent_id)}: missing "{expected}" (an array, possibly empty)'


def fields_problems(fields: dict[str, Any], kind: str, parent_id: str | None) -> Iterator[str]:
    """Problems of the fields present in `fields` (whole item or an update's changes) for
    an item of level `kind` under `parent_id`; required fields are checked when `fields`
    has an "id" (a whole item)."""
    # Checks return a message or None, not generators: an import checks every field of
    # every item (100,000 items, 600,000 checks), and nearly all of them pass.
    found = []
    whole = "id" in fields
    if (whole or "type" in fields) and fields.get("type") != kind:
        found.append(f"type {fields.get('type')!r} where a {kind} belongs (expected {kind!r})")
    if whole:
        problem = _id_problem(fields["id"], kind, parent_id)
        if problem is not None:
            found.append(problem)
    for key, check in _CHECKS.items():
        if key in fields:
            problem = check(fields[key], kind)
            if problem is not None:
                found.append(problem)
        elif whole and kind in _REQUIRED[key]:
            found.append(f'missing "{key}"')
    return iter(found)


def _id_problem(item_id: Any, kind: str, parent_id: str | None) -> str | None:
    pattern, shape = _ID_FORMAT[kind]
    if not isinstance(item_id, str) or not pattern.fullmatch(item_id):
        return f"id {item_id!r} is not in the {kind} format {shape}"
    if parent_id is not None and item_id.rsplit(".", 1)[0] != parent_id:
        return f"id {item_id!r} does not extend its parent's id {parent_id!r}"
    return None


_STATUS_MARK = "is outside the status vocabulary"


def _status(value: Any, _kind: str) -> str | None:
    if value not in STATUSES:
        return f"status {value!r} {_STATUS_MARK} ({', '.join(STATUSES)})"
    return None


def _title(value: Any, _kind: str) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TITLE:
        return f"title must be a string of 1 to {MAX_TITLE} characters"
    return None


def _description(value: Any, kind: str) -> str | None:
    if kind != "Subtask" and (not isinstance(value, str) or not value):
        return "description must be a non-empty string"
    return None


def _story_points(value: Any, kind: str) -> str | None:
    low, high = STORY_POINTS
    if kind == "Subtask" and (
        isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
    ):
        return f"story_points must be a whole number from {low} to {high}, not {value!r}"
    return None


def _dependencies(value: Any, kind: str) -> str | None:
    if kind == "Subtask" and (
        not isinstance(value, list) or not all(isinstance(d, str) for d in value)
    ):
        return "dependencies must be an array of item ids"
    return None


def _context_scope(value: Any, kind: str) -> str | None:
    if kind != "Subtask":
        return None
    if not isinstance(value, str) or not value.startswith(_CONTRACT_PREFIX):
        return 'context_scope must start with "CONTRACT DEFINITION:" and a newline'
    content, start = value[len(_CONTRACT_PREFIX):], 0
    for header, pattern in _CONTRACT_SECTIONS:
        found = pattern.search(content)
        if found is None or found.start() < start:
            return f'context_scope lacks its "{header}" section (in order: 1 to 4)'
        start = found.end()
    return None


_CHECKS = {
    "status": _status,
    "title": _title,
    "description": _description,
    "story_points": _story_points,
    "dependencies": _dependencies,
    "context_scope": _context_scope,
}
_ALL = frozenset(LEVELS)
_REQUIRED = {
    "status": _ALL,
    "title": _ALL,
    "description": frozenset(LEVELS[:3]),
    "story_points": frozenset({"Subtask"}),
    "dependencies": frozenset({"Subtask"}),
    "context_scope": frozenset({"Subtask"}),
}

# The fields each level must have, besides "id", "type" and its children's array.
REQUIRED_KEYS = {kind: frozenset(k for k, kinds in _REQUIRED.items() if kind in kinds)
                 for kind in LEVELS}


def _name(item: dict[str, Any], parent_id: str | None) -> str:
    item_id = item.get("id")
    if isinstance(item_id, str):
        return f"item {item_id!r}"
    return f"an item under {parent_id!r}" if parent_id else "a phase"
