"""tasks.json as a projection: faithful round trips on real files, folds, diffs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest

from support import INITIAL, MIXED, SESSION, TASKS_FILES, seed, tasks_of
from eventstore import Store
from eventstore.errors import InvalidInputError
from eventstore.events import (
    BacklogImported,
    ItemAdded,
    ItemRemoved,
    ItemStatusChanged,
    ItemUpdated,
)
from eventstore.jsonfmt import dumps, loads
from projections.backlog import BacklogState
from projections.imports import diff_backlogs, import_event, parse_backlog


def stringify_exact(data: bytes) -> bool:
    """Whether a file is byte-for-byte what JSON.stringify(doc, null, 2) writes.

    Python's json.dumps(indent=2, ensure_ascii=False) writes the same bytes as
    JSON.stringify for documents of strings, ints, bools and nulls (these files).
    """
    doc = json.loads(data)
    return json.dumps(doc, indent=2, ensure_ascii=False).encode() == data


def ordered(doc: object) -> bytes:
    """A document compared with its key order: equal bytes iff same keys, order, values."""
    return orjson.dumps(doc)


@pytest.mark.parametrize("source", TASKS_FILES, ids=lambda p: p.name)
def test_every_real_file_round_trips(store: Store, source: Path) -> None:
    """Import a real tasks.json, project with no new events: the same document, key order
    included; and the same bytes for files JSON.stringify wrote."""
    seed(store, "rt", source, "out/rt")
    result = tasks_of(store.project("rt"))
    written = result.path.read_bytes()
    original = source.read_bytes()
    assert ordered(loads(written)) == ordered(loads(original))
    if stringify_exact(original):
        assert written == original
    else:
        assert not written.endswith(b"\n")
        assert written == dumps(loads(original))


def test_the_stringify_exact_fixture_is_byte_identical(store: Store) -> None:
    """The named fixture of the issue (003_…c7994eb) comes back byte for byte."""
    assert stringify_exact(MIXED.read_bytes())
    seed(store, "mixed", MIXED, "out/mixed")
    result = tasks_of(store.project("mixed"))
    assert result.path.read_bytes() == MIXED.read_bytes()


def test_after_status_updates_only_those_statuses_differ(store: Store) -> None:
    """Three updates change three status values and nothing else in the document."""
    updates = {"P1.M1.T1.S1": "Complete", "P3.M2": "Implementing", "P5": "Obsolete"}
    session = store.session(SESSION)
    for item, status in updates.items():
        session.update_item_status(item, status)
    session.flush_updates()
    result = tasks_of(store.project(SESSION))
    before = BacklogState(loads(INITIAL.read_bytes())).index
    after = BacklogState(loads(result.path.read_bytes())).index
    assert list(after) == list(before)
    changed = {}
    for item_id, (item, _, _) in after.items():
        old = before[item_id][0]
        assert list(item) == list(old)
        diff = {k for k in item if item[k] != old[k] and k not in ("milestones", "tasks", "subtasks")}
        if diff:
            assert diff == {"status"}
            changed[item_id] = item["status"]
    assert changed == updates


def fold_all(events: list[object], doc: dict[str, object]) -> dict[str, object]:
    from eventstore.records import StoredEvent
    from projections.backlog import TasksProjection

    projection = TasksProjection()
    state = BacklogState(copy.deepcopy(doc))
    for seq, event in enumerate(events, start=1):
        data = orjson.loads(orjson.dumps(event.model_dump(mode="json")))  # type: ignore[attr-defined]
        state = projection.fold(state, StoredEvent(seq, "s", seq, event.type, data, {}, "", "", 1))  # type: ignore[attr-defined]
    assert state.doc is not None
    return state.doc


def small_backlog() -> dict[str, object]:
    return {
        "backlog": [
            {"type": "Phase", "id": "P1", "title": "one", "status": "Planned", "description": "", "milestones": [
                {"type": "Milestone", "id": "P1.M1", "title": "m", "status": "Planned", "description": "", "tasks": [
                    {"type": "Task", "id": "P1.M1.T1", "title": "t", "status": "Planned", "description": "", "subtasks": [
                        {"type": "Subtask", "id": "P1.M1.T1.S1", "title": "s1", "status": "Planned",
                         "story_points": 1, "dependencies": [], "context_scope": "x"},
                    ]},
                ]},
            ]},
        ]
    }


def test_item_added_goes_after_its_sibling_or_first() -> None:
    """after_id places the new item right after that sibling; no after_id puts it first."""
    s2 = {"type": "Subtask", "id": "P1.M1.T1.S2", "title": "s2", "status": "Planned"}
    s0 = {"type": "Subtask", "id": "P1.M1.T1.S0", "title": "s0", "status": "Planned"}
    doc = fold_all(
        [ItemAdded(item=s2, parent_id="P1.M1.T1", after_id="P1.M1.T1.S1"),
         ItemAdded(item=s0, parent_id="P1.M1.T1")],
        small_backlog(),
    )
    subtasks = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]  # type: ignore[index]
    assert [s["id"] for s in subtasks] == ["P1.M1.T1.S0", "P1.M1.T1.S1", "P1.M1.T1.S2"]


def test_item_added_with_children_and_as_a_phase() -> None:
    """A whole subtree can be added; parent_id null adds a phase."""
    phase = {"type": "Phase", "id": "P2", "title": "two", "status": "Planned", "milestones": [
        {"type": "Milestone", "id": "P2.M1", "title": "m", "status": "Planned", "tasks": []}]}
    doc = fold_all([ItemAdded(item=phase, parent_id=None, after_id="P1")], small_backlog())
    assert [p["id"] for p in doc["backlog"]] == ["P1", "P2"]  # type: ignore[union-attr]
    assert BacklogState(doc).item("P2.M1") is not None


def test_item_updated_sets_and_drops_fields_in_place() -> None:
    """Known fields change where they are; unknown ones are appended; removed ones vanish."""
    doc = fold_all(
        [ItemUpdated(item_id="P1.M1.T1.S1", changes={"title": "new", "owner": "bot"}, removed=["context_scope"])],
        small_backlog(),
    )
    item = BacklogState(doc).item("P1.M1.T1.S1")
    assert list(item) == ["type", "id", "title", "status", "story_points", "dependencies", "owner"]  # type: ignore[arg-type]
    assert item["title"] == "new"  # type: ignore[index]


def test_item_removed_takes_its_children() -> None:
    doc = fold_all([ItemRemoved(item_id="P1.M1")], small_backlog())
    assert BacklogState(doc).index.keys() == {"P1"}


def test_fold_skips_events_for_items_that_are_gone() -> None:
    """Replay is total: a status change for a removed item changes nothing."""
    doc = fold_all([ItemRemoved(item_id="P1.M1.T1.S1"), ItemStatusChanged(item_id="P1.M1.T1.S1", status="Complete")], small_backlog())
    assert "P1.M1.T1.S1" not in BacklogState(doc).index


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (ItemStatusChanged(item_id="P9", status="Complete"), "unknown item 'P9'"),
        (ItemUpdated(item_id="P9", changes={"title": "x"}), "unknown item 'P9'"),
        (ItemRemoved(item_id="P9"), "unknown item 'P9'"),
        (ItemAdded(item={"type": "Phase", "id": "P1"}, parent_id=None), "already exists"),
        (ItemAdded(item={"type": "Task", "id": "P1.M9.T1"}, parent_id="P1.M9"), "unknown parent"),
        (ItemAdded(item={"type": "X", "id": "P1.M1.T1.S1.Z"}, parent_id="P1.M1.T1.S1"), "cannot have children"),
        (ItemAdded(item={"type": "Phase", "id": "P7"}, parent_id=None, after_id="P1.M1"), "not a sibling"),
    ],
)
def test_events_that_do_not_fit_the_backlog_are_refused(store: Store, event: object, message: str) -> None:
    """Refused before anything is written (exit 2), naming the item and the session."""
    head = store.journal.head()
    with pytest.raises(InvalidInputError, match=message):
        store.append(SESSION, [event])  # type: ignore[list-item]
    assert store.journal.head() == head


def test_item_events_need_a_backlog_first(store: Store) -> None:
    """A session with no import yet has nothing to change."""
    store.create_session("empty", "out/empty")
    with pytest.raises(InvalidInputError, match="no backlog yet"):
        store.append("empty", [ItemStatusChanged(item_id="P1", status="Complete")])


def test_diff_of_a_hand_edit_is_the_smallest_event_set() -> None:
    """Status, field edits, key reorders, adds and removes: each becomes its event, and
    folding them reproduces the new document exactly."""
    old = small_backlog()
    new = copy.deepcopy(old)
    sub = new["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]  # type: ignore[index]
    sub[0]["status"] = "Complete"
    sub[0]["story_points"] = 3
    sub.append({"type": "Subtask", "id": "P1.M1.T1.S2", "title": "s2", "status": "Planned",
                "story_points": 2, "dependencies": [], "context_scope": (
                    "CONTRACT DEFINITION:\n1. RESEARCH NOTE: r\n2. INPUT: i\n3. LOGIC: l\n4. OUTPUT: o")})
    sub[0] = {k: sub[0][k] for k in ["type", "id", "title", "status", "dependencies", "context_scope", "story_points"]}
    new["backlog"][0]["title"] = "renamed"  # type: ignore[index]
    fallback = BacklogImported(backlog=new, source="x", sha256="0")
    events = diff_backlogs(old, new, fallback=fallback)
    assert [e.type for e in events] == ["ItemUpdated", "ItemStatusChanged", "ItemUpdated", "ItemAdded"]
    assert events[0].changes == {"title": "renamed"}  # type: ignore[attr-defined]
    assert events[2].removed == ["story_points", "dependencies", "context_scope"]  # type: ignore[attr-defined]
    assert ordered(fold_all(events, old)) == ordered(new)


def test_diff_falls_back_when_protected_keys_move() -> None:
    """id/type/children cannot be rewritten by ItemUpdated, so reordering them re-imports."""
    old = small_backlog()
    new = copy.deepcopy(old)
    new["backlog"][0] = {k: new["backlog"][0][k] for k in ["id", "type", "title", "status", "description", "milestones"]}  # type: ignore[index]
    fallback = BacklogImported(backlog=new, source="x", sha256="0")
    assert diff_backlogs(old, new, fallback=fallback) == [fallback]


def test_diff_falls_back_to_a_reimport_for_moves() -> None:
    """An item moved to another parent is re-imported whole rather than guessed at."""
    old = small_backlog()
    new = copy.deepcopy(old)
    task = new["backlog"][0]["milestones"][0]["tasks"].pop()  # type: ignore[index]
    new["backlog"].append({"type": "Phase", "id": "P2", "title": "", "status": "Planned", "milestones": [  # type: ignore[union-attr]
        {"type": "Milestone", "id": "P2.M1", "title": "", "status": "Planned", "tasks": [task]}]})
    fallback = BacklogImported(backlog=new, source="x", sha256="0")
    assert diff_backlogs(old, new, fallback=fallback) == [fallback]


def test_diff_of_identical_documents_is_empty() -> None:
    doc = loads(INITIAL.read_bytes())
    assert diff_backlogs(doc, copy.deepcopy(doc), fallback=BacklogImported(backlog=doc, source="", sha256="")) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a backlog"),
        (b'{"items": []}', "not a backlog"),
        (b'{"backlog": [1]}', "backlog[0] is not an object"),
        (b'{"backlog": [{"id": "P1"}]}', '"id" and "type"'),
        (b'{"backlog": [{"id": "P1", "type": "Phase", "milestones": {}}]}', "milestones is not an array"),
        (b'{"backlog": [{"id": "P1", "type": "Phase"}, {"id": "P1", "type": "Phase"}]}', "appears twice"),
    ],
)
def test_bad_backlog_files_are_named_and_explained(content: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_backlog(content, source="plan/x/tasks.json")
    assert str(caught.value).startswith("plan/x/tasks.json: ")
    assert message in str(caught.value)


def test_statuses_outside_the_vocabulary_are_kept_and_reported() -> None:
    """Import keeps whatever a real file holds; the caller is told which items."""
    parsed = parse_backlog(b'{"backlog": [{"id": "P1", "type": "Phase", "status": "InProgress"}]}', source="f")
    assert parsed.unknown_statuses == {"P1": "InProgress"}
    assert import_event(parsed, source="f").backlog["backlog"][0]["status"] == "InProgress"


def test_an_added_subtree_joins_a_built_index_as_a_rebuild_would_find_it() -> None:
    from eventstore.records import StoredEvent  # noqa: PLC0415
    from projections.backlog import BacklogState, TasksProjection  # noqa: PLC0415

    doc = orjson.loads(INITIAL.read_bytes())
    task = doc["backlog"][0]["milestones"][0]["tasks"][0]
    new_task = {**task, "id": "P1.M1.T99", "subtasks": [
        {**task["subtasks"][0], "id": "P1.M1.T99.S1"}, {**task["subtasks"][1], "id": "P1.M1.T99.S2"}]}
    projection = TasksProjection()
    state = projection.fold(projection.initial(), StoredEvent(
        1, "s", 1, "BacklogImported", {"backlog": doc, "source": "", "sha256": ""}, {}, "", "", 1))
    assert state.index  # built
    for seq, (parent, item) in enumerate([("P1.M1", new_task), ("P1.M1.T1", {
            **task["subtasks"][0], "id": "P1.M1.T1.S77"})], start=2):
        state = projection.fold(state, StoredEvent(
            seq, "s", seq, "ItemAdded", {"item": item, "parent_id": parent, "after_id": None},
            {}, "", "", 1))
        built = state.built_index()
        assert built is not None  # kept, not dropped
        rebuilt = BacklogState(state.doc).index
        assert {k: (id(v[0]), id(v[1]), v[2]) for k, v in built.items()} == {
            k: (id(v[0]), id(v[1]), v[2]) for k, v in rebuilt.items()}
    assert state.index["P1.M1.T99.S2"][2] == "P1.M1.T99"
