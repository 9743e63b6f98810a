"""`evstore doctor` proves the journal unbroken (issue 11, item 8).

Real journal files edited the ways that lose acknowledged events behind evstore's back:
rows changed or removed with the append-only triggers dropped, and a journal put back
from an older copy carrying checkpoints of the events it lost (what the close of a
connection still reading a removed WAL writes into the file). Doctor names the first seq
where the chain breaks and what to do (not fixable); a checkpoint naming an event the
journal no longer holds is refolded by `project`, never continued.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
import subprocess
from collections.abc import Callable
from pathlib import Path

from support import SESSION, snapshot
from test_watch import ok, status_of

Run = Callable[..., subprocess.CompletedProcess[str]]

TASKS = Path("plan") / SESSION / "tasks.json"
JOURNAL = Path(".evstore") / "journal.db"


def journal_with_updates(run: Run) -> None:
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    for item in ("P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T1.S3"):
        ok(run("append", "--session", SESSION, item, "Complete"))  # seq 3, 4, 5
    ok(run("project"))


def behind_the_triggers(project_dir: Path, *statements: str) -> None:
    with closing(sqlite3.connect(project_dir / JOURNAL)) as raw, raw:
        raw.execute("DROP TRIGGER events_append_only_update")
        raw.execute("DROP TRIGGER events_append_only_delete")
        for statement in statements:
            raw.execute(statement)


def tables_and_files(project_dir: Path) -> tuple[object, ...]:
    """Every journal row and every exported file's bytes (the journal file's own bytes
    move when SQLite checkpoints its WAL on close, whoever closes last)."""
    with closing(sqlite3.connect(project_dir / JOURNAL)) as raw:
        rows = tuple(tuple(raw.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))  # noqa: S608
                     for table in ("events", "checkpoints", "export_digests", "journal_meta"))
    files = {k: v for k, v in snapshot(project_dir).items() if not k.startswith(".evstore")}
    return rows, files


def chain_problems(run: Run) -> tuple[int, list[dict[str, object]]]:
    checked = run("doctor", "--json")
    report = json.loads(checked.stdout)
    broken = [p for p in report["problems"] if p["code"] == "JOURNAL_CHAIN_BROKEN"]
    return checked.returncode, broken


def test_a_healthy_journal_has_an_unbroken_chain(project_dir: Path, run: Run) -> None:
    journal_with_updates(run)
    checked = run("doctor")
    assert checked.returncode == 0, checked.stdout


def test_an_event_changed_behind_the_triggers_breaks_the_chain_there(
    project_dir: Path, run: Run
) -> None:
    journal_with_updates(run)
    behind_the_triggers(project_dir, "UPDATE events SET data = json_set(data, '$.status', "
                        "'Planned') WHERE seq = 4")
    code, (problem,) = chain_problems(run)
    before = tables_and_files(project_dir)
    assert code == 1
    assert "broken at seq 4" in str(problem["message"])
    assert problem["fixable"] is False and "restore" in str(problem["remedy"])
    fixed = run("doctor", "--fix")
    assert fixed.returncode == 1 and "JOURNAL_CHAIN_BROKEN" in fixed.stdout
    assert tables_and_files(project_dir) == before  # nothing "repaired"


def test_an_event_removed_from_the_middle_is_named(project_dir: Path, run: Run) -> None:
    journal_with_updates(run)
    behind_the_triggers(project_dir, "DELETE FROM events WHERE seq = 4")
    code, (problem,) = chain_problems(run)
    assert code == 1
    assert "broken at seq 4: seq 4 is missing" in str(problem["message"])


def put_back_an_older_copy(project_dir: Path, run: Run, tmp_path: Path) -> None:
    """The journal as it was at seq 2, holding the checkpoints saved at seq 5."""
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    ok(run("project"))
    older = tmp_path / "older.db"
    with closing(sqlite3.connect(project_dir / JOURNAL)) as live, \
            closing(sqlite3.connect(older)) as copy:
        live.backup(copy)
    for item in ("P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T1.S3"):
        ok(run("append", "--session", SESSION, item, "Complete"))
    ok(run("project"))
    tables = ("checkpoints", "checkpoint_states")  # positions, and the states they fold on
    with closing(sqlite3.connect(project_dir / JOURNAL)) as live:
        saved = {table: live.execute(f"SELECT * FROM {table}").fetchall() for table in tables}  # noqa: S608
    with closing(sqlite3.connect(older)) as copy, copy:  # closed: its WAL goes into the file
        for table, rows in saved.items():
            marks = ",".join("?" * len(rows[0]))
            copy.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)  # noqa: S608
    older.replace(project_dir / JOURNAL)
    for suffix in ("-wal", "-shm"):
        (project_dir / f"{JOURNAL}{suffix}").unlink(missing_ok=True)


def test_checkpoints_past_the_head_are_reported_and_refolded(
    project_dir: Path, run: Run, tmp_path: Path
) -> None:
    put_back_an_older_copy(project_dir, run, tmp_path)
    ok(run("append", "--session", SESSION, "P5.M4.T2.S1", "Complete"))  # seq 3 again
    ok(run("append", "--session", SESSION, "P5.M4.T2.S2", "Complete"))  # seq 4, another event
    code, problems = chain_problems(run)
    assert code == 1
    tasks = [p for p in problems if "projection tasks " in str(p["message"])]
    assert len(tasks) == 1 and "exported at seq 5" in str(tasks[0]["message"])
    assert "the journal's head is seq 4" in str(tasks[0]["message"])

    ok(run("project"))  # refolds from the journal, never from the lost state
    exported = project_dir / TASKS
    assert status_of(exported, "P5.M4.T2.S2") == "Complete"
    assert status_of(exported, "P1.M1.T1.S1") != "Complete"  # only the lost events said so
    (copy,) = exported.parent.glob("tasks.json.drift-*")
    assert status_of(copy, "P1.M1.T1.S1") == "Complete"  # the file they made, kept


def test_a_checkpoint_whose_seq_holds_another_event_is_not_trusted(
    project_dir: Path, run: Run, tmp_path: Path
) -> None:
    put_back_an_older_copy(project_dir, run, tmp_path)
    for item in ("P5.M4.T2.S1", "P5.M4.T2.S2", "P5.M4.T2.S3"):
        ok(run("append", "--session", SESSION, item, "Complete"))  # seq 3..5, other events
    code, problems = chain_problems(run)
    assert code == 1
    (tasks,) = [p for p in problems if "projection tasks " in str(p["message"])]
    assert "seq 5 is now event" in str(tasks["message"])
    ok(run("project"))
    exported = project_dir / TASKS
    assert status_of(exported, "P5.M4.T2.S3") == "Complete"
    assert status_of(exported, "P1.M1.T1.S1") != "Complete"
