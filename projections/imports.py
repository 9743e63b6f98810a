"""Turning files into events: a tasks.json, or the differences between two backlogs.

Pure functions: the caller reads the bytes and appends the events. A re-import, a legacy
`tasks.json.failed` recovery file and the replay of a committed history all become the
smallest events that reproduce the new document exactly (key order included), checked by
folding them; when no such events exist, the whole document is imported again.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from eventstore.errors import InvalidInputError
from eventstore.events import (
    STATUSES,
    BacklogImported,
    Event,
    ItemAdded,
    ItemRemoved,
    ItemStatusChanged,
    ItemUpdated,
)
from eventstore.jsonerrors import json_problem
from eventstore.jsonfmt import loads
from eventstore.records import StoredEvent
from projections.backlog import BacklogState, TasksProjection, child_key, children_of


@dataclass(frozen=True)
class ParsedBacklog:
    doc: dict[str, Any]
    sha256: str
    unknown_statuses: dict[str, str]  # item id → status outside the vocabulary


def parse_backlog(data: bytes, *, source: str) -> ParsedBacklog:
    """Parse and check a tasks.json document; errors name `source` and the problem."""
    return backlog_of(parse_json(data, source=source), data, source=source)


def parse_json(data: bytes, *, source: str) -> Any:
    """`data` parsed as JavaScript would hold it; errors name `source` and the problem."""
    try:
        return loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{source}: {json_problem(exc, data)}") from None


def backlog_of(doc: Any, data: bytes, *, source: str) -> ParsedBacklog:
    """The tasks.json document `doc`, parsed from `data`, checked."""
    check_backlog(doc, source=source)
    return ParsedBacklog(doc, hashlib.sha256(data).hexdigest(), unknown_statuses(doc))


def check_backlog(doc: Any, *, source: str) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("backlog"), list):
        raise InvalidInputError(f'{source}: not a backlog: expected an object with a "backlog" '
                                'array')
    seen: set[str] = set()
    stack: list[tuple[list[Any], str]] = [(doc["backlog"], "backlog")]
    while stack:
        items, where = stack.pop()
        for position, item in enumerate(items):
            here = f"{where}[{position}]"
            if not isinstance(item, dict):
                raise InvalidInputError(f"{source}: {here} is not an object")
            if not isinstance(item.get("id"), str) or not isinstance(item.get("type"), str):
                raise InvalidInputError(f'{source}: {here} needs string "id" and "type" fields')
            if item["id"] in seen:
                raise InvalidInputError(f"{source}: item id {item['id']!r} appears twice")
            seen.add(item["id"])
            key = child_key(item)
            if key is not None and key in item:
                if not isinstance(item[key], list):
                    raise InvalidInputError(f"{source}: {here}.{key} is not an array")
                stack.append((item[key], f"{here}.{key}"))


def unknown_statuses(doc: dict[str, Any]) -> dict[str, str]:
    """Items whose status is outside the vocabulary, by id (the first item of an id, as
    the index has it): one walk, without building an index nobody keeps."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    stack: list[list[Any]] = [doc["backlog"]]
    while stack:
        for item in stack.pop():
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                continue
            item_id = item["id"]
            if item_id not in seen:
                seen.add(item_id)
                status = item.get("status")
                if status not in STATUSES:
                    found[item_id] = repr(status) if not isinstance(status, str) else status
            kids = children_of(item)
            if kids is not None:
                stack.append(kids)
    return found


def import_event(parsed: ParsedBacklog, *, source: str) -> BacklogImported:
    return BacklogImported(backlog=parsed.doc, source=source, sha256=parsed.sha256)


def diff_backlogs(
    old: dict[str, Any], new: dict[str, Any], *, fallback: BacklogImported
) -> list[Event]:
    """Events that turn `old` into exactly `new`; `[fallback]` when only a re-import can."""
    try:
        events = _diff(old, new)
    except (_Unrepresentable, ValidationError):
        return [fallback]
    if not _reproduces(old, new, events):
        return [fallback]
    return events


class _Unrepresentable(Exception):  # noqa: N818 - internal control flow, never escapes
    pass


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    if [k for k in old if k != "backlog"] != [k for k in new if k != "backlog"] or any(
        _differs(old[k], new[k]) for k in old if k != "backlog"
    ):
        raise _Unrepresentable
    old_index = BacklogState(old).index
    new_index = BacklogState(new).index
    events: list[Event] = []

    # Removals first, top-most only: removing a parent takes its children with it.
    for item_id, (_, _, parent) in old_index.items():
        if item_id not in new_index and (parent is None or parent in new_index):
            events.append(ItemRemoved(item_id=item_id))

    for item_id, (item, siblings, parent) in _preorder(new):
        if item_id not in old_index:
            if parent is None or parent in old_index:
                position = next(i for i, s in enumerate(siblings) if s is item)
                after = siblings[position - 1]["id"] if position else None
                events.append(
                    ItemAdded(item=_json_copy(item), parent_id=parent, after_id=after)
                )
            continue
        old_item, _, old_parent = old_index[item_id]
        if old_parent != parent:
            raise _Unrepresentable  # a move; rare enough to re-import
        events.extend(_field_events(item_id, old_item, item))
    return events


def _preorder(
    doc: dict[str, Any],
) -> list[tuple[str, tuple[dict[str, Any], list[Any], str | None]]]:
    out: list[tuple[str, tuple[dict[str, Any], list[Any], str | None]]] = []

    def walk(siblings: list[Any], parent: str | None) -> None:
        for item in siblings:
            out.append((item["id"], (item, siblings, parent)))
            kids = children_of(item)
            if kids is not None:
                walk(kids, item["id"])

    walk(doc["backlog"], None)
    return out


def _field_events(item_id: str, old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    events: list[Event] = []
    kids = child_key(new)
    if child_key(old) != kids:
        raise _Unrepresentable  # the item changed level: its id means something else now
    current = {k: v for k, v in old.items() if k != kids}
    wanted = {k: v for k, v in new.items() if k != kids}
    status = wanted.get("status")
    if "status" in current and _differs(current["status"], status) and status in STATUSES:
        events.append(ItemStatusChanged(item_id=item_id, status=status))
        current["status"] = status
    removed = [k for k in current if k not in wanted]
    kept = [k for k in current if k in wanted]
    order = list(wanted)
    prefix = 0
    while prefix < len(kept) and kept[prefix] == order[prefix]:
        prefix += 1
    # The fold keeps surviving keys in place and appends new ones, so keys from the first
    # out-of-order one on are dropped and set again, in the new order.
    removed += kept[prefix:]
    changes = {k: wanted[k] for k in order[:prefix] if _differs(current[k], wanted[k])}
    changes.update({k: wanted[k] for k in order[prefix:]})
    if removed or changes:
        # Setting and dropping keep the children key where it was; a new key that must
        # come before it needs the order spelled out.
        folded = [k for k in old if k not in removed] + [
            k for k in changes if k not in old or k in removed
        ]
        keys = None if folded == list(new) else list(new)
        events.append(ItemUpdated(item_id=item_id, changes=changes, removed=removed, order=keys))
    return events


def _differs(a: Any, b: Any) -> bool:
    # Compare as JSON text: Python says 1 == True == 1.0, JSON files do not.
    return orjson.dumps(a) != orjson.dumps(b)


def _json_copy(value: Any) -> Any:
    """A deep copy of parsed JSON: a round trip through orjson is several times faster than
    copy.deepcopy on a big backlog (what is copied holds only JSON's types). An integer
    orjson cannot write (past 64 bits) falls back to deepcopy."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return copy.deepcopy(value)


def _reproduces(old: dict[str, Any], new: dict[str, Any], events: list[Event]) -> bool:
    projection = TasksProjection()
    state = BacklogState(_json_copy(old))
    for seq, event in enumerate(events, start=1):
        try:
            # Events the projection would refuse (an added item that breaks the schema)
            # cannot carry a real file's contents: the whole document is imported instead.
            projection.validate(state, event, "")
        except InvalidInputError:
            return False
        data = orjson.loads(orjson.dumps(event.model_dump(mode="json")))
        state = projection.fold(
            state,
            StoredEvent(seq, "", seq, event.type, data, {}, "", "", 1),
        )
    return orjson.dumps(state.doc) == orjson.dumps(new)


def read_recovery_file(data: bytes, *, source: str) -> tuple[ParsedBacklog, str | None] | None:
    """A legacy `tasks.json.failed` ({version, timestamp, sessionPath, pendingUpdates,
    error, pendingCount}) as (its pending backlog, its sessionPath); None if not one."""
    return recovery_of(parse_json(data, source=source), source=source)


def recovery_of(doc: Any, *, source: str) -> tuple[ParsedBacklog, str | None] | None:
    """`read_recovery_file` of a document already parsed."""
    if not (isinstance(doc, dict) and "pendingUpdates" in doc and "backlog" not in doc):
        return None
    pending = doc["pendingUpdates"]
    check_backlog(pending, source=f"{source} (pendingUpdates)")
    raw = orjson.dumps(pending)
    parsed = ParsedBacklog(pending, hashlib.sha256(raw).hexdigest(), unknown_statuses(pending))
    session_path = doc.get("sessionPath")
    return parsed, session_path if isinstance(session_path, str) else None
