"""tasks.json: the PRP pipeline's backlog document, folded from backlog events (docs/design.md §5).

The state is the document itself, as parsed: every field of every item, in its order,
so a file imported and projected with no new events comes back as it was. Items are
found through an id index rebuilt lazily after structural changes (adds, removals),
which are rare next to status changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from eventstore.errors import InvalidInputError
from eventstore.events import (
    BacklogImported,
    Event,
    ItemAdded,
    ItemRemoved,
    ItemStatusChanged,
    ItemUpdated,
)
from eventstore.jsonfmt import dumps, js_key_order, needs_js_numbers, normalize, normalize_document
from projections.backlog_patch import status_changes, status_edits
from projections.backlog_schema import (
    CHILDREN,
    LEVELS,
    REQUIRED_KEYS,
    fields_problems,
    subtree_problems,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventstore.projection import Edit
    from eventstore.records import StoredEvent

# Which list holds an item's children, by the item's type.
CHILD_KEY = {"Phase": "milestones", "Milestone": "tasks", "Task": "subtasks"}
CHILD_KEYS = frozenset(CHILD_KEY.values())


def child_key(item: dict[str, Any]) -> str | None:
    """The key holding an item's children, by its level (Phase: `milestones`, Milestone:
    `tasks`, Task: `subtasks`); None for a Subtask or an unknown type. Any other of those
    keys on an item is a plain field: a Milestone's stray `subtasks` holds no children."""
    return CHILD_KEY.get(item.get("type"))  # type: ignore[arg-type]


def children_of(item: dict[str, Any]) -> list[dict[str, Any]] | None:
    # child_key inlined: every walk of a backlog calls this once per item.
    key = CHILD_KEY.get(item.get("type"))  # type: ignore[arg-type]
    if key is None:
        return None
    value = item.get(key)
    return value if isinstance(value, list) else None


class BacklogState:
    """The backlog document (None before any import) and a lazily built id index.

    On a big backlog the index costs more than the rest of a small export, so an item is
    first looked up along its id (`P1.M1.T1.S1` lies under `P1.M1.T1`, under `P1.M1`,
    under `P1`) when the document is known to hold every id once (`unique_ids`, learnt
    when the index is built and kept in the checkpoint): then that is exactly the item
    the index would give. Otherwise, or when the id does not follow the scheme, the index."""

    __slots__ = ("_index", "doc", "js_numbers", "unique_ids")

    def __init__(
        self, doc: dict[str, Any] | None = None, *, js_numbers: bool = False,
        unique_ids: bool | None = None,
    ) -> None:
        self.doc = doc
        # Set once the document holds a float JavaScript writes differently from orjson;
        # rare enough that rendering checks nothing unless it is set.
        self.js_numbers = js_numbers
        self.unique_ids = unique_ids  # None: not known (the index was not built since a change)
        self._index: dict[str, tuple[dict[str, Any], list[dict[str, Any]], str | None]] | None = (
            None
        )

    @property
    def index(self) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]], str | None]]:
        """id → (item, the sibling list holding it, parent id)."""
        if self._index is None:
            index: dict[str, tuple[dict[str, Any], list[dict[str, Any]], str | None]] = {}
            unique = True
            if self.doc is not None:
                stack: list[tuple[list[Any], str | None]] = [(self.doc["backlog"], None)]
                while stack:
                    siblings, parent = stack.pop()
                    for item in siblings:
                        if isinstance(item, dict) and isinstance(item.get("id"), str):
                            # First occurrence wins, as a reader walking the file finds it.
                            if (
                                index.setdefault(item["id"], (item, siblings, parent))[0]
                                is not item
                            ):
                                unique = False
                            kids = children_of(item)
                            if kids is not None:
                                stack.append((kids, item["id"]))
            self._index = index
            self.unique_ids = unique
        return self._index

    def item(self, item_id: str) -> dict[str, Any] | None:
        found = self.find(item_id)
        return found[0] if found else None

    def find(self, item_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], str | None] | None:
        """(item, its sibling list, parent id), as `index` has it, without building the
        index when the id's path leads to it (see the class docstring)."""
        if self._index is None and self.unique_ids and self.doc is not None:
            found = self._along_path(item_id)
            if found is not None:
                return found
        return self.index.get(item_id)

    def _along_path(
        self, item_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str | None] | None:
        siblings: list[Any] = self.doc["backlog"] if self.doc is not None else []
        parent: str | None = None
        parts = item_id.split(".")
        for depth in range(1, len(parts) + 1):
            wanted = ".".join(parts[:depth])
            item = next(
                (s for s in siblings if isinstance(s, dict) and s.get("id") == wanted), None
            )
            if item is None:
                return None
            if depth == len(parts):
                return item, siblings, parent
            siblings, parent = children_of(item) or [], wanted
        return None

    def invalidate(self) -> None:
        self._index = None
        self.unique_ids = None

    def built_index(
        self,
    ) -> dict[str, tuple[dict[str, Any], list[dict[str, Any]], str | None]] | None:
        """The id index if it is built (None: not built since the last change)."""
        return self._index


class TasksProjection:
    """Projection protocol implementation for `tasks.json`."""

    name = "tasks"
    file_name = "tasks.json"

    def initial(self) -> BacklogState:
        return BacklogState()

    def fold(self, state: BacklogState, event: StoredEvent) -> BacklogState:
        if event.type == "ItemStatusChanged":  # nearly every event: the short way
            data = event.data
            found = state.find(data["item_id"])
            if found is not None:
                found[0]["status"] = data["status"]
            return state
        handler = _FOLDS.get(event.type)
        if handler is not None:
            handler(state, event.data)
        return state

    def render(self, state: BacklogState) -> bytes | None:
        return None if state.doc is None else dumps(state.doc, js_numbers=state.js_numbers)

    def edits(self, previous: bytes, events: Sequence[StoredEvent]) -> list[Edit] | None:
        """Where `events` change `previous` (the file as last exported) when they are
        status changes it can place (projections/backlog_patch.py); None: fold."""
        changes = status_changes(events)
        return None if changes is None else status_edits(previous, changes)

    def dump_state(self, state: BacklogState) -> bytes:
        if state.unique_ids is None and state.doc is not None:
            state.index  # noqa: B018 - learns whether every id is unique, for the next load
        return orjson.dumps({"js_numbers": state.js_numbers, "unique_ids": state.unique_ids,
                             "doc": state.doc})

    def load_state(self, data: bytes) -> BacklogState:
        raw = orjson.loads(data)
        return BacklogState(
            raw["doc"], js_numbers=raw["js_numbers"], unique_ids=raw.get("unique_ids")
        )

    def validate(self, state: BacklogState, event: Event, stream: str) -> None:
        if isinstance(event, BacklogImported):
            # A whole document is a record of what the pipeline held: kept even where it
            # breaks the schema (import warns), but it must fold into one item per id.
            from projections.imports import check_backlog  # noqa: PLC0415 - imports uses us

            check_backlog(event.backlog, source=f"BacklogImported for session {stream!r}")
            return
        if not isinstance(event, (ItemAdded, ItemStatusChanged, ItemUpdated, ItemRemoved)):
            return
        if state.doc is None:
            raise InvalidInputError(
                f"session {stream!r} has no backlog yet: import a tasks.json first"
            )
        if isinstance(event, ItemAdded):
            _validate_add(state, event, stream)
            return
        if state.find(event.item_id) is None:
            raise InvalidInputError(f"unknown item {event.item_id!r} in session {stream!r}")
        if isinstance(event, ItemUpdated):
            _validate_update(state, event, stream)


    # --- lookups (eventstore/projection.py LookupProjection, docs/design.md §3) -----------
    # An item's entry, under "item:" + its id, is [depth, parent id]; the entry "doc" says
    # the session has a backlog. A status update, nearly every event, reads just those two
    # and changes neither (statuses are not kept here: writing one on every update would
    # cost every append a page of the journal file).

    keeps_entries = True

    def lookup_keys(self, event: Event) -> Sequence[str] | None:
        if isinstance(event, ItemStatusChanged):
            return (_HAS_BACKLOG, _ITEM + event.item_id)
        if isinstance(event, (BacklogImported, ItemAdded, ItemUpdated, ItemRemoved)):
            return None
        return ()

    def validate_lookup(self, entries: dict[str, Any], event: Event, stream: str) -> None:
        if not isinstance(event, ItemStatusChanged):
            return
        if entries.get(_HAS_BACKLOG) is None:
            raise InvalidInputError(
                f"session {stream!r} has no backlog yet: import a tasks.json first"
            )
        if entries.get(_ITEM + event.item_id) is None:
            raise InvalidInputError(f"unknown item {event.item_id!r} in session {stream!r}")

    def touched_keys(self, event: Event) -> Sequence[str] | None:
        if isinstance(event, (ItemStatusChanged, ItemUpdated)):
            return ()  # neither an item's depth nor its parent changes
        if isinstance(event, ItemAdded):
            return (_HAS_BACKLOG, *(_ITEM + item["id"] for item in _walk([event.item])))
        if isinstance(event, (BacklogImported, ItemRemoved)):
            return None
        return ()

    def lookup_entries(
        self, state: BacklogState, keys: Sequence[str] | None
    ) -> dict[str, Any] | None:
        if state.doc is None:
            return dict.fromkeys(keys or ())
        if keys is not None:
            if state.unique_ids is None:
                state.index  # noqa: B018 - learns whether every id is unique
            if not state.unique_ids:
                return None  # which of two items an id names is not for a lookup to say
            return {key: _entry_of(state, key) for key in keys}
        entries: dict[str, Any] = {_HAS_BACKLOG: 1}
        depths: dict[str | None, int] = {None: -1}
        stack: list[tuple[list[Any], str | None]] = [(state.doc["backlog"], None)]
        while stack:  # parents before children, so each depth is its parent's plus one
            siblings, parent = stack.pop()
            depth = depths[parent] + 1
            for item in siblings:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    item_id = item["id"]
                    if item_id in depths:
                        state.unique_ids = False
                        return None  # which of two items an id names is not for a lookup to say
                    depths[item_id] = depth
                    entries[_ITEM + item_id] = [depth, parent]
                    kids = children_of(item)
                    if kids is not None:
                        stack.append((kids, item_id))
        return entries


_HAS_BACKLOG = "doc"
_ITEM = "item:"


def _entry_of(state: BacklogState, key: str) -> Any:
    if key == _HAS_BACKLOG:
        return 1
    item_id = key.removeprefix(_ITEM)
    found = state.find(item_id)
    if found is None:
        return None
    return [_level(state, item_id), found[2]]


def _validate_add(state: BacklogState, event: ItemAdded, stream: str) -> None:
    new_id = event.item["id"]
    if new_id in state.index:
        raise InvalidInputError(f"item {new_id!r} already exists in session {stream!r}")
    siblings: list[Any]
    if event.parent_id is None:
        siblings = state.doc["backlog"] if state.doc else []
    else:
        parent = state.item(event.parent_id)
        if parent is None:
            raise InvalidInputError(f"unknown parent {event.parent_id!r} in session {stream!r}")
        if parent.get("type") not in CHILD_KEY:
            raise InvalidInputError(f"item {event.parent_id!r} ({parent.get('type')}) cannot have "
                                    "children")
        siblings = parent.get(CHILD_KEY[parent["type"]]) or []
    if event.after_id is not None and not any(
        isinstance(s, dict) and s.get("id") == event.after_id for s in siblings
    ):
        raise InvalidInputError(
            f"after_id {event.after_id!r} is not a sibling under {event.parent_id!r} in session "
            f"{stream!r}"
        )
    level = 0 if event.parent_id is None else _level(state, event.parent_id) + 1
    problem = next(subtree_problems([event.item], level=level, parent_id=event.parent_id,
                                    taken=state.index), None)
    if problem is not None:
        raise InvalidInputError(f"{problem} (session {stream!r}): the pipeline could not load it")


def _validate_update(state: BacklogState, event: ItemUpdated, stream: str) -> None:
    # Children change through ItemAdded/ItemRemoved, which keep the index right; which
    # key holds them depends on the item's level, so only that one is protected here
    # (another level's key on an item is a plain field: a stray one may be dropped).
    item, _, parent_id = state.index[event.item_id]
    own = child_key(item)
    if own is not None and (own in event.changes or own in event.removed):
        raise InvalidInputError(
            f"cannot change {own} of {event.item_id!r} with ItemUpdated in session {stream!r}: "
            "add or remove the children instead"
        )
    # Only what the update sets or removes is checked: a field the imported file already
    # got wrong is the file's, and must not block updating the others.
    kind = LEVELS[min(_level(state, event.item_id), len(LEVELS) - 1)]
    name = f"item {event.item_id!r}"
    if "id" in event.changes and event.changes["id"] != event.item_id:
        raise InvalidInputError(f"{name}: an id cannot change (session {stream!r}): remove the "
                                "item and add it under its new id")
    for key in event.removed:
        if key not in event.changes and (key in REQUIRED_KEYS[kind] or key == CHILDREN.get(kind)):
            raise InvalidInputError(f'{name}: "{key}" is required on a {kind} (session {stream!r})')
    # A value set again unchanged (the diff re-sets keys to reorder them) is not new.
    changes = {k: v for k, v in event.changes.items()
               if k != "id" and (k not in item or _json(item[k]) != _json(v))}
    problem = next(fields_problems(changes, kind, parent_id), None)
    if problem is None:
        problem = next(_children_problems(state, event, kind), None)
    if problem is not None:
        raise InvalidInputError(f"{name}: {problem} (session {stream!r})")


def _children_problems(state: BacklogState, event: ItemUpdated, kind: str) -> Iterator[str]:
    for key in CHILD_KEYS & set(event.changes):
        if key != CHILDREN.get(kind):
            yield f'has "{key}", which a {kind} does not hold'
        elif not isinstance(event.changes[key], list):
            yield f'"{key}" must be an array'
        else:
            item, _, _ = state.index[event.item_id]
            old = {d["id"] for d in _walk(item.get(key) or [])}
            taken = set(state.index) - old - {event.item_id}
            yield from subtree_problems(event.changes[key], level=LEVELS.index(kind) + 1,
                                        parent_id=event.item_id, taken=taken)


def _json(value: Any) -> bytes:
    return orjson.dumps(value)  # JSON's equality: Python's says 1 == True == 1.0


def _walk(items: list[Any]) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            yield item
            kids = children_of(item)
            if kids is not None:
                yield from _walk(kids)


def _level(state: BacklogState, item_id: str) -> int:
    """Depth of an item in the tree (0: a Phase), whatever its `type` says."""
    index = state.index
    depth, parent = 0, index[item_id][2]
    while parent is not None and parent in index and depth <= len(LEVELS):
        depth, parent = depth + 1, index[parent][2]
    return depth


# --- folds: each takes the decoded payload, mutates the state, never raises ---------------
# Events were validated before they were appended; anything that still does not fit
# (an item removed since, say) is skipped, so replay is total and deterministic.


def _imported(state: BacklogState, data: dict[str, Any]) -> None:
    state.doc, state.js_numbers = normalize_document(data["backlog"])
    state.invalidate()


def _status_changed(state: BacklogState, data: dict[str, Any]) -> None:
    item = state.item(data["item_id"])
    if item is not None:
        item["status"] = data["status"]


def _updated(state: BacklogState, data: dict[str, Any]) -> None:
    item = state.item(data["item_id"])
    if item is None:
        return
    for key in data.get("removed", ()):
        item.pop(key, None)
    changes = normalize(data.get("changes", {}))
    item.update(changes)
    order = data.get("order")
    if order and set(order) == set(item):  # a stale order (keys changed since) is ignored
        ordered = {key: item[key] for key in order}
        item.clear()
        item.update(ordered)
    js_key_order(item)
    state.js_numbers = state.js_numbers or needs_js_numbers(changes)


def _added(state: BacklogState, data: dict[str, Any]) -> None:
    if state.doc is None:
        return
    parent_id = data.get("parent_id")
    if parent_id is None:
        siblings = state.doc["backlog"]
    else:
        parent = state.item(parent_id)
        if parent is None or parent.get("type") not in CHILD_KEY:
            return
        siblings = parent.setdefault(CHILD_KEY[parent["type"]], [])
    position = 0
    after_id = data.get("after_id")
    if after_id is not None:
        for index, sibling in enumerate(siblings):
            if isinstance(sibling, dict) and sibling.get("id") == after_id:
                position = index + 1
                break
    item = normalize(data["item"])
    siblings.insert(position, item)
    state.js_numbers = state.js_numbers or needs_js_numbers(item)
    _index_added(state, item, siblings, parent_id)


def _index_added(
    state: BacklogState, item: dict[str, Any], siblings: list[dict[str, Any]],
    parent_id: str | None,
) -> None:
    """Add the new subtree to a built index rather than dropping it: a diff import adds
    items between status updates, and rebuilding the index of a big backlog after each
    costs a walk of all of it. Only when every new id is new (else which occurrence an id
    names depends on the walk: build it again)."""
    index = state.built_index()
    if index is None or not state.unique_ids:
        state.invalidate()
        return
    found: list[tuple[str, tuple[dict[str, Any], list[dict[str, Any]], str | None]]] = []
    stack: list[tuple[dict[str, Any], list[dict[str, Any]], str | None]] = [
        (item, siblings, parent_id)]
    while stack:
        node, holder, parent = stack.pop()
        node_id = node.get("id")
        if not isinstance(node_id, str):
            continue
        if node_id in index or any(node_id == seen for seen, _ in found):
            state.invalidate()
            return
        found.append((node_id, (node, holder, parent)))
        kids = children_of(node)
        if kids is not None:
            stack.extend((kid, kids, node_id) for kid in kids if isinstance(kid, dict))
    index.update(found)


def _removed(state: BacklogState, data: dict[str, Any]) -> None:
    found = state.index.get(data["item_id"])
    if found is None:
        return
    item, siblings, _ = found
    siblings[:] = [s for s in siblings if s is not item]
    state.invalidate()


_FOLDS = {
    "BacklogImported": _imported,
    "ItemStatusChanged": _status_changed,
    "ItemUpdated": _updated,
    "ItemAdded": _added,
    "ItemRemoved": _removed,
}
