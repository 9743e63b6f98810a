"""Where features built side by side meet: the streamed `--jsonl` append against event-id
reuse, NUL ids and the hash chain; an older journal read by the newest reads."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from support import INITIAL, evstore_bin, snapshot

from eventstore import schema

SESSION = "001"


def run(root: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([evstore_bin(), *args], cwd=root, input=stdin, capture_output=True,  # noqa: S603
                          text=True, check=False, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    plan = tmp_path / "plan" / SESSION
    plan.mkdir(parents=True)
    (plan / "tasks.json").write_bytes(INITIAL.read_bytes())
    assert run(tmp_path, "init").returncode == 0
    assert run(tmp_path, "import", f"plan/{SESSION}/tasks.json", "-s", SESSION).returncode == 0
    return tmp_path


def test_a_streamed_append_reusing_ids_for_other_events_is_a_conflict(project: Path) -> None:
    """--jsonl (the staged path): the same lines again are a duplicate; the same ids with
    another status are exit 3 naming the id, nothing written."""
    lines = ('{"item_id": "P1", "status": "Complete", "event_id": "a"}\n'
             '{"item_id": "P2", "status": "Complete", "event_id": "b"}\n')
    assert run(project, "append", "-s", SESSION, "--jsonl", "-", stdin=lines).returncode == 0
    again = run(project, "append", "-s", SESSION, "--jsonl", "-", "--json", stdin=lines)
    assert json.loads(again.stdout)["duplicate"] is True
    before = snapshot(project)
    other = run(project, "append", "-s", SESSION, "--jsonl", "-", stdin=lines.replace("Complete", "Failed", 1))
    assert other.returncode == 3
    assert "event id 'a' is already used by a different event" in other.stderr
    assert snapshot(project) == before


def test_a_streamed_append_refuses_nul_in_an_event_id(project: Path) -> None:
    """An id PostgreSQL could not store is refused on the staged path too (exit 2)."""
    before = snapshot(project)
    done = run(project, "append", "-s", SESSION, "--jsonl", "-",
               stdin='{"item_id": "P1", "status": "Complete", "event_id": "a\\u0000b"}\n')
    assert done.returncode == 2
    assert "NUL" in done.stderr
    assert snapshot(project) == before


def test_streamed_and_single_appends_keep_one_unbroken_chain(project: Path) -> None:
    """Events appended by --jsonl, by one append and by import all link into the chain
    `doctor` verifies."""
    lines = "".join(f'{{"item_id": "P1.M1.T1.S{n}", "status": "Complete"}}\n' for n in range(1, 4))
    assert run(project, "append", "-s", SESSION, "--jsonl", "-", stdin=lines).returncode == 0
    assert run(project, "append", "-s", SESSION, "P1", "Implementing").returncode == 0
    assert run(project, "project").returncode == 0
    doctor = run(project, "doctor", "--json")
    codes = [p["code"] for p in json.loads(doctor.stdout)["problems"]]
    assert "JOURNAL_CHAIN_BROKEN" not in codes
    with closing(sqlite3.connect(project / ".evstore" / "journal.db")) as db:
        unlinked = db.execute("SELECT count(*) FROM events WHERE chain IS NULL").fetchone()[0]
    assert unlinked == 0


def test_a_schema_3_journal_is_read_as_it_is_and_migrated_by_a_write(project: Path) -> None:
    """status and project on a journal from before the chain and the snapshots: status
    reads it untouched; project (a write) migrates it and exports."""
    assert run(project, "project").returncode == 0
    path = project / ".evstore" / "journal.db"
    older = project / "older.db"
    with closing(sqlite3.connect(older)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for version, statements in schema.migrations("sqlite")[:3]:
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={version}")
        columns = "seq, stream, version, type, data, meta, recorded_at, event_id, schema_version"
        db.execute("ATTACH DATABASE ? AS src", (str(path),))
        db.execute(f"INSERT INTO events ({columns}) SELECT {columns} FROM src.events")  # noqa: S608
        db.commit()
        db.execute("DETACH DATABASE src")
    for suffix in ("", "-wal", "-shm"):
        (project / ".evstore" / f"journal.db{suffix}").unlink(missing_ok=True)
    older.rename(path)
    before = path.read_bytes()
    status = run(project, "status", "--json")
    assert status.returncode in (0, 1), status.stderr
    assert json.loads(status.stdout)["journal"]["schema_version"] == 3
    assert path.read_bytes() == before
    assert run(project, "append", "-s", SESSION, "P1", "Complete").returncode == 0
    projected = run(project, "project")
    assert projected.returncode == 0, projected.stderr
    assert json.loads(run(project, "status", "--json").stdout)["journal"]["schema_version"] == 6
