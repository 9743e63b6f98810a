"""`evstore watch` notices a journal replaced under it (issue 11, item 8).

Real processes: an `evstore watch` and `evstore append`s on one journal; the operator
removes the journal's -wal (and -shm) or puts an older copy of the journal in its place
while they run. SQLite cannot prevent either; evstore must notice, say so, record it,
follow the journal now at the path, and lose nothing more: the acknowledged append made
after the removal survives the watcher's exit, and the file exported from the lost
events is kept as a .drift- copy.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from contextlib import closing
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import SESSION
from test_watch import json_logs, ok, start_watch, status_of, wait_for

Run = Callable[..., subprocess.CompletedProcess[str]]

TASKS = Path("plan") / SESSION / "tasks.json"
JOURNAL = Path(".evstore") / "journal.db"


def statuses(run: Run) -> list[tuple[int, str, str]]:
    lines = ok(run("log", "--json", "--session", SESSION)).stdout.splitlines()
    return [(e["seq"], e["data"]["item_id"], e["data"]["status"]) for e in map(json.loads, lines)
            if e["type"] == "ItemStatusChanged"]


def watched_journal(project_dir: Path, run: Run, procs: list[subprocess.Popen[Any]],
                    log: Path) -> subprocess.Popen[str]:
    """A watch that has exported S1 and S2 Complete (seq 3 and 4)."""
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    ok(run("project"))
    proc = start_watch(procs, project_dir, "--interval", "20", stderr=log)
    wait_for(lambda: any(e["event"] == "watch_started" for e in json_logs(log)), "the watch")
    ok(run("append", "--session", SESSION, "P1.M1.T1.S1", "Complete"))
    ok(run("append", "--session", SESSION, "P1.M1.T1.S2", "Complete"))
    wait_for(lambda: status_of(project_dir / TASKS, "P1.M1.T1.S2") == "Complete", "the export")
    return proc


def lost_and_kept(project_dir: Path, run: Run, proc: subprocess.Popen[str], log: Path,
                  what: str) -> None:
    """After the journal lost seq 3..4: an append made now is acknowledged at seq 3, the
    watcher notices, exports it, and keeps the file it had exported as a drift copy."""
    ok(run("append", "--session", SESSION, "P1.M1.T1.S3", "Complete"))  # acknowledged
    wait_for(lambda: any(e["event"] == "journal_replaced" for e in json_logs(log)),
             "the watcher noticing", timeout=10)
    tasks = project_dir / TASKS
    wait_for(lambda: status_of(tasks, "P1.M1.T1.S3") == "Complete", "the export after it")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)

    (warning,) = [e for e in json_logs(log) if e["event"] == "journal_replaced"]
    assert warning["what"] == what
    assert warning["seen_seq"] == 4 and warning["head"] in (2, 3)  # before or after S3 came
    # The acknowledged append survives the watcher's exit (its close must not write the
    # lost timeline back over the journal), and the lost timeline is kept, event by event.
    assert [(item, status) for _, item, status in statuses(run)] == [("P1.M1.T1.S3", "Complete")]
    rescued = Path(warning["rescued"])
    assert rescued.parent == project_dir / ".evstore" / "lost+found"
    kept = [json.loads(line) for line in rescued.read_text().splitlines()]
    assert [(e["seq"], e["data"]["item_id"]) for e in kept] == [
        (3, "P1.M1.T1.S1"), (4, "P1.M1.T1.S2")]
    assert status_of(tasks, "P1.M1.T1.S1") != "Complete"
    (copy,) = tasks.parent.glob("tasks.json.drift-*")  # what the lost events said, kept
    assert status_of(copy, "P1.M1.T1.S1") == status_of(copy, "P1.M1.T1.S2") == "Complete"
    errors = json.loads(ok(run("errors", "--json")).stdout)["last"]
    (record,) = [e for e in errors if e["component"] == "journal" and e["operation"] == "watch"]
    assert what in record["message"] and "up to seq 4" in record["message"]


def test_watch_notices_the_wal_removed_and_loses_nothing_more(
    project_dir: Path, run: Run, procs: list[subprocess.Popen[Any]], tmp_path: Path
) -> None:
    log = tmp_path / "watch.log"
    proc = watched_journal(project_dir, run, procs, log)
    for suffix in ("-wal", "-shm"):  # what a careless cleanup does
        (project_dir / f"{JOURNAL}{suffix}").unlink()
    lost_and_kept(project_dir, run, proc, log, "its -wal file was removed")


def test_watch_notices_the_journal_file_replaced_by_an_older_copy(
    project_dir: Path, run: Run, procs: list[subprocess.Popen[Any]], tmp_path: Path
) -> None:
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    ok(run("project"))
    backup = tmp_path / "backup.db"
    with closing(sqlite3.connect(project_dir / JOURNAL)) as live, \
            closing(sqlite3.connect(backup)) as copy:
        live.backup(copy)  # an operator's backup at seq 2
    log = tmp_path / "watch.log"
    proc = start_watch(procs, project_dir, "--interval", "20", stderr=log)
    wait_for(lambda: any(e["event"] == "watch_started" for e in json_logs(log)), "the watch")
    ok(run("append", "--session", SESSION, "P1.M1.T1.S1", "Complete"))
    ok(run("append", "--session", SESSION, "P1.M1.T1.S2", "Complete"))
    wait_for(lambda: status_of(project_dir / TASKS, "P1.M1.T1.S2") == "Complete", "the export")
    # The restore: the copy renamed into place, the old WAL and index removed with it.
    os.replace(backup, project_dir / JOURNAL)
    for suffix in ("-wal", "-shm"):
        (project_dir / f"{JOURNAL}{suffix}").unlink(missing_ok=True)
    lost_and_kept(project_dir, run, proc, log, "the journal file was replaced")
