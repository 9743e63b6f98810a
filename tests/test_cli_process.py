"""The real `evstore` command in subprocesses: what a pipeline's shell script sees."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from support import INITIAL, SESSION

Run = Callable[..., subprocess.CompletedProcess[str]]


def test_a_pipeline_session_end_to_end(project_dir: Path, run: Run) -> None:
    """init → import → append → append --jsonl → project: tasks.json holds every update,
    and a replay from the journal alone gives the same bytes."""
    assert run("init", cwd=project_dir).returncode == 0
    imported = run("import", f"plan/{SESSION}/tasks.json", "--session", SESSION, cwd=project_dir)
    assert imported.returncode == 0, imported.stderr
    assert run("append", "--session", SESSION, "P1.M1.T1.S1", "Complete", cwd=project_dir).returncode == 0
    batch = run("append", "--session", SESSION, "--jsonl", "-", "--json", cwd=project_dir,
                input='{"item_id": "P1.M1.T1.S2", "status": "Complete"}\n{"item_id": "P1.M1.T1", "status": "Implementing"}\n')
    assert json.loads(batch.stdout)["items_written"] == 2
    projected = run("--log-format", "json", "project", "--flush-retries", "3", cwd=project_dir)
    assert projected.returncode == 0, projected.stderr
    tasks = project_dir / "plan" / SESSION / "tasks.json"
    doc = json.loads(tasks.read_bytes())
    subtasks = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]
    assert [s["status"] for s in subtasks[:3]] == ["Complete", "Complete", "Planned"]
    assert run("replay", "--out", str(project_dir / "again"), cwd=project_dir).returncode == 0
    assert (project_dir / "again" / SESSION / "tasks.json").read_bytes() == tasks.read_bytes()


def test_errors_are_one_line_on_stderr_with_the_documented_code(project_dir: Path, run: Run) -> None:
    run("init", cwd=project_dir)
    run("import", f"plan/{SESSION}/tasks.json", "-s", SESSION, cwd=project_dir)
    cases = [
        (["append", "-s", SESSION, "P1", "Finished"], 2),
        (["append", "-s", SESSION, "P1", "Complete", "--expected-version", "0"], 3),
        (["--db", str(INITIAL), "log"], 5),
        (["project", "--flush-retries", "abc"], 2),
        (["frobnicate"], 2),
    ]
    for args, code in cases:
        result = run(*args, cwd=project_dir)
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.startswith("evstore: error: "), args
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert result.stdout == ""


def test_python_dash_m_cli_works_too(project_dir: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("evstore, version ")


def test_env_evstore_db_selects_the_journal(project_dir: Path, run: Run, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere" / "j.db"
    assert run("init", env={"EVSTORE_DB": str(elsewhere)}, cwd=project_dir).returncode == 0
    assert elsewhere.exists()
    assert not (project_dir / ".evstore").exists()
