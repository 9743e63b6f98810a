"""Issue 11, "nothing lost whatever the operator does": event ids reused for other events,
integers and JSON no parser should see, legacy batch files that would run an item twice.

Each case runs the real `evstore` command against a real journal and checks the exit
code, the one-line message and, for refusals, that no byte of the project changed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import SESSION, snapshot

Run = Callable[..., subprocess.CompletedProcess[str]]
HUGE = "9" * 5000


@pytest.fixture
def seeded(project_dir: Path, run: Run) -> Path:
    """The real backlog imported and projected, through the command users run."""
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION], ["project"]):
        assert run(*args, cwd=project_dir).returncode == 0
    return project_dir


def refused(run: Run, root: Path, *args: str, code: int = 2) -> str:
    """Run a command that must be refused: exit `code`, one line, nothing written."""
    before = snapshot(root)
    result = run(*args, cwd=root)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evstore: error: "), result.stderr
    assert "please report it" not in lines[0] and "Traceback" not in result.stderr
    assert snapshot(root) == before
    return lines[0]


# --- item 6: an event id names one event ------------------------------------------------


def test_a_reused_event_id_for_another_event_is_a_conflict_not_a_duplicate(
    seeded: Path, run: Run
) -> None:
    first = run("append", "-s", SESSION, "P1", "Complete", "--event-id", "k2", "--json", cwd=seeded)
    assert first.returncode == 0 and json.loads(first.stdout)["duplicate"] is False
    line = refused(run, seeded, "append", "-s", SESSION, "P2", "Failed", "--event-id", "k2", code=3)
    assert "'k2'" in line and "different event" in line
    retry = run("append", "-s", SESSION, "P1", "Complete", "--event-id", "k2", "--json", cwd=seeded)
    assert retry.returncode == 0 and json.loads(retry.stdout)["duplicate"] is True


def test_a_reused_event_id_in_jsonl_with_other_content_is_a_conflict(
    seeded: Path, run: Run
) -> None:
    line = {"item_id": "P1", "status": "Complete", "event_id": "j1"}
    (seeded / "a.jsonl").write_text(json.dumps(line) + "\n")
    assert run("append", "-s", SESSION, "--jsonl", "a.jsonl", cwd=seeded).returncode == 0
    (seeded / "b.jsonl").write_text(json.dumps({**line, "reason": "other"}) + "\n")
    assert "'j1'" in refused(run, seeded, "append", "-s", SESSION, "--jsonl", "b.jsonl", code=3)


def test_an_event_id_with_nul_is_refused(seeded: Path, run: Run) -> None:
    (seeded / "nul.jsonl").write_text(
        json.dumps({"item_id": "P1", "status": "Complete", "event_id": "a\x00b"}) + "\n"
    )
    assert "NUL" in refused(run, seeded, "append", "-s", SESSION, "--jsonl", "nul.jsonl")


# --- item 10: every integer option is bounded --------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["batch", "start", "P1", "-s", SESSION, "--parallel", "99999999999999999999"], "--parallel"),
        (["batch", "start", "P1", "-s", SESSION, "--parallel", "9223372036854775808"], "--parallel"),
        (["batch", "start", "P1", "-s", SESSION, "--parallel", HUGE], "5000 characters"),
        (["batch", "start", "P1", "-s", SESSION, "--owner-pid", "99999999999999999999"],
         "--owner-pid"),
        (["show", "--depth", HUGE], "--depth"),
        (["append", "-s", SESSION, "P1", "Complete", "--expected-version", "9" * 20],
         "--expected-version"),
        (["fail", "P1", "-s", SESSION, "--error", "x", "--max-fix-tasks", "9" * 20],
         "--max-fix-tasks"),
        (["project", "--flush-retries", HUGE], "--flush-retries"),
        (["watch", "--interval", "²"], "--interval"),
        (["watch", "--interval", HUGE], "--interval"),
    ],
)
def test_integers_out_of_range_are_refused_by_name(
    seeded: Path, run: Run, args: list[str], says: str
) -> None:
    line = refused(run, seeded, *args)
    assert says in line and "expected a whole number" in line
    assert len(line) < 300  # a 5,000-digit number is not echoed back whole


@pytest.mark.parametrize("option", ["--since", "--limit"])
def test_log_seq_and_limit_past_any_journal_mean_the_end(
    seeded: Path, run: Run, option: str
) -> None:
    for value in ("99999999999999999999", HUGE):
        result = run("log", option, value, "--json", cwd=seeded)
        assert result.returncode == 0, result.stderr
        seqs = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
        assert seqs == ([] if option == "--since" else [1, 2])


@pytest.mark.parametrize("command", ["errors", "replay"])
def test_a_5000_digit_seq_is_the_end_not_a_traceback(
    seeded: Path, run: Run, command: str, tmp_path: Path
) -> None:
    args = ["errors", "--since", HUGE] if command == "errors" else [
        "replay", "--until", HUGE, "--out", str(tmp_path / "out")]
    result = run(*args, cwd=seeded)
    assert result.returncode == 0, result.stderr


# --- item 10: JSON input errors say what is wrong ----------------------------------------


def test_a_5000_digit_integer_in_jsonl_is_named_as_too_large(seeded: Path, run: Run) -> None:
    (seeded / "big.jsonl").write_bytes(
        b'{"item_id": "P1", "status": "Complete"}\n\n'
        b'{"item_id": "P1", "status": "Complete", "n": ' + HUGE.encode() + b"}\n"
    )
    line = refused(run, seeded, "append", "-s", SESSION, "--jsonl", "big.jsonl")
    assert "big.jsonl:3: integer too large" in line and "infinity" not in line
    assert len(line) < 300


def test_invalid_utf8_in_jsonl_names_the_byte(seeded: Path, run: Run) -> None:
    (seeded / "bad.jsonl").write_bytes(b'{"item_id": "P1", "status": "Complete", "reason": "a\xffb"}\n')
    line = refused(run, seeded, "append", "-s", SESSION, "--jsonl", "bad.jsonl")
    assert "bad.jsonl:1: not valid UTF-8 at byte 52" in line and "surrogates" not in line


def test_invalid_utf8_and_huge_numbers_in_an_imported_file(seeded: Path, run: Run) -> None:
    tasks = seeded / "plan" / SESSION / "tasks.json"
    good = tasks.read_bytes()
    tasks.write_bytes(good.replace(b'"Planned"', b'"Pl\xe9nned"', 1))
    line = refused(run, seeded, "import", f"plan/{SESSION}/tasks.json", "-s", SESSION)
    assert f"not valid UTF-8 at byte {good.index(b'Planned') + 2}" in line
    tasks.write_bytes(good.replace(b"{", b'{"n": 1e400, ', 1))
    line = refused(run, seeded, "import", f"plan/{SESSION}/tasks.json", "-s", SESSION)
    assert "number too large at line 1" in line and "1e400" in line


# --- item 11: a legacy batch may not queue an item twice ---------------------------------


def test_legacy_batch_progress_queueing_an_item_twice_is_refused(seeded: Path, run: Run) -> None:
    progress = {
        "schema_version": 1, "session_id": "b-1", "pid": 999_999, "parallel": 1,
        "queued_items": ["P1.M1.T1", "P1.M1.T1"], "completed": [], "failed": [],
        "skipped": [], "current_item": None, "started_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "last_healing_at": None,
    }
    path = seeded / "plan" / SESSION / "batch-progress.json"
    path.write_text(json.dumps(progress))
    line = refused(run, seeded, "import", "--batch-progress", str(path), "-s", SESSION)
    assert "'P1.M1.T1' twice" in line
    path.write_text(json.dumps({**progress, "queued_items": ["P1.M1.T1"], "parallel": 2**63}))
    assert "parallel" in refused(run, seeded, "import", "--batch-progress", str(path), "-s", SESSION)


def test_a_batch_with_parallel_past_the_bound_is_refused_from_jsonl_too(
    seeded: Path, run: Run
) -> None:
    line = json.dumps({"type": "BatchStarted", "batch_id": "b", "pid": 1, "host": "h",
                       "parallel": 9223372036854775808, "queued_items": ["P1"]})
    before = snapshot(seeded)
    result = run("append", "-s", SESSION, "--jsonl", "-", cwd=seeded, input=line + "\n")
    assert result.returncode == 2 and "parallel" in result.stderr
    assert snapshot(seeded) == before
