"""`evstore doctor` (docs/design.md §10): each problem is made for real, reported by a check that
changes nothing, then repaired by --fix without losing a byte.

For every code: the condition on disk (a corrupted page, a version-1 journal, an event not
exported, a deleted or edited file, a garbage batch-progress.json, a batch whose owner
died 25 h ago, a temp file with an old mtime, a legacy tasks.json.failed); `doctor` exits
1 naming it with every file as it was; `doctor --fix` exits 0 and what was set aside is
byte-identical in lost+found or in the drift copy, and the journal holds every event it
held plus the expected new ones. Time is never slept: file mtimes are set with os.utime,
old batches are recorded through a journal clock 25 h behind, and the library's clock is
injected where a test needs a fixed one.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from support import INITIAL, SESSION, seed, snapshot

from eventstore import Store, schema
from eventstore.events import ItemStatusChanged
from eventstore.records import utc_now
from eventstore.jsonfmt import loads
from projections import DEFAULT
from projections.batch_runs import BatchRun
from projections.doctor import (
    BATCH_PROGRESS_CORRUPT,
    JOURNAL_CORRUPT,
    JOURNAL_SCHEMA_OUTDATED,
    LEGACY_RECOVERY_FILE,
    ORPHAN_TEMP_FILE,
    PROJECTION_DRIFT,
    PROJECTION_MISSING,
    PROJECTION_STALE,
    STALE_BATCH_PROGRESS,
    Doctor,
)

Cli = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]

TASKS = Path("plan") / SESSION / "tasks.json"
PROGRESS = Path("plan") / SESSION / "batch-progress.json"
LOST = Path(".evstore") / "lost+found"
ITEMS = ["P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T1.S3"]
TEMP = ".tasks.json.0123456789abcdef.tmp"  # eventstore.atomic.temp_name's pattern
LATEST = schema.latest_version("sqlite")
WHERE = f"(journal .evstore/journal.db, schema {LATEST}, 1 session)"


# --- helpers ------------------------------------------------------------------------------------


def db_path(root: Path) -> Path:
    return root / ".evstore" / "journal.db"


def stable(root: Path) -> dict[str, bytes]:
    """Every file under `root` but SQLite's -shm index (a cache readers may touch)."""
    return {k: v for k, v in snapshot(root).items() if not k.endswith("-shm")}


def events(root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every event, in seq order, read with plain sqlite3."""
    con = sqlite3.connect(db_path(root))
    try:
        return [(t, json.loads(d)) for t, d in con.execute("SELECT type, data FROM events ORDER BY seq")]
    finally:
        con.close()


def user_version(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def doctor_json(cli: Cli, *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("doctor", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def codes(report: dict[str, Any]) -> list[str]:
    return [p["code"] for p in report["problems"]]


def reaped_pid() -> int:
    """The pid of a process that has exited and been reaped: a dead owner."""
    proc = subprocess.Popen(["true"])
    proc.wait(timeout=30)
    return proc.pid


def open_store(root: Path, **kwargs: Any) -> Store:
    return Store.open(db_path(root), projections=DEFAULT, **kwargs)


def checked_then_fixed(cli: Cli, root: Path, code: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """`doctor` reports exactly `code` (exit 1) and changes nothing; `doctor --fix` exits 0,
    reports it fixed, and a second `doctor` finds the project healthy."""
    before = stable(root)
    status, found = doctor_json(cli)
    assert status == 1, found
    assert codes(found) == [code]
    assert found["healthy"] is False
    assert found["problems"][0]["fixable"] is True
    assert found["problems"][0]["fixed"] is False
    assert stable(root) == before, "a check must not change any file"
    status, fixed = doctor_json(cli, "--fix")
    assert status == 0, fixed
    assert fixed["healthy"] is True
    assert [(p["code"], p["fixed"]) for p in fixed["problems"]] == [(code, True)]
    again = cli("doctor")
    assert again.exit_code == 0, again.stdout
    assert again.stdout.startswith("healthy: no problems")
    return found, fixed


@pytest.fixture
def project(project_dir: Path) -> Path:
    """A journal with the real backlog as SESSION, exported: a healthy project."""
    with open_store(project_dir, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        store.project()
    return project_dir


# --- healthy, missing journal, help ------------------------------------------------------------


def test_a_healthy_project_exits_0_and_says_so(project: Path, cli: Cli) -> None:
    human = cli("doctor")
    assert human.exit_code == 0
    assert human.stdout == f"healthy: no problems {WHERE}\n"
    status, report = doctor_json(cli)
    assert status == 0
    assert report["healthy"] is True
    assert report["problems"] == []
    assert report["sessions"] == [SESSION]
    assert report["schema_version"] == report["latest_schema_version"] == LATEST
    assert report["journal"] == str(db_path(project))
    before = stable(project)
    assert cli("doctor", "--fix").exit_code == 0
    assert stable(project) == before


def test_no_journal_exits_5_as_other_commands_do(project_dir: Path, cli: Cli) -> None:
    result = cli("doctor")
    assert result.exit_code == 5
    assert result.stderr.startswith("evstore: error: no .evstore/ in ")
    assert result.stderr.count("\n") == 1
    elsewhere = cli("--db", "nowhere.db", "doctor", "--fix")
    assert elsewhere.exit_code == 5
    assert elsewhere.stderr == (
        "evstore: error: no journal at nowhere.db: run `evstore init` in the project root, or pass --db\n"
    )
    assert not (project_dir / "nowhere.db").exists()


def test_a_journal_from_a_newer_evstore_exits_5_untouched(project: Path, cli: Cli) -> None:
    with sqlite3.connect(db_path(project)) as raw:
        raw.execute("PRAGMA user_version=9")
    before = stable(project)
    result = cli("doctor", "--fix")
    assert result.exit_code == 5
    assert f"schema version 9, newer than this evstore supports ({LATEST})" in result.stderr
    assert stable(project) == before


def test_help_lists_every_code_and_the_json_fields(cli: Cli) -> None:
    text = cli("doctor", "--help").stdout
    for code in (JOURNAL_CORRUPT, JOURNAL_SCHEMA_OUTDATED, PROJECTION_STALE, PROJECTION_MISSING,
                 PROJECTION_DRIFT, BATCH_PROGRESS_CORRUPT, STALE_BATCH_PROGRESS, ORPHAN_TEMP_FILE,
                 LEGACY_RECOVERY_FILE):
        assert code in text
    for name in ("healthy", "problems", "fixable", "fixed", "remedy", "outcome", "Example:", "evstore doctor --fix"):
        assert name in text


# --- the journal ---------------------------------------------------------------------------------


def corrupt_a_page(path: Path) -> int:
    """Overwrite the cell pointers in the middle of a real table leaf page (type byte 13):
    the header and schema stay readable, the b-tree does not. Returns the page number."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    leaves = [n for n in range(1, len(data) // page_size) if data[n * page_size] == 13]
    assert leaves, "the journal has no table leaf page past page 1"
    page = leaves[len(leaves) // 2]
    start = page * page_size + 8
    data[start:start + 64] = b"\xff" * 64
    path.write_bytes(data)
    return page + 1


def test_corrupt_journal_is_reported_and_never_touched(project: Path, cli: Cli) -> None:
    with open_store(project) as store:  # enough events for several leaf pages
        for n in range(150):
            store.append(SESSION, [ItemStatusChanged(item_id="P1", status="Complete" if n % 2 else "Planned")])
    page = corrupt_a_page(db_path(project))
    before = stable(project)
    status, report = doctor_json(cli)
    assert status == 1
    (problem,) = report["problems"]
    assert problem["code"] == JOURNAL_CORRUPT
    # SQLite names the page, or (when the damage stops its walk) says the image is malformed.
    assert problem["message"].startswith("journal .evstore/journal.db fails its integrity check: ")
    assert f"page {page}" in problem["message"] or "malformed" in problem["message"]
    assert problem["fixable"] is False
    assert "backup" in problem["remedy"]
    assert report["skipped"] == ["every other check: the journal cannot be trusted"]
    human = cli("doctor", "--fix")
    assert human.exit_code == 1
    first = human.stdout.splitlines()[0]
    assert first.startswith("JOURNAL_CORRUPT  journal .evstore/journal.db fails its integrity check: ")
    assert "(not fixable: restore " in first
    assert stable(project) == before


def test_a_journal_that_is_not_sqlite_is_corrupt(project: Path, cli: Cli) -> None:
    db_path(project).write_bytes(b"these are not the pages you are looking for" * 200)
    status, report = doctor_json(cli, "--fix")
    assert status == 1
    assert codes(report) == [JOURNAL_CORRUPT]
    assert report["problems"][0]["message"] == "journal .evstore/journal.db is not an SQLite database"


def test_outdated_journal_is_migrated_and_then_checked(project_dir: Path, cli: Cli, tmp_path: Path) -> None:
    """A journal at user_version 1 (the first schema block, events only) holding a real
    session: the check reports it and leaves it at version 1; --fix migrates it, then finds
    and fixes what the migration lets it see (tasks.json deleted: missing)."""
    source = tmp_path / "source.db"
    with Store.open(source, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        store.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S1", status="Complete")])
    old = db_path(project_dir)
    old.parent.mkdir()
    raw = sqlite3.connect(old)
    raw.execute("PRAGMA journal_mode=WAL")
    for statement in schema.migrations("sqlite")[0][1]:
        raw.execute(statement)
    raw.execute("PRAGMA user_version=1")
    raw.execute("ATTACH DATABASE ? AS src", (str(source),))
    columns = "seq, stream, version, type, data, meta, recorded_at, event_id, schema_version"
    raw.execute(f"INSERT INTO events SELECT {columns} FROM src.events")  # noqa: S608 - version 1's
    raw.commit()
    raw.execute("DETACH DATABASE src")
    raw.close()
    held = events(project_dir)
    assert len(held) == 3
    (project_dir / TASKS).unlink()

    before = stable(project_dir)
    status, report = doctor_json(cli)
    assert status == 1
    assert codes(report) == [JOURNAL_SCHEMA_OUTDATED]
    assert report["problems"][0]["message"] == (
        f"journal .evstore/journal.db has schema version 1; this evstore uses {LATEST}"
    )
    assert report["schema_version"] == 1
    (skipped,) = report["skipped"]
    assert "checked once the journal is migrated" in skipped
    assert stable(project_dir) == before
    assert user_version(old) == 1

    status, fixed = doctor_json(cli, "--fix")
    assert status == 0, fixed
    assert [(p["code"], p["fixed"]) for p in fixed["problems"]] == [
        (JOURNAL_SCHEMA_OUTDATED, True), (PROJECTION_MISSING, True),
    ]
    assert fixed["schema_version"] == LATEST
    assert user_version(old) == LATEST
    assert events(project_dir) == held
    doc = loads((project_dir / TASKS).read_bytes())
    assert doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] == "Complete"
    assert cli("doctor").exit_code == 0


# --- projections -----------------------------------------------------------------------------------


def test_an_event_not_exported_is_stale_and_export_fixes_it(project: Path, cli: Cli) -> None:
    with open_store(project) as store:
        store.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S1", status="Complete")])
        held = events(project)
        expected = store.replay(SESSION, out=project / "expected")
    found, fixed = checked_then_fixed(cli, project, PROJECTION_STALE)
    (problem,) = found["problems"]
    assert problem["path"] == str(project / TASKS)
    assert problem["session"] == SESSION
    assert problem["message"] == (
        f"{TASKS} (session {SESSION}) is behind the journal (checkpoint at seq 2, session head at seq 3)"
    )
    assert fixed["problems"][0]["outcome"] == "exported (written, seq 3)"
    assert (project / TASKS).read_bytes() == (project / "expected" / "tasks.json").read_bytes()
    assert expected
    assert events(project) == held  # an export appends nothing


def test_a_deleted_file_is_missing_and_exported_again(project: Path, cli: Cli) -> None:
    original = (project / TASKS).read_bytes()
    (project / TASKS).unlink()
    found, _ = checked_then_fixed(cli, project, PROJECTION_MISSING)
    assert found["problems"][0]["message"] == f"{TASKS} (session {SESSION}) is missing (last exported at seq 2)"
    assert (project / TASKS).read_bytes() == original


def test_a_directory_in_place_of_a_file_is_reported_and_left_alone(project: Path, cli: Cli) -> None:
    """`project` cannot write tasks.json over a directory (exit 4), so doctor may not call
    the project healthy; what is in the directory is someone's, so --fix leaves it."""
    (project / TASKS).unlink()
    (project / TASKS).mkdir()
    (project / TASKS / "notes.txt").write_text("mine")
    assert cli("project").exit_code == 4
    before = stable(project)
    status, report = doctor_json(cli, "--fix")
    assert status == 1
    (problem,) = report["problems"]
    assert (problem["code"], problem["fixable"], problem["fixed"]) == (PROJECTION_MISSING, False, False)
    assert problem["message"] == f"{TASKS} (session {SESSION}) is a directory, not the file evstore exports"
    assert stable(project) == before
    assert (project / TASKS / "notes.txt").read_text() == "mine"


def test_an_edited_file_is_kept_as_a_drift_copy_and_re_exported(project: Path, cli: Cli) -> None:
    original = (project / TASKS).read_bytes()
    edited = original.replace(b'"status": "Planned"', b'"status": "Complete"', 1)
    assert edited != original
    (project / TASKS).write_bytes(edited)
    held = events(project)
    found, fixed = checked_then_fixed(cli, project, PROJECTION_DRIFT)
    assert "was changed outside evstore" in found["problems"][0]["message"]
    (copy,) = (project / TASKS).parent.glob("tasks.json.drift-*")
    assert copy.read_bytes() == edited
    assert (project / TASKS).read_bytes() == original
    assert fixed["problems"][0]["outcome"] == f"kept the edited copy as {copy.name}; re-exported"
    assert events(project) == held


def test_drift_copy_is_named_by_the_clock_and_never_overwrites(project: Path) -> None:
    """Library API with a fixed clock: `<name>.drift-20261122T023000Z`, then `.1` when the
    same second's copy exists already."""
    moment = datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    doctor = Doctor(db_path(project), clock=lambda: moment)
    original = (project / TASKS).read_bytes()
    copies = []
    for n in (1, 2):
        edited = original + b" " * n
        (project / TASKS).write_bytes(edited)
        assert [p.code for p in doctor.check().problems] == [PROJECTION_DRIFT]
        report = doctor.fix()
        assert report.healthy
        copies.append((edited, report.problems[0].outcome))
    folder = project / TASKS.parent
    assert (folder / "tasks.json.drift-20261122T023000Z").read_bytes() == copies[0][0]
    assert (folder / "tasks.json.drift-20261122T023000Z.1").read_bytes() == copies[1][0]
    assert copies[1][1] == "kept the edited copy as tasks.json.drift-20261122T023000Z.1; re-exported"
    assert (project / TASKS).read_bytes() == original


# --- batch progress ----------------------------------------------------------------------------------


def test_garbage_progress_of_an_unfinished_batch_is_set_aside_and_re_exported(project: Path, cli: Cli) -> None:
    with open_store(project) as store:
        BatchRun(store, SESSION).start(ITEMS, owner_pid=os.getpid())  # alive: not stale
        store.project()
    good = (project / PROGRESS).read_bytes()
    garbage = good[: len(good) // 2]  # a half-written file, as a crashed writer leaves it
    (project / PROGRESS).write_bytes(garbage)
    held = events(project)
    found, fixed = checked_then_fixed(cli, project, BATCH_PROGRESS_CORRUPT)
    assert "is not valid JSON" in found["problems"][0]["message"]
    assert "re-export it from the journal" in found["problems"][0]["remedy"]
    assert (project / LOST / "batch-progress.json").read_bytes() == garbage
    assert (project / PROGRESS).read_bytes() == good
    assert fixed["problems"][0]["outcome"] == "moved to .evstore/lost+found/batch-progress.json"
    assert events(project) == held


def test_progress_not_of_schema_v1_without_a_batch_goes_to_lost_and_found(project: Path, cli: Cli) -> None:
    wrong = b'{"schema_version": 2, "session_id": "x", "queued_items": []}\n'
    (project / PROGRESS).write_bytes(wrong)
    found, _ = checked_then_fixed(cli, project, BATCH_PROGRESS_CORRUPT)
    assert "schema_version 2" in found["problems"][0]["message"]
    assert "no unfinished batch" in found["problems"][0]["remedy"]
    assert not (project / PROGRESS).exists()
    assert (project / LOST / "batch-progress.json").read_bytes() == wrong


def test_a_batch_of_a_dead_owner_untouched_for_25_hours_is_abandoned(project: Path, cli: Cli) -> None:
    """Recorded through a journal clock 25 h behind: the batch really is 25 h old when
    doctor (real clock) looks at it, and its owner really is dead."""
    with open_store(project, clock=lambda: utc_now() - timedelta(hours=25)) as store:
        started = BatchRun(store, SESSION).start(ITEMS, owner_pid=reaped_pid())
        BatchRun(store, SESSION).next()
        store.project()
    assert (project / PROGRESS).exists()
    held = events(project)
    found, fixed = checked_then_fixed(cli, project, STALE_BATCH_PROGRESS)
    problem = found["problems"][0]
    assert problem["message"].startswith(f"batch {started.batch_id} of session {SESSION} is stale: its owner (pid ")
    assert "(25 h ago)" in problem["message"]
    after = events(project)
    assert after[: len(held)] == held
    assert after[len(held):] == [("BatchAbandoned", {"batch_id": started.batch_id, "reason": "doctor: stale"})]
    assert not (project / PROGRESS).exists()  # an abandoned batch has no progress file
    assert fixed["problems"][0]["outcome"].startswith('appended BatchAbandoned (reason "doctor: stale", seq ')


def test_staleness_reads_the_injected_clock_and_spares_live_or_foreign_owners(project: Path) -> None:
    with open_store(project) as store:
        BatchRun(store, SESSION).start(ITEMS, owner_pid=reaped_pid())
        store.project()
    db = db_path(project)
    assert Doctor(db).check().healthy  # just started
    later = lambda: utc_now() + timedelta(hours=25)  # noqa: E731
    assert Doctor(db, clock=lambda: utc_now() + timedelta(hours=23)).check().healthy
    assert Doctor(db, clock=later, alive=lambda _pid, _start: True).check().healthy
    (foreign,) = Doctor(db, clock=later, host="another-machine").check().problems
    assert (foreign.code, foreign.fixable) == (STALE_BATCH_PROGRESS, False)
    assert "cannot tell whether its owner" in foreign.remedy
    report = Doctor(db, clock=later).fix()
    assert report.healthy
    assert [(p.code, p.fixed) for p in report.problems] == [(STALE_BATCH_PROGRESS, True)]
    assert events(project)[-1][0] == "BatchAbandoned"


# --- temp files ------------------------------------------------------------------------------------


def temp_file(root: Path, name: str, data: bytes, age_s: float) -> Path:
    path = root / TASKS.parent / name
    path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_an_old_temp_file_is_moved_to_lost_and_found(project: Path, cli: Cli) -> None:
    old = temp_file(project, TEMP, b'{"backlog": [', age_s=120)
    young = temp_file(project, ".tasks.json.fedcba9876543210.tmp", b"being written", age_s=5)
    found, fixed = checked_then_fixed(cli, project, ORPHAN_TEMP_FILE)
    assert found["problems"][0]["path"] == str(old)
    assert found["problems"][0]["message"] == (
        f"{TASKS.parent / TEMP} was left by an interrupted export (2 min old, no exporter running)"
    )
    assert (project / LOST / TEMP).read_bytes() == b'{"backlog": ['
    assert not old.exists()
    assert young.read_bytes() == b"being written"  # younger than a minute: an export's own
    assert fixed["problems"][0]["outcome"] == f"moved to .evstore/lost+found/{TEMP}"
    # The same name again: kept beside the first, with a suffix.
    temp_file(project, TEMP, b"second", age_s=3600)
    assert doctor_json(cli, "--fix")[0] == 0
    assert (project / LOST / TEMP).read_bytes() == b'{"backlog": ['
    assert (project / LOST / f"{TEMP}.1").read_bytes() == b"second"


def test_a_temp_file_of_an_exporter_holding_the_lock_is_left_alone(
    project: Path, cli: Cli, procs: list[subprocess.Popen[Any]]
) -> None:
    """Another process holds the export dir's `.evstore.lock` (as a running export does):
    its temp file, however old, is not an orphan. Once the lock is free, it is one."""
    path = temp_file(project, TEMP, b"in progress", age_s=600)
    code = ("import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(project / TASKS.parent / ".evstore.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(holder)
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    before = stable(project)
    for args in ((), ("--fix",)):
        status, report = doctor_json(cli, *args)
        assert (status, report["problems"]) == (0, [])
    assert stable(project) == before
    assert path.read_bytes() == b"in progress"
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)
    status, report = doctor_json(cli)
    assert (status, codes(report)) == (1, [ORPHAN_TEMP_FILE])


# --- legacy recovery files -------------------------------------------------------------------------


def write_failed(root: Path, pending: dict[str, Any], timestamp: str) -> Path:
    """A legacy tasks.json.failed as the old pipeline wrote it (format of test_cli)."""
    recovery = {
        "version": "1.0",
        "timestamp": timestamp,
        "sessionPath": str(root / TASKS.parent),
        "pendingUpdates": pending,
        "error": {"message": "EBUSY: resource busy or locked", "code": "EBUSY", "attempts": 3},
        "pendingCount": 2,
    }
    failed = root / TASKS.parent / "tasks.json.failed"
    failed.write_text(json.dumps(recovery, indent=2))
    return failed


def first_subtasks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    subtasks: list[dict[str, Any]] = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]
    return subtasks


def test_a_legacy_failed_file_is_imported_as_events_then_moved(project: Path, cli: Cli) -> None:
    """The old pipeline's tasks.json.failed: its two pending status updates become
    events, tasks.json shows them, the file goes to lost+found intact."""
    pending = loads((project / TASKS).read_bytes())
    subtasks = first_subtasks(pending)
    subtasks[0]["status"] = "Complete"
    subtasks[1]["status"] = "Implementing"
    failed = write_failed(project, pending, "2026-01-24T10:00:00.000Z")
    raw = failed.read_bytes()
    held = events(project)
    found, fixed = checked_then_fixed(cli, project, LEGACY_RECOVERY_FILE)
    assert found["problems"][0]["message"] == (
        f"{TASKS.parent}/tasks.json.failed (session {SESSION}) is a legacy recovery file with "
        "2 difference(s) from the journal to import"
    )
    after = events(project)
    assert after[: len(held)] == held
    assert after[len(held):] == [
        ("ItemStatusChanged", {"item_id": subtasks[0]["id"], "status": "Complete", "reason": None}),
        ("ItemStatusChanged", {"item_id": subtasks[1]["id"], "status": "Implementing", "reason": None}),
    ]
    assert fixed["problems"][0]["outcome"] == (
        "imported 2 event(s) (seq 3..4); moved to .evstore/lost+found/tasks.json.failed"
    )
    assert not failed.exists()
    assert (project / LOST / "tasks.json.failed").read_bytes() == raw
    statuses = [s["status"] for s in first_subtasks(loads((project / TASKS).read_bytes()))]
    assert statuses[:2] == ["Complete", "Implementing"]


def test_a_legacy_file_never_undoes_what_the_journal_recorded_after_it(project: Path, cli: Cli) -> None:
    """Written before the session was imported, the file holds S1 Planned (as then), S2
    Implementing and S3 Failed (its pending updates). Since then the journal recorded S1
    and S3 Complete: newer, so they stay; only S2 is imported."""
    pending = loads((project / TASKS).read_bytes())
    s1, s2, s3 = (item["id"] for item in first_subtasks(pending)[:3])
    first_subtasks(pending)[1]["status"] = "Implementing"
    first_subtasks(pending)[2]["status"] = "Failed"
    write_failed(project, pending, "2026-01-24T10:00:00.000Z")
    with open_store(project) as store:
        store.append(SESSION, [ItemStatusChanged(item_id=s1, status="Complete"),
                               ItemStatusChanged(item_id=s3, status="Complete")])
        store.project()
    held = events(project)
    found, fixed = checked_then_fixed(cli, project, LEGACY_RECOVERY_FILE)
    assert found["problems"][0]["message"].endswith(
        "1 difference(s) from the journal to import, 2 superseded by newer journal events"
    )
    assert events(project)[len(held):] == [
        ("ItemStatusChanged", {"item_id": s2, "status": "Implementing", "reason": None}),
    ]
    assert fixed["problems"][0]["outcome"].startswith(
        "imported 1 event(s) (seq 5..5), 2 superseded difference(s) left as the journal has them; "
    )
    statuses = [s["status"] for s in first_subtasks(loads((project / TASKS).read_bytes()))]
    assert statuses[:3] == ["Complete", "Implementing", "Complete"]


def test_a_legacy_file_is_compared_with_the_journal_at_its_timestamp(project: Path) -> None:
    """Written after S1 became Complete, the file sets S1 back to Planned on purpose: that
    is its own update (imported). S3 Complete, recorded after the file, stays."""
    with open_store(project) as store:
        s1, s2, s3 = (item["id"] for item in first_subtasks(store.state(SESSION, "tasks").doc)[:3])
        store.append(SESSION, [ItemStatusChanged(item_id=s1, status="Complete")])
        pending = copy.deepcopy(store.state(SESSION, "tasks").doc)
        written = utc_now()
        time.sleep(0.002)  # the next event is recorded strictly after the file's timestamp
        store.append(SESSION, [ItemStatusChanged(item_id=s3, status="Complete")])
        store.project()
    first_subtasks(pending)[0]["status"] = "Planned"
    first_subtasks(pending)[1]["status"] = "Implementing"
    first_subtasks(pending)[2]["status"] = "Failed"
    write_failed(project, pending, written.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    report = Doctor(db_path(project)).fix()
    assert report.healthy
    (problem,) = report.problems
    assert problem.outcome is not None
    assert problem.outcome.startswith("imported 2 event(s)")
    assert ", 1 superseded difference(s)" in problem.outcome
    assert [(t, d["item_id"], d["status"]) for t, d in events(project)[-2:]] == [
        ("ItemStatusChanged", s1, "Planned"), ("ItemStatusChanged", s2, "Implementing"),
    ]
    assert s2 != s3


def test_a_failed_file_that_cannot_be_imported_is_not_fixable(project: Path, cli: Cli) -> None:
    failed = project / TASKS.parent / "tasks.json.failed"
    failed.write_text('{"version": "1.0", "pendingUpdates": {"tasks": []}}')
    before = stable(project)
    status, report = doctor_json(cli, "--fix")
    assert status == 1
    (problem,) = report["problems"]
    assert (problem["code"], problem["fixable"], problem["fixed"]) == (LEGACY_RECOVERY_FILE, False, False)
    assert "cannot be imported" in problem["message"]
    assert stable(project) == before


# --- several at once, human output, a real process ---------------------------------------------------


def test_several_problems_are_fixed_in_one_run(project: Path, cli: Cli) -> None:
    with open_store(project) as store:
        store.append(SESSION, [ItemStatusChanged(item_id="P1", status="Implementing")])
    (project / TASKS).write_bytes(b"{}")  # edited (drift) and behind the journal
    (project / PROGRESS).write_bytes(b"\x00\x00\x00")
    temp_file(project, TEMP, b"x", age_s=90)
    human = cli("doctor")
    assert human.exit_code == 1
    lines = human.stdout.splitlines()
    assert [line.split("  ")[0] for line in lines[:-1]] == [
        PROJECTION_DRIFT, BATCH_PROGRESS_CORRUPT, ORPHAN_TEMP_FILE,
    ]
    assert all(line.endswith(")") and "(fixable with --fix: " in line for line in lines[:-1])
    assert lines[-1] == f"3 problems found: 3 fixable with --fix, 0 not fixable {WHERE}"
    fixed = cli("doctor", "--fix")
    assert fixed.exit_code == 0
    out = fixed.stdout.splitlines()
    assert all("(fixed: " in line for line in out[:-1])
    assert out[-1] == f"3 problems found, all fixed: healthy {WHERE}"
    assert b'"status": "Implementing"' in (project / TASKS).read_bytes()
    assert sorted(p.name for p in (project / LOST).iterdir()) == [TEMP, "batch-progress.json"]


def test_the_real_command_in_a_subprocess(project: Path, run: Run) -> None:
    original = (project / TASKS).read_bytes()
    (project / TASKS).unlink()
    checked = run("doctor", "--json", cwd=project)
    assert checked.returncode == 1, checked.stderr
    assert codes(json.loads(checked.stdout)) == [PROJECTION_MISSING]
    fixed = run("doctor", "--fix", cwd=project)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.splitlines()[0].startswith(f"PROJECTION_MISSING  {TASKS} (session {SESSION}) is missing")
    assert (project / TASKS).read_bytes() == original
    assert run("doctor", cwd=project).returncode == 0
