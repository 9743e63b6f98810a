"""The exported file known by its stat, and a few status changes patched into it (issue 15):
what the shortcuts skip (reading, hashing, joining the big file) and what they must never
skip (a hand edit, however it was made, is kept before the file is replaced)."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support import INITIAL, SESSION, seed, tasks_of

from eventstore import Store
from eventstore import runner as runner_module
from eventstore.atomic import write_atomic
from eventstore.errors import ExportError
from eventstore.events import ItemStatusChanged
from eventstore.sqlite import SQLiteJournal
from eventstore.retry import RetryPolicy
from projections import DEFAULT

if TYPE_CHECKING:
    from collections.abc import Iterator

EXPORTS = Path("plan") / SESSION


def _tasks(root: Path) -> Path:
    return root / EXPORTS / "tasks.json"


def _replayed(store: Store, root: Path) -> bytes:
    store.replay(SESSION, out=root / "replayed")
    return (root / "replayed" / "tasks.json").read_bytes()


def _status(store: Store, item_id: str = "P1.M1.T1.S1", status: str = "Complete") -> None:
    store.append(SESSION, [ItemStatusChanged(item_id=item_id, status=status)])


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the files the export reads whole (Path.read_bytes, file_sha256)."""
    seen: list[str] = []
    real_read, real_sha = Path.read_bytes, runner_module.file_sha256

    def read_bytes(self: Path) -> bytes:
        seen.append(self.name)
        return real_read(self)

    def file_sha256(path: Path) -> str | None:
        seen.append(path.name)
        return real_sha(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(runner_module, "file_sha256", file_sha256)
    yield seen


def _edit_in_place_keeping_size_and_mtime(path: Path) -> bytes:
    """What a careful hand (or tool) could do to hide an edit from size and mtime: write
    the same number of bytes over the file, then put its times back with os.utime."""
    before = path.stat()
    time.sleep(0.05)  # past the file system's clock tick, as any later edit would be
    data = path.read_bytes()
    edited = data.replace(b'"status": "Planned"', b'"status": "Xlanned"', 1)
    assert edited != data and len(edited) == len(data)
    with path.open("r+b") as handle:
        handle.write(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)
    if after.st_ctime_ns == before.st_ctime_ns:
        pytest.skip("this file system's ctime did not move in 50 ms")
    return edited


@pytest.mark.parametrize("new_events", [0, 1])
def test_an_edit_that_keeps_size_inode_and_mtime_is_still_kept(
    store: Store, project_dir: Path, new_events: int
) -> None:
    """Size, inode and mtime as exported: only the ctime, which os.utime cannot set back,
    tells. The edit is read, kept as a drift copy, and the file replaced by the journal's
    bytes, with or without new events (patch path or fold path)."""
    store.project(SESSION)
    path = _tasks(project_dir)
    edited = _edit_in_place_keeping_size_and_mtime(path)
    for _ in range(new_events):
        _status(store, "P1.M1.T1.S2", "Failed")
    (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    assert tasks.action == "written"
    (copy,) = path.parent.glob("tasks.json.drift-*")
    assert copy.read_bytes() == edited
    assert path.read_bytes() == _replayed(store, project_dir)


def test_nothing_new_is_answered_from_the_stat_without_reading_the_file(
    store: Store, project_dir: Path, reads: list[str]
) -> None:
    """No new event and the file as exported: `unchanged`, and tasks.json is not read (on
    a big backlog that read and its sha256 were most of a no-op `project`)."""
    store.project(SESSION)
    _status(store)
    store.project(SESSION)
    reads.clear()
    with Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT) as fresh:
        (tasks,) = [r for r in fresh.project(SESSION) if r.projection == "tasks"]
    assert (tasks.action, tasks.events_applied) == ("unchanged", 0)
    assert tasks.bytes == _tasks(project_dir).stat().st_size
    assert "tasks.json" not in reads


def test_a_metadata_change_alone_costs_one_read_and_no_copy(
    store: Store, project_dir: Path, reads: list[str]
) -> None:
    """A chmod moves the ctime and nothing else: the file is read once, found to be the
    export (`unchanged`, no drift copy), its new stat learnt, and not read again."""
    store.project(SESSION)
    path = _tasks(project_dir)
    time.sleep(0.05)
    path.chmod(0o600)
    reads.clear()
    (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    assert tasks.action == "unchanged"
    assert "tasks.json" in reads
    assert not list(path.parent.glob("tasks.json.drift-*"))
    assert store.journal.checkpoint("tasks", SESSION).exported_stat == runner_module.file_stat(path)  # type: ignore[union-attr]
    reads.clear()
    store.project(SESSION)
    assert "tasks.json" not in reads


def test_a_patched_export_is_written_in_parts_and_its_sha_recorded(project_dir: Path) -> None:
    """A status change is written as the last export's parts around the new status (never
    joined into one copy first), hashed on another thread meanwhile: the file is a
    replay's bytes and the recorded sha256 is the file's."""
    given: list[type] = []

    def write(path: Path, data: Any) -> None:
        if path.name == "tasks.json":
            given.append(type(data))
        write_atomic(path, data)

    journal = SQLiteJournal(project_dir / ".evstore" / "journal.db", create=True)
    with Store(journal, projections=DEFAULT, write_file=write) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        store.project(SESSION)
        for item, status in (("P1.M1.T1.S1", "Complete"), ("P1.M1.T1.S2", "Implementing")):
            _status(store, item, status)
            assert tasks_of(store.project(SESSION)).action == "written"
        data = _tasks(project_dir).read_bytes()
        checkpoint = store.journal.checkpoint("tasks", SESSION)
        assert checkpoint is not None
        assert checkpoint.exported_sha256 == hashlib.sha256(data).hexdigest()
        assert checkpoint.exported_stat == runner_module.file_stat(_tasks(project_dir))
        assert given == [bytes, list, list]  # the first export folds and renders
        assert data == _replayed(store, project_dir)


def test_a_status_set_to_what_it_was_is_not_written(store: Store, project_dir: Path) -> None:
    """A patch that changes no byte leaves the file alone (`unchanged`) and moves the
    position only."""
    store.project(SESSION)
    _status(store, "P1.M1.T1.S1", "Complete")
    store.project(SESSION)
    before = _tasks(project_dir).stat()
    _status(store, "P1.M1.T1.S1", "Complete")
    (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    assert (tasks.action, tasks.events_applied) == ("unchanged", 1)
    after = _tasks(project_dir).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert store.journal.checkpoint("tasks", SESSION).seq == store.journal.head()  # type: ignore[union-attr]


def test_an_edit_made_while_the_file_is_read_for_a_patch_is_kept(
    store: Store, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bytes a patch starts from are trusted only if the stat is the same after the
    read as before: an edit landing during the read sends the export down the fold path,
    which reads the edited file, keeps it as a drift copy and writes the journal's bytes."""
    store.project(SESSION)
    path = _tasks(project_dir)
    _status(store)
    real_read = Path.read_bytes
    edited: list[bytes] = []

    def read_then_edit(self: Path) -> bytes:
        data = real_read(self)
        if self == path and not edited:
            time.sleep(0.05)
            edited.append(data.replace(b'"status": "Planned"', b'"status": "Xlanned"', 1))
            with self.open("r+b") as handle:
                handle.write(edited[0])
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_edit)
    (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    monkeypatch.undo()
    assert tasks.action == "written"
    (copy,) = path.parent.glob("tasks.json.drift-*")
    assert copy.read_bytes() == edited[0]
    assert path.read_bytes() == _replayed(store, project_dir)


def test_a_failed_patched_write_moves_nothing_and_leaves_no_thread(project_dir: Path) -> None:
    """ENOSPC writing a patch: ExportError, the file and checkpoint as they were, the
    hashing thread gone; the next run writes the replay's bytes."""
    failing = {"on": False}

    def write(path: Path, data: Any) -> None:
        if failing["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        write_atomic(path, data)

    journal = SQLiteJournal(project_dir / ".evstore" / "journal.db", create=True)
    policy = RetryPolicy(retries=3, sleep=lambda _: None)
    with Store(journal, projections=DEFAULT, policy=policy, write_file=write) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        store.project(SESSION)
        before = (_tasks(project_dir).read_bytes(), store.journal.checkpoint("tasks", SESSION))
        threads = threading.active_count()
        _status(store)
        failing["on"] = True
        with pytest.raises(ExportError, match="ENOSPC"):
            store.project(SESSION)
        assert threading.active_count() == threads
        assert (_tasks(project_dir).read_bytes(), store.journal.checkpoint("tasks", SESSION)) == before
        failing["on"] = False
        assert tasks_of(store.project(SESSION)).action == "written"
        assert _tasks(project_dir).read_bytes() == _replayed(store, project_dir)
