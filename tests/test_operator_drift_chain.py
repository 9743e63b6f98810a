"""Nothing lost whatever the operator does (issue 11, items 3 and 7).

Real journals, real `evstore` processes: a hand-edited tasks.json survives `project` and
`watch` as a `.drift-<UTC time>` copy that `evstore import` adopts; a legacy
`tasks.json.failed` stamped in the future (a skewed clock) cannot undo acknowledged updates.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import SESSION, snapshot
from test_watch import json_logs, ok, start_watch, status_of, wait_for

Run = Callable[..., subprocess.CompletedProcess[str]]

TASKS = Path("plan") / SESSION / "tasks.json"
EDITED_ITEM = "P1.M1.T1.S3"


def hand_edit(tasks: Path) -> bytes:
    """What an operator does: flip one item's status in an editor, keep the rest."""
    doc = json.loads(tasks.read_bytes())
    subtask = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][2]
    assert subtask["id"] == EDITED_ITEM and subtask["status"] != "Complete"
    subtask["status"] = "Complete"
    edited = json.dumps(doc, indent=4).encode()  # another tool's formatting, too
    tasks.write_bytes(edited)
    return edited


def drift_copies(tasks: Path) -> list[Path]:
    return sorted(tasks.parent.glob(f"{tasks.name}.drift-*"))


def drift_records(run: Run) -> list[dict[str, Any]]:
    errors = json.loads(ok(run("errors", "--json")).stdout)
    return [e for e in errors["last"] if e["operation"] == "drift"]


def test_project_keeps_a_hand_edited_file_as_a_drift_copy_that_import_adopts(
    project_dir: Path, run: Run
) -> None:
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    ok(run("append", "--session", SESSION, "P1.M1.T1.S2", "Implementing"))
    ok(run("project"))
    tasks = project_dir / TASKS
    edited = hand_edit(tasks)

    projected = ok(run("project"))

    (copy,) = drift_copies(tasks)
    assert copy.read_bytes() == edited
    assert "projection_drift_overwritten" in projected.stderr
    assert copy.name in projected.stderr
    assert status_of(tasks, "P1.M1.T1.S2") == "Implementing"  # the journal's export
    assert status_of(tasks, EDITED_ITEM) != "Complete"
    (record,) = drift_records(run)
    assert record["component"] == "exporter" and str(copy) in record["message"]

    ok(run("import", str(copy), "--session", SESSION))  # the README's way to adopt edits
    ok(run("project"))
    assert status_of(tasks, EDITED_ITEM) == "Complete"
    assert status_of(tasks, "P1.M1.T1.S2") == "Implementing"


def test_project_twice_after_an_edit_makes_one_copy(project_dir: Path, run: Run) -> None:
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    ok(run("project"))
    tasks = project_dir / TASKS
    hand_edit(tasks)
    ok(run("project"))
    before = snapshot(project_dir)
    second = ok(run("project"))
    assert "projection_drift_overwritten" not in second.stderr
    assert len(drift_copies(tasks)) == 1
    assert {k: v for k, v in snapshot(project_dir).items() if "journal" not in k} == {
        k: v for k, v in before.items() if "journal" not in k}


def test_watch_keeps_a_hand_edited_file_before_exporting(
    project_dir: Path, run: Run, procs: list[subprocess.Popen[Any]], tmp_path: Path
) -> None:
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    tasks = project_dir / TASKS
    log = tmp_path / "watch.log"
    proc = start_watch(procs, project_dir, "--interval", "20", stderr=log)
    ok(run("append", "--session", SESSION, "P1.M1.T1.S1", "Complete"))
    wait_for(lambda: status_of(tasks, "P1.M1.T1.S1") == "Complete", "the first export")
    edited = hand_edit(tasks)
    ok(run("append", "--session", SESSION, "P1.M1.T1.S2", "Implementing"))
    wait_for(lambda: status_of(tasks, "P1.M1.T1.S2") == "Implementing", "the export after the edit")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)

    (copy,) = drift_copies(tasks)
    assert copy.read_bytes() == edited
    (warning,) = [e for e in json_logs(log) if e["event"] == "projection_drift_overwritten"]
    assert warning["kept"] == str(copy)
    assert len(drift_records(run)) == 1


# --- item 7: a legacy recovery file from a machine whose clock ran ahead ----------------------


def skewed_recovery_file(project_dir: Path, run: Run) -> Path:
    """The old pipeline's view (S1 still Planned, its own change: S3 Complete), written by a
    machine whose clock was a year ahead, after the journal recorded S1 Complete."""
    ok(run("init"))
    ok(run("import", str(TASKS), "--session", SESSION))
    pending = json.loads((project_dir / TASKS).read_bytes())
    ok(run("append", "--session", SESSION, "P1.M1.T1.S1", "Complete"))
    pending["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][2]["status"] = "Complete"
    recovery = {"version": "1.0", "timestamp": "2099-01-01T00:00:00.000Z",
                "sessionPath": str(project_dir / "plan" / SESSION), "pendingUpdates": pending,
                "error": {"message": "EBUSY", "attempts": 3}, "pendingCount": 1}
    failed = project_dir / "plan" / SESSION / "tasks.json.failed"
    failed.write_text(json.dumps(recovery, indent=2))
    return failed


def test_import_of_a_recovery_file_from_the_future_keeps_acknowledged_updates(
    project_dir: Path, run: Run
) -> None:
    failed = skewed_recovery_file(project_dir, run)
    imported = ok(run("import", str(failed), "--session", SESSION, "--json"))
    outcome = json.loads(imported.stdout)
    assert outcome["events"] == 1  # S3 only: S1's Planned is the file's stale view
    (warning,) = [w for w in outcome["warnings"] if "clock" in w]
    assert "2099-01-01" in warning and "clamped to the head" in warning
    ok(run("project"))
    tasks = project_dir / TASKS
    assert status_of(tasks, "P1.M1.T1.S1") == "Complete"
    assert status_of(tasks, EDITED_ITEM) == "Complete"


def test_doctor_fix_of_a_recovery_file_from_the_future_keeps_acknowledged_updates(
    project_dir: Path, run: Run
) -> None:
    skewed_recovery_file(project_dir, run)
    ok(run("project"))
    checked = run("doctor", "--json")
    assert checked.returncode == 1
    (problem,) = json.loads(checked.stdout)["problems"]
    assert problem["code"] == "LEGACY_RECOVERY_FILE" and "clamped to the head" in problem["message"]
    fixed = run("doctor", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "legacy_timestamp_clamped" in fixed.stderr
    tasks = project_dir / TASKS
    assert status_of(tasks, "P1.M1.T1.S1") == "Complete"
    assert status_of(tasks, EDITED_ITEM) == "Complete"
    log = [json.loads(line) for line in ok(run("log", "--json")).stdout.splitlines()]
    assert [e["data"].get("status") for e in log if e["data"].get("item_id") == "P1.M1.T1.S1"] == [
        "Complete"]
