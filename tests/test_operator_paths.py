"""Issue 11, "nothing lost whatever the operator does": where evstore writes, and who owns
an export directory. Every test runs the real `evstore` command on real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import INITIAL, SESSION, snapshot

Run = Callable[..., subprocess.CompletedProcess[str]]
WRECKIT = Path(__file__).parent / "fixtures" / "wreckit" / "live.batch-progress.56e853a.json"


@pytest.fixture
def project(project_dir: Path, run: Run) -> Path:
    """A project with the real backlog imported as SESSION (exports to plan/SESSION), projected."""
    assert run("init", cwd=project_dir).returncode == 0
    imported = run("import", f"plan/{SESSION}/tasks.json", "--session", SESSION, cwd=project_dir)
    assert imported.returncode == 0, imported.stderr
    assert run("project", cwd=project_dir).returncode == 0
    return project_dir


def _refused(done: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("evstore: error: "), done.stderr
    return lines[0]


# --- item 1: no command writes over the journal or a projection ------------------------------


@pytest.mark.parametrize("target", [".evstore/journal.db", ".evstore/journal.db-wal",
                                    ".evstore/journal.db-shm", f"plan/{SESSION}/tasks.json",
                                    f"plan/{SESSION}/batch-progress.json"])
def test_report_refuses_to_write_over_the_journal_or_a_projection(
    project: Path, run: Run, target: str
) -> None:
    before = snapshot(project)
    line = _refused(run("report", "-o", target, cwd=project))
    assert target.rsplit("/", 1)[-1].split("-", 1)[0] in line
    assert snapshot(project) == before


def test_report_refuses_a_symlink_leading_to_the_journal(project: Path, run: Run) -> None:
    (project / "innocent.html").symlink_to(project / ".evstore" / "journal.db")
    before = snapshot(project)
    _refused(run("report", "-o", "innocent.html", cwd=project))
    assert snapshot(project) == before


def test_report_elsewhere_is_still_written(project: Path, run: Run) -> None:
    done = run("report", "-o", "report.html", cwd=project)
    assert done.returncode == 0, done.stderr
    assert (project / "report.html").read_bytes().startswith(b"<!")


def test_replay_out_refuses_a_directory_holding_a_projection(project: Path, run: Run) -> None:
    appended = run("append", "--session", SESSION, "P1.M1.T1.S1", "Complete", cwd=project)
    assert appended.returncode == 0, appended.stderr
    assert run("project", cwd=project).returncode == 0
    before = snapshot(project)
    line = _refused(run("replay", "--session", SESSION, "--until", "2", "--out", f"plan/{SESSION}",
                        cwd=project))
    assert "tasks.json" in line
    assert SESSION in line
    assert snapshot(project) == before


# --- item 2: an export directory belongs to one session ----------------------------------


def test_second_session_importing_from_an_owned_directory_is_refused(
    project: Path, run: Run
) -> None:
    before = snapshot(project)
    line = _refused(run("import", f"plan/{SESSION}/tasks.json", "--session", "002", cwd=project))
    assert SESSION in line
    assert "--export-dir" in line
    assert snapshot(project) == before


def test_second_claim_through_a_symlink_is_refused(project: Path, run: Run) -> None:
    (project / "alias").symlink_to(project / "plan" / SESSION)
    before = snapshot(project)
    line = _refused(run("import", "alias/tasks.json", "--session", "002", cwd=project))
    assert SESSION in line
    assert snapshot(project) == before


def test_batch_progress_import_into_an_owned_directory_is_refused(
    project: Path, run: Run
) -> None:
    before = snapshot(project)
    line = _refused(run("import", "--batch-progress", str(WRECKIT), "--session", "wreckit",
                        "--export-dir", f"plan/{SESSION}", cwd=project))
    assert SESSION in line
    assert snapshot(project) == before


def test_an_explicit_export_dir_elsewhere_is_accepted(project: Path, run: Run) -> None:
    done = run("import", f"plan/{SESSION}/tasks.json", "--session", "002",
               "--export-dir", "plan/002", cwd=project)
    assert done.returncode == 0, done.stderr
    nested = run("import", f"plan/{SESSION}/tasks.json", "--session", "003",
                 "--export-dir", f"plan/{SESSION}/sub", cwd=project)
    assert nested.returncode == 0, nested.stderr  # nested dirs hold different files
    assert run("project", cwd=project).returncode == 0
    assert (project / "plan" / "002" / "tasks.json").exists()
    assert (project / "plan" / SESSION / "sub" / "tasks.json").exists()


def _nested_journal(directory: Path) -> None:
    """A second project's journal inside `directory`, made by the library: how it came to
    be there (an old evstore, `init --force`) is not what these tests are about."""
    from eventstore import Store  # noqa: PLC0415

    Store.open(directory / ".evstore" / "journal.db", create=True).close()


def test_a_nested_project_cannot_claim_the_outer_sessions_dir(project: Path, run: Run) -> None:
    inner = project / "plan" / SESSION
    _nested_journal(inner)
    before = snapshot(project)
    line = _refused(run("import", "tasks.json", "--session", "inner", cwd=inner))
    assert SESSION in line
    assert str(project / ".evstore" / "journal.db") in line
    assert snapshot(project) == before


def test_the_outer_project_cannot_claim_a_nested_projects_dir(project: Path, run: Run) -> None:
    inner = project / "nested"
    (inner / "work").mkdir(parents=True)
    shutil.copyfile(INITIAL, inner / "work" / "tasks.json")
    _nested_journal(inner)
    done = run("import", "work/tasks.json", "--session", "inner", cwd=inner)
    assert done.returncode == 0, done.stderr
    before = snapshot(project)
    line = _refused(run("import", "nested/work/tasks.json", "--session", "002", cwd=project))
    assert "inner" in line
    assert str(inner / ".evstore" / "journal.db") in line
    assert snapshot(project) == before


def _share_by_symlink(project: Path, run: Run) -> None:
    """Session 002 exports to plan/002, which later becomes a symlink to session 001's dir:
    a collision made behind evstore's back, which doctor must report."""
    done = run("import", f"plan/{SESSION}/tasks.json", "--session", "002",
               "--export-dir", "plan/002", cwd=project)
    assert done.returncode == 0, done.stderr
    (project / "plan" / "002").symlink_to(project / "plan" / SESSION)


def test_doctor_reports_a_shared_export_dir_and_how_to_move(project: Path, run: Run) -> None:
    _share_by_symlink(project, run)
    done = run("doctor", "--json", cwd=project)
    assert done.returncode == 1, done.stderr
    problems = [p for p in json.loads(done.stdout)["problems"] if p["code"] == "EXPORT_DIR_SHARED"]
    assert len(problems) == 1, done.stdout
    assert problems[0]["fixable"] is False
    assert "evstore session move" in problems[0]["remedy"]
    assert SESSION in problems[0]["message"]
    assert "002" in problems[0]["message"]


def test_doctor_fix_leaves_a_shared_export_dir_alone_and_converges(project: Path, run: Run) -> None:
    """Before, each `doctor --fix` re-exported both sessions over each other and kept two
    more `.drift-*` copies per run; whose file is which cannot be told, so nothing moves."""
    _share_by_symlink(project, run)
    assert run("append", "--session", "002", "P1", "Complete", cwd=project).returncode == 0
    before = snapshot(project)
    for _ in range(2):
        done = run("doctor", "--fix", cwd=project)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "EXPORT_DIR_SHARED" in done.stdout
    assert snapshot(project) == before
    assert not [p for p in (project / "plan" / SESSION).iterdir() if ".drift-" in p.name]


def test_export_dir_lookups_read_the_partial_index(project: Path) -> None:
    """`project` asks every session's export dir on every run: both lookups must read
    the small partial index, never scan the journal."""
    import sqlite3  # noqa: PLC0415

    from eventstore.persistence import EXPORT_DIR_EVENTS  # noqa: PLC0415

    con = sqlite3.connect(project / ".evstore" / "journal.db")
    try:
        one = con.execute(
            "EXPLAIN QUERY PLAN SELECT data FROM events WHERE seq = (SELECT max(seq) FROM events"  # noqa: S608 - a constant
            f" WHERE stream = ? AND {EXPORT_DIR_EVENTS})", (SESSION,)).fetchall()
        every = con.execute(
            f"EXPLAIN QUERY PLAN SELECT stream, data FROM events WHERE {EXPORT_DIR_EVENTS}"  # noqa: S608 - a constant
            " ORDER BY stream, seq").fetchall()
    finally:
        con.close()
    assert any("events_export_dir" in row[-1] for row in one), one
    assert all("events_export_dir" in row[-1] for row in every), every


def test_status_does_not_call_a_shared_export_dir_current(project: Path, run: Run) -> None:
    _share_by_symlink(project, run)
    assert run("project", "--session", "002", cwd=project).returncode == 4
    done = run("status", "--json", cwd=project)
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    assert report["current"] is False
    shared = {s["session"]: s["shared_with"] for s in report["sessions"]}
    assert shared == {SESSION: ["002"], "002": [SESSION]}
    assert "shared with session(s) 002" in run("status", cwd=project).stdout


def test_project_refuses_to_export_into_a_shared_dir(project: Path, run: Run) -> None:
    _share_by_symlink(project, run)
    assert run("append", "--session", "002", "P1", "Complete", cwd=project).returncode == 0
    before = snapshot(project)
    done = run("project", cwd=project)
    assert done.returncode == 4, done.stderr
    assert "002" in done.stderr
    assert "evstore session move" in done.stderr
    assert snapshot(project) == before  # session 001 was current: nothing to write


# --- item 13: project exports every session; sessions can move --------------------------


def test_project_exports_every_session_and_reports_each_failure(project: Path, run: Run) -> None:
    for name in ("002", "003"):
        done = run("import", str(INITIAL), "--session", name, "--export-dir", f"plan/{name}",
                   cwd=project)
        assert done.returncode == 0, done.stderr
        assert run("append", "--session", name, "P1", "Complete", cwd=project).returncode == 0
    assert run("append", "--session", SESSION, "P1", "Complete", cwd=project).returncode == 0
    # Session 002's export dir is a file now: it cannot be written, the others can.
    shutil.rmtree(project / "plan" / "002", ignore_errors=True)
    (project / "plan" / "002").write_bytes(b"in the way\n")
    done = run("project", cwd=project)
    assert done.returncode == 4, done.stderr
    assert f"{SESSION}: " in done.stdout
    assert "003: " in done.stdout
    assert "nothing written" not in done.stderr
    assert "pass --export-dir" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("evstore: error: ")]
    assert len(errors) == 1, done.stderr  # one failure: its own single line
    assert "plan/002" in errors[0]
    doc = json.loads((project / "plan" / "003" / "tasks.json").read_bytes())
    assert doc["backlog"][0]["status"] == "Complete"
    doc = json.loads((project / "plan" / SESSION / "tasks.json").read_bytes())
    assert doc["backlog"][0]["status"] == "Complete"
    # Two failures: each named on its own line, then what to do.
    shutil.rmtree(project / "plan" / "003")
    (project / "plan" / "003").write_bytes(b"in the way\n")
    assert run("append", "--session", SESSION, "P2", "Complete", cwd=project).returncode == 0
    done = run("project", cwd=project)
    assert done.returncode == 4, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("evstore: error: ")]
    assert len(errors) == 3, done.stderr
    assert "session 002: " in errors[0]
    assert "session 003: " in errors[1]
    assert "2 sessions not exported (002, 003)" in errors[2]
    assert f"{SESSION}: " in done.stdout


def test_session_move_exports_to_the_new_dir_and_is_an_event(project: Path, run: Run) -> None:
    moved = run("session", "move", SESSION, "elsewhere", cwd=project)
    assert moved.returncode == 0, moved.stderr
    log = run("log", "--json", cwd=project)
    assert any(json.loads(line)["type"] == "SessionMoved" for line in log.stdout.splitlines())
    assert run("append", "--session", SESSION, "P1", "Complete", cwd=project).returncode == 0
    assert run("project", cwd=project).returncode == 0
    doc = json.loads((project / "elsewhere" / "tasks.json").read_bytes())
    assert doc["backlog"][0]["status"] == "Complete"
    status = json.loads(run("status", "--json", cwd=project).stdout)
    assert status["sessions"][0]["export_dir"] == str(project / "elsewhere")
    # The old directory is free again for another session.
    done = run("import", f"plan/{SESSION}/tasks.json", "--session", "002", cwd=project)
    assert done.returncode == 0, done.stderr


def test_session_move_into_an_owned_dir_is_refused(project: Path, run: Run) -> None:
    assert run("import", str(INITIAL), "--session", "002", "--export-dir", "plan/002",
               cwd=project).returncode == 0
    before = snapshot(project)
    line = _refused(run("session", "move", "002", f"plan/{SESSION}", cwd=project))
    assert SESSION in line
    assert "choose another DIR" in line
    assert snapshot(project) == before


def test_a_jsonl_line_cannot_move_a_session(project: Path, run: Run) -> None:
    """A line of data must not choose where files get written, as it cannot create a session."""
    line = json.dumps({"type": "SessionMoved", "export_dir": str(project.parent)}) + "\n"
    before = snapshot(project)
    message = _refused(run("append", "--session", SESSION, "--jsonl", "-", input=line, cwd=project))
    assert "evstore session move" in message
    assert snapshot(project) == before


def test_session_move_of_an_unknown_session_is_refused(project: Path, run: Run) -> None:
    before = snapshot(project)
    _refused(run("session", "move", "nope", "x", cwd=project))
    assert snapshot(project) == before


# --- item 17: a projection replaces a file it never wrote --------------------------------


def test_finished_legacy_batch_removes_the_file_evstore_never_wrote(
    project_dir: Path, run: Run
) -> None:
    assert run("init", cwd=project_dir).returncode == 0
    legacy = project_dir / ".wreckit" / "batch-progress.json"
    legacy.parent.mkdir()
    doc = json.loads(WRECKIT.read_bytes())
    doc["pid"] = 2**22 + 7  # above pid_max defaults: never alive
    legacy.write_text(json.dumps(doc, indent=2) + "\n")
    assert run("import", "--batch-progress", str(legacy.relative_to(project_dir)),
               "--session", "wreckit", cwd=project_dir).returncode == 0
    started = run("batch", "start", *doc["queued_items"], "--session", "wreckit", "--json",
                  cwd=project_dir)
    assert json.loads(started.stdout)["action"] == "resumed", started.stdout
    while item := run("batch", "next", "--session", "wreckit", cwd=project_dir).stdout.strip():
        assert run("batch", "done", item, "--session", "wreckit", cwd=project_dir).returncode == 0
    assert run("batch", "finish", "--session", "wreckit", cwd=project_dir).returncode == 0
    assert legacy.exists()  # evstore never wrote it: the batch was imported, then run
    done = run("project", "--json", cwd=project_dir)
    assert done.returncode == 0, done.stderr
    (batch,) = [r for r in json.loads(done.stdout) if r["projection"] == "batch"]
    assert batch["action"] == "removed"
    assert not legacy.exists()


def test_doctor_reports_a_stale_file_evstore_never_wrote(project: Path, run: Run) -> None:
    stale = project / "plan" / SESSION / "batch-progress.json"
    stale.write_bytes(WRECKIT.read_bytes())
    done = run("doctor", "--json", cwd=project)
    assert done.returncode == 1, done.stdout
    codes = {(p["code"], Path(p["path"]).name) for p in json.loads(done.stdout)["problems"]}
    assert ("PROJECTION_STALE", "batch-progress.json") in codes


# --- item 11: a symlinked lost+found ----------------------------------------------------


def test_doctor_fix_does_not_follow_a_symlinked_lost_and_found(
    project: Path, run: Run, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (project / ".evstore" / "lost+found").symlink_to(outside)
    orphan = project / "plan" / SESSION / f".tasks.json.{'a' * 16}.tmp"
    orphan.write_bytes(b"half an export")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    done = run("doctor", "--fix", cwd=project)
    assert done.returncode == 1, done.stdout + done.stderr
    assert list(outside.iterdir()) == []
    assert orphan.read_bytes() == b"half an export"
    assert "lost+found" in done.stdout + done.stderr
