"""Checkpoints that cost little on a big backlog (issue 15): the folded state is saved only
every SNAPSHOT_EVERY events, the exported file is recognised by its stat instead of being
read again, and a status change finds its item along its id instead of an index."""

from __future__ import annotations

import os
import random
import sqlite3
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from support import INITIAL, SESSION

from eventstore import Store
from eventstore.events import ItemStatusChanged
from eventstore.runner import SNAPSHOT_EVERY
from projections import DEFAULT
from projections.backlog import BacklogState, TasksProjection

EXPORTS = Path("plan") / SESSION


def snapshot_seq(root: Path) -> int:
    with closing(sqlite3.connect(root / ".evstore" / "journal.db")) as db:
        (seq,) = db.execute(
            "SELECT seq FROM checkpoint_states WHERE projection = 'tasks' AND stream = ?", (SESSION,)
        ).fetchone()
    return int(seq)


def test_the_state_is_saved_every_snapshot_interval_not_every_export(store: Store, project_dir: Path) -> None:
    """One event, one export: the position moves, the saved state stays where it was;
    the file is still exactly what a full replay writes; after SNAPSHOT_EVERY events the
    state is saved again."""
    store.project(SESSION)
    first = snapshot_seq(project_dir)
    store.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S1", status="Complete")])
    (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    assert (tasks.action, tasks.events_applied) == ("written", 1)
    assert snapshot_seq(project_dir) == first
    assert store.journal.checkpoint("tasks", SESSION).seq == tasks.seq  # type: ignore[union-attr]
    again = [r for r in store.project(SESSION) if r.projection == "tasks"]
    assert (again[0].action, again[0].events_applied) == ("unchanged", 0)  # nothing new, as before
    replayed = store.replay(SESSION, out=project_dir / "replayed")
    assert replayed
    written = (project_dir / EXPORTS / "tasks.json").read_bytes()
    assert written == (project_dir / "replayed" / "tasks.json").read_bytes()
    statuses = ["Implementing", "Complete"]
    store.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S2", status=statuses[n % 2])
                           for n in range(SNAPSHOT_EVERY)])
    store.project(SESSION)
    assert snapshot_seq(project_dir) == store.journal.head()


def test_a_fresh_process_resumes_from_an_older_snapshot(store: Store, project_dir: Path) -> None:
    """A new Store (a new `evstore` process) folds the events since the snapshot and
    reports only those since the last export."""
    store.project(SESSION)
    for item in ("P1.M1.T1.S1", "P1.M1.T1.S2"):
        store.append(SESSION, [ItemStatusChanged(item_id=item, status="Complete")])
        store.project(SESSION)
    store.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S3", status="Complete")])
    with Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT) as fresh:
        (tasks,) = [r for r in fresh.project(SESSION) if r.projection == "tasks"]
        assert (tasks.action, tasks.events_applied) == ("written", 1)
        doc = fresh.state(SESSION, "tasks").doc
    subtasks = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]
    assert [s["status"] for s in subtasks[:3]] == ["Complete"] * 3


def test_a_file_touched_but_not_changed_is_read_once_and_left(store: Store, project_dir: Path) -> None:
    """A new mtime with the same bytes is no edit: no drift copy, `unchanged`; the
    checkpoint learns the new stat."""
    store.project(SESSION)
    path = project_dir / EXPORTS / "tasks.json"
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    assert tasks.action == "unchanged"
    assert not list(path.parent.glob("tasks.json.drift-*"))
    info = path.stat()
    stat = f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}:{info.st_ctime_ns}"
    assert store.journal.checkpoint("tasks", SESSION).exported_stat == stat  # type: ignore[union-attr]


def test_an_edit_of_the_same_size_is_still_noticed(store: Store, project_dir: Path) -> None:
    """Same size, new mtime: read again, found edited, kept as a drift copy."""
    store.project(SESSION)
    path = project_dir / EXPORTS / "tasks.json"
    data = path.read_bytes()
    edited = data.replace(b'"status": "Planned"', b'"status": "Xlanned"', 1)
    assert len(edited) == len(data)
    path.write_bytes(edited)
    store.append(SESSION, [ItemStatusChanged(item_id="P1", status="Implementing")])
    store.project(SESSION)
    (copy,) = path.parent.glob("tasks.json.drift-*")
    assert copy.read_bytes() == edited


def _ids(doc: dict) -> list[str]:  # type: ignore[type-arg]
    return list(BacklogState(doc).index)


def test_lookup_along_the_id_gives_what_the_index_gives() -> None:
    """On the real backlog, every id (and ids that are not there) finds the same item,
    sibling list and parent along its path as through the index."""
    doc = orjson.loads(INITIAL.read_bytes())
    indexed = BacklogState(doc)
    along = TasksProjection().load_state(TasksProjection().dump_state(indexed))
    assert along.unique_ids is True
    present = _ids(doc)
    for item_id in random.Random(5).sample(present, len(present)):
        found = along.find(item_id)
        expected = indexed.index[item_id]
        assert found is not None
        assert found[0] == expected[0]
        assert found[2] == expected[2]
    assert along._index is None  # noqa: SLF001 - the index was never needed
    for missing in ("P9", "P1.M9.T1", "P1.M1.T1.S99", "X", ""):
        assert along.find(missing) is None  # not along its path: the index says so too


def test_duplicate_ids_fall_back_to_the_index() -> None:
    """A document holding an id twice is never searched along paths: the index decides,
    as it always did."""
    doc = orjson.loads(INITIAL.read_bytes())
    subtasks = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]
    subtasks.append(dict(subtasks[0], title="the same id again"))
    state = TasksProjection().load_state(TasksProjection().dump_state(BacklogState(doc)))
    assert state.unique_ids is False
    found = state.find(subtasks[0]["id"])
    assert found is not None
    assert state._index is not None  # noqa: SLF001


@pytest.mark.parametrize("events", [1, 3])
def test_project_after_a_status_change_matches_a_replay(store: Store, project_dir: Path, events: int) -> None:
    """However the state is resumed, the exported bytes are the replay's."""
    store.project(SESSION)
    for n in range(events):
        store.append(SESSION, [ItemStatusChanged(item_id=f"P1.M1.T1.S{n + 1}", status="Failed")])
    with Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT) as fresh:
        fresh.project(SESSION)
        fresh.replay(SESSION, out=project_dir / "again")
    assert (project_dir / EXPORTS / "tasks.json").read_bytes() == (project_dir / "again" / "tasks.json").read_bytes()
