"""What the peers' callers rely on (issue 13): the pending view, batches that honour backlog
dependencies, a batch without a backlog, Ralph's fix-history grammar."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support import SESSION, evstore_bin, snapshot

from eventstore import Store
from projections import DEFAULT
from projections.fix_tasks import record_failure

EXPORTS = Path("plan") / SESSION


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([evstore_bin(), *args], cwd=root, capture_output=True, text=True,  # noqa: S603
                          check=False, timeout=60)


def test_update_item_status_returns_the_backlog_as_it_will_be(store: Store, project_dir: Path) -> None:
    """The returned document and Session.view() carry every pending update, equal key for
    key (order included) to tasks.json after flush_updates() and project; the journal is
    untouched until the flush."""
    session = store.session(SESSION)
    head = store.journal.head()
    session.update_item_status("P1.M1.T1.S1", "Complete")
    returned = session.update_item_status("P1.M1.T1.S2", "Implementing")
    assert returned is not None
    assert store.journal.head() == head
    journal_doc = store.state(SESSION, "tasks").doc
    assert journal_doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] == "Planned"
    assert session.view() == returned
    session.flush_updates()
    store.project(SESSION)
    written = json.loads((project_dir / EXPORTS / "tasks.json").read_bytes())
    assert json.dumps(written) == json.dumps(returned)  # same keys, same order, same values


def test_batch_next_holds_items_whose_dependencies_are_not_complete(
    store: Store, project_dir: Path
) -> None:
    """S2 waits for S1 (Planned): `batch next` hands out S1, then the free P2 item, holds
    S2; once every remaining item is held it prints nothing and --json says why."""
    root = project_dir
    store.close()
    started = run(root, "batch", "start", "P1.M1.T1.S1", "P1.M1.T1.S2", "P2.M1.T1.S1",
                  "-s", SESSION, "--parallel", "3")
    assert started.returncode == 0, started.stderr
    assert run(root, "batch", "next", "-s", SESSION).stdout == "P1.M1.T1.S1\n"
    assert run(root, "batch", "next", "-s", SESSION).stdout == "P2.M1.T1.S1\n"
    before = snapshot(root)
    held = run(root, "batch", "next", "-s", SESSION)
    assert (held.returncode, held.stdout) == (0, "")
    assert snapshot(root) == before
    why = json.loads(run(root, "batch", "next", "-s", SESSION, "--json").stdout)
    assert why["item"] is None
    assert why["held"] == {"P1.M1.T1.S2": ["P1.M1.T1.S1"]}
    assert why["reason"] == "every remaining item waits on dependencies"
    status = run(root, "batch", "status", "-s", SESSION)
    assert "  held P1.M1.T1.S2: waits for P1.M1.T1.S1" in status.stdout.splitlines()
    assert run(root, "batch", "done", "P1.M1.T1.S1", "-s", SESSION).returncode == 0
    assert run(root, "append", "-s", SESSION, "P1.M1.T1.S1", "Complete").returncode == 0
    assert run(root, "batch", "next", "-s", SESSION).stdout == "P1.M1.T1.S2\n"


def test_a_batch_needs_no_backlog(tmp_path: Path) -> None:
    """A batch on a fresh project (wreckit keeps no tasks.json): `batch start` creates the
    session, its files go to the project root, and no tasks.json is written."""
    assert run(tmp_path, "init").returncode == 0
    started = run(tmp_path, "batch", "start", "001-test", "002-next", "--session", "wreckit")
    assert started.returncode == 0, started.stderr
    assert run(tmp_path, "batch", "next", "-s", "wreckit").stdout == "001-test\n"
    projected = run(tmp_path, "project", "--json")
    assert projected.returncode == 0, projected.stderr
    actions = {r["projection"]: r["action"] for r in json.loads(projected.stdout)}
    assert actions["tasks"] == "absent"
    assert actions["batch"] == "written"
    assert not (tmp_path / "tasks.json").exists()
    progress = json.loads((tmp_path / "batch-progress.json").read_bytes())
    assert progress["queued_items"] == ["001-test", "002-next"]
    assert progress["current_item"] == "001-test"


def test_batch_start_places_a_new_session_with_export_dir(tmp_path: Path) -> None:
    """--export-dir names where a new session's batch-progress.json goes."""
    assert run(tmp_path, "init").returncode == 0
    done = run(tmp_path, "batch", "start", "a", "-s", "w", "--export-dir", ".wreckit")
    assert done.returncode == 0, done.stderr
    assert run(tmp_path, "project").returncode == 0
    assert (tmp_path / ".wreckit" / "batch-progress.json").is_file()


def test_fix_history_says_one_fix_in_the_singular(store: Store, project_dir: Path) -> None:
    """Ralph's line for one fix: `1 fix attempted`; two or more: `fixes`."""
    record_failure(store, SESSION, "P1.M1.T1.S1", "tests failed")
    record_failure(store, SESSION, "P1.M1.T1.S2", "lint failed")
    record_failure(store, SESSION, "P1.M1.T1.S2", "lint failed again")
    store.project(SESSION)
    lines = (project_dir / EXPORTS / "fix-history.md").read_text().splitlines()
    assert lines[2:] == [
        "- Task P1.M1.T1.S1: 1 fix attempted (P1.M1.T1.S5) - Final: PENDING",
        "- Task P1.M1.T1.S2: 2 fixes attempted (P1.M1.T1.S6, P1.M1.T1.S7) - Final: PENDING",
    ]


def test_view_of_a_session_without_backlog_is_none(tmp_path: Path) -> None:
    """A batch-only session has no backlog document to view."""
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "batch", "start", "a", "-s", "w").returncode == 0
    with Store.open(tmp_path / ".evstore" / "journal.db", projections=DEFAULT) as store:
        assert store.session("w").view() is None


def _milestone_with_stray_subtasks(doc: dict) -> dict:  # type: ignore[type-arg]
    milestone = doc["backlog"][0]["milestones"][0]
    keys = list(milestone)
    at = keys.index("tasks")
    items = list(milestone.items())
    items.insert(at, ("subtasks", []))
    doc["backlog"][0]["milestones"][0] = dict(items)
    return doc


def test_import_of_a_changed_file_is_item_by_item_with_stray_child_keys(
    store: Store, project_dir: Path
) -> None:
    """A Milestone's stray `subtasks` key is a plain field: a version that drops it and
    moves a status imports as per-item events (no snapshot), so history has the step."""
    from support import INITIAL  # noqa: PLC0415

    from projections.importer import import_file  # noqa: PLC0415

    doc = json.loads(INITIAL.read_bytes())
    stray = project_dir / "stray.json"
    stray.write_text(json.dumps(_milestone_with_stray_subtasks(doc), indent=2))
    first = import_file(store, stray, SESSION, None)
    # The schema says a Milestone holds no `subtasks`: the file is kept as it is, warned
    # about, and (as no event may add such a key) imported whole.
    assert any('has "subtasks"' in w and "kept as is" in w for w in first.warnings)
    doc = json.loads(INITIAL.read_bytes())
    doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] = "Complete"
    later = project_dir / "later.json"
    later.write_text(json.dumps(doc, indent=2))
    second = import_file(store, later, SESSION, None)
    assert not any("snapshot" in w for w in second.warnings)
    events = store.read(SESSION, after=second.first_seq - 1)
    assert [(e.type, e.data.get("item_id")) for e in events] == [
        ("ItemUpdated", "P1.M1"), ("ItemStatusChanged", "P1.M1.T1.S1"),
    ]
    assert events[0].data["removed"] == ["subtasks"]
    assert store.state(SESSION, "tasks").doc == doc


def test_a_snapshot_import_says_so(store: Store, project_dir: Path) -> None:
    """An item moved to another parent cannot be told item by item: the import falls back
    to a snapshot and warns."""
    from support import INITIAL  # noqa: PLC0415

    from projections.importer import import_file  # noqa: PLC0415

    doc = json.loads(INITIAL.read_bytes())
    tasks = doc["backlog"][0]["milestones"][0]["tasks"]
    moved = tasks[0]["subtasks"].pop()
    tasks[1]["subtasks"].append(moved)
    path = project_dir / "moved.json"
    path.write_text(json.dumps(doc, indent=2))
    outcome = import_file(store, path, SESSION, None)
    assert [e.type for e in store.read(SESSION, after=outcome.first_seq - 1)] == ["BacklogImported"]
    assert any("imported as a whole new snapshot" in w for w in outcome.warnings)


def test_item_updated_may_not_touch_the_level_child_key(store: Store) -> None:
    """ItemUpdated on a Milestone never touches its `tasks`, nor adds a `subtasks` the
    schema does not give a Milestone (dropping a stray one is what the import test does)."""
    import pytest  # noqa: PLC0415

    from eventstore.errors import InvalidInputError  # noqa: PLC0415
    from eventstore.events import ItemUpdated  # noqa: PLC0415

    head = store.journal.head()
    with pytest.raises(InvalidInputError, match="cannot change tasks of 'P1.M1'"):
        store.append(SESSION, [ItemUpdated(item_id="P1.M1", removed=["tasks"])])
    assert store.journal.head() == head
    with pytest.raises(InvalidInputError, match='has "subtasks", which a Milestone does not hold'):
        store.append(SESSION, [ItemUpdated(item_id="P1.M1", changes={"subtasks": []})])
    assert store.journal.head() == head
