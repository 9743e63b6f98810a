"""Validation from lookup entries (docs/design.md §3): one update is checked without
loading the session's state, and the entries always agree with the state they stand for.

Every test uses a real journal file and, where it says "a fresh process", a new Store
(nothing in memory), which is what one `evstore append` is.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import INITIAL, SESSION, evstore_bin, seed, snapshot

from eventstore import Store
from eventstore.errors import InvalidInputError
from eventstore.events import (
    BacklogImported,
    ItemAdded,
    ItemRemoved,
    ItemStatusChanged,
    ItemUpdated,
    SessionCreated,
)
from projections import DEFAULT
from projections.backlog import TasksProjection

TASKS = TasksProjection()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    with Store.open(tmp_path / ".evstore" / "journal.db", projections=DEFAULT, create=True) as s:
        seed(s, SESSION, INITIAL, str(tmp_path))
    return tmp_path


def fresh(project: Path) -> Store:
    return Store.open(project / ".evstore" / "journal.db", projections=DEFAULT)


def table(project: Path) -> tuple[bool, dict[str, Any]]:
    """(whether marked current, every other entry) of the tasks projection, read with
    sqlite3 itself."""
    with sqlite3.connect(project / ".evstore" / "journal.db") as conn:
        rows = conn.execute(
            "SELECT key, entry FROM lookups WHERE projection = 'tasks' AND stream = ?", (SESSION,)
        ).fetchall()
    entries = {key: orjson.loads(entry) for key, entry in rows}
    return entries.pop("", None) is not None, entries


def agrees_with_the_state(project: Path) -> None:
    with fresh(project) as store:
        state = store.state(SESSION, "tasks")
        expected = TASKS.lookup_entries(state, None)
    assert table(project) == (True, expected)


def status(item: str, value: str = "Complete") -> ItemStatusChanged:
    return ItemStatusChanged(item_id=item, status=value)  # type: ignore[arg-type]


def test_import_writes_every_entry_in_its_own_transaction(project: Path) -> None:
    current, entries = table(project)
    assert current
    assert entries["doc"] == 1
    assert entries["item:P1.M1.T1.S1"] == [3, "P1.M1.T1"]
    assert entries["item:P1"] == [0, None]
    agrees_with_the_state(project)


def test_a_fresh_process_validates_a_status_update_without_loading_any_state(
    project: Path,
) -> None:
    with fresh(project) as store:
        store.append(SESSION, [status("P1.M1.T1.S1")])
        assert store._live == {}  # noqa: SLF001 - the proof: no state was folded or loaded
        with pytest.raises(InvalidInputError, match="unknown item 'P9.M9' in session"):
            store.append(SESSION, [status("P9.M9")])
        assert store._live == {}  # noqa: SLF001
    assert table(project)[1]["item:P1.M1.T1.S1"] == [3, "P1.M1.T1"]
    agrees_with_the_state(project)


def test_the_lookup_and_the_state_refuse_with_the_same_words(tmp_path: Path) -> None:
    """No backlog yet, and an unknown item: the same message from either path."""
    with Store.open(tmp_path / "j.db", projections=DEFAULT, create=True) as store:
        store.append("s", [SessionCreated(export_dir=str(tmp_path))])
    messages = []
    for warm in (False, True):
        with Store.open(tmp_path / "j.db", projections=DEFAULT) as store:
            if warm:
                store.state("s", "tasks")  # the states in memory: validation uses them
            with pytest.raises(InvalidInputError) as caught:
                store.append("s", [status("P1")])
            messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "has no backlog yet" in messages[0]


def test_entries_follow_adds_updates_and_removals_from_any_path(project: Path) -> None:
    real = orjson.loads(INITIAL.read_bytes())["backlog"][0]["milestones"][0]["tasks"][0]
    added = {**real["subtasks"][0], "id": "P1.M1.T1.S99", "status": "Planned"}
    steps: list[list[Any]] = [
        [ItemAdded(parent_id="P1.M1.T1", item=added)],
        [status("P1.M1.T1.S99", "Implementing"), status("P1.M1.T1.S1", "Failed")],
        [ItemUpdated(item_id="P1.M1.T1.S2", changes={"status": "Complete"})],
        [ItemRemoved(item_id="P1.M1.T2")],
        [status("P1.M1.T1.S99")],
    ]
    for number, events in enumerate(steps):
        with fresh(project) as store:
            if number % 2:
                store.state(SESSION, "tasks")  # warm: the state path keeps them too
            store.append(SESSION, events)
        agrees_with_the_state(project)
    _, entries = table(project)
    assert "item:P1.M1.T2" not in entries
    assert not any(key.startswith("item:P1.M1.T2.") for key in entries)
    with fresh(project) as store, pytest.raises(InvalidInputError, match="unknown item"):
        store.append(SESSION, [status("P1.M1.T2.S1")])


def test_entries_left_behind_are_not_trusted_and_are_rebuilt(project: Path) -> None:
    """An append that did not keep them (a raw journal append) takes the mark off: the
    next validated append checks against the state, then rebuilds them."""
    with fresh(project) as store:
        store.journal.append(SESSION, [ItemRemoved(item_id="P1.M1.T1.S1")])
    assert not table(project)[0]  # that append took the mark off
    with fresh(project) as store, pytest.raises(InvalidInputError, match="unknown item"):
        store.append(SESSION, [status("P1.M1.T1.S1")])  # the entry still says it exists
    with fresh(project) as store:
        store.append(SESSION, [status("P1.M1.T1.S2")])
    agrees_with_the_state(project)
    assert "item:P1.M1.T1.S1" not in table(project)[1]


def test_a_refused_append_writes_no_entry(project: Path) -> None:
    before = snapshot(project / ".evstore")
    with fresh(project) as store, pytest.raises(InvalidInputError):
        store.append(SESSION, [status("P1.M1.T1.S1"), status("nope")])
    assert snapshot(project / ".evstore") == before


def test_repeated_ids_leave_validation_to_the_state(project: Path) -> None:
    """Import refuses an id that names two items; a journal written without validation
    (an older evstore, a raw append) may still hold one. Then no entries are kept."""
    doc = orjson.loads(INITIAL.read_bytes())
    doc["backlog"].append(doc["backlog"][0])  # P1 twice
    with fresh(project) as store:
        store.journal.append(SESSION, [BacklogImported(backlog=doc, source="hand-made", sha256="0" * 64)])
        store.append(SESSION, [status("P1.M1.T1.S1")])
    assert table(project) == (False, {})
    with fresh(project) as store:
        store.append(SESSION, [status("P1.M1.T1.S2")])
        with pytest.raises(InvalidInputError, match="unknown item"):
            store.append(SESSION, [status("P9")])


def test_an_older_journal_gains_its_entries_on_the_first_append(project: Path) -> None:
    db = project / ".evstore" / "journal.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("DROP TABLE lookups; PRAGMA user_version=5;")
    with fresh(project) as store:
        assert store.journal.schema_version == 5
        store.append(SESSION, [status("P1.M1.T1.S1")])
    with fresh(project) as store:
        assert store.journal.schema_version == 6
    agrees_with_the_state(project)


def test_the_command_refuses_an_unknown_item_from_the_entries(project: Path) -> None:
    run = [evstore_bin(), "--db", str(project / ".evstore" / "journal.db")]
    ok = subprocess.run([*run, "append", "--session", SESSION, "P1.M1.T1.S1", "Complete"],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*run, "append", "--session", SESSION, "P1.M1.T1.S404", "Complete"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        f"evstore: error: unknown item 'P1.M1.T1.S404' in session '{SESSION}'"
    )
    agrees_with_the_state(project)
