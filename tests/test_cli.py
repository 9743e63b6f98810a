"""The CLI contract through click's CliRunner: outputs, exit codes, no partial writes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import Result

from eventstore.jsonfmt import loads
from support import INITIAL, MIXED, SESSION, snapshot

Cli = Callable[..., Result]
TASKS = Path("plan") / SESSION / "tasks.json"


@pytest.fixture
def imported(cli: Cli, project_dir: Path) -> Path:
    assert cli("init").exit_code == 0
    result = cli("import", str(TASKS), "--session", SESSION)
    assert result.exit_code == 0, result.stderr
    return project_dir


def stable(root: Path) -> dict[str, bytes]:
    """Files that must not change on refused input (SQLite's -shm index is a cache)."""
    return {k: v for k, v in snapshot(root).items() if not k.endswith("-shm")}


def test_init_creates_the_journal_and_is_idempotent(cli: Cli, project_dir: Path) -> None:
    first = cli("init")
    assert first.exit_code == 0
    assert first.stdout == f"Initialized empty evstore journal in {project_dir / '.evstore' / 'journal.db'}\n"
    assert (project_dir / ".evstore" / "journal.db").is_file()
    again = cli("init")
    assert again.stdout.startswith("Reinitialized existing evstore journal")


def test_commands_without_a_journal_say_to_init(cli: Cli) -> None:
    result = cli("log")
    assert result.exit_code == 5
    assert result.stderr.startswith("evstore: error: no .evstore/ in ")
    assert "evstore init" in result.stderr
    assert result.stderr.count("\n") == 1


def test_import_seeds_a_session_exporting_beside_the_file(imported: Path, cli: Cli) -> None:
    result = cli("log", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["SessionCreated", "BacklogImported"]
    assert events[0]["data"] == {"export_dir": f"plan/{SESSION}"}
    assert events[1]["data"]["source"] == str(TASKS)


def test_reimporting_the_same_file_changes_nothing(imported: Path, cli: Cli) -> None:
    result = cli("import", str(TASKS), "--session", SESSION)
    assert result.exit_code == 0
    assert result.stdout == f"{TASKS}: no changes to session {SESSION}\n"


def test_importing_an_edited_file_appends_only_its_differences(imported: Path, cli: Cli) -> None:
    """A hand-edited tasks.json joins the history as status events, not a new seed."""
    doc = loads((imported / TASKS).read_bytes())
    doc["backlog"][0]["status"] = "Complete"
    doc["backlog"][1]["milestones"][0]["status"] = "Failed"
    edited = imported / "edited.json"
    edited.write_bytes(orjson.dumps(doc))
    result = cli("import", str(edited), "--session", SESSION, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["events"] == 2
    types = [json.loads(line)["type"] for line in cli("log", "--json", "--since", "2").stdout.splitlines()]
    assert types == ["ItemStatusChanged", "ItemStatusChanged"]


def test_unknown_statuses_are_kept_with_a_warning(cli: Cli, project_dir: Path) -> None:
    cli("init")
    odd = project_dir / "odd.json"
    odd.write_text('{"backlog": [{"type": "Phase", "id": "P1", "title": "x", "status": "InProgress", "milestones": []}]}')
    result = cli("import", str(odd), "--session", "odd")
    assert result.exit_code == 0
    assert "item P1 has status 'InProgress', outside the vocabulary; kept as is" in result.stderr
    cli("project")
    assert b'"status": "InProgress"' in odd.read_bytes()


def test_legacy_failed_file_is_imported_as_events(imported: Path, cli: Cli) -> None:
    """A tasks.json.failed from the old pipeline: its pending updates become events, the
    next project writes them, and evstore itself never writes a .failed file."""
    pending = loads((imported / TASKS).read_bytes())
    pending["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] = "Complete"
    pending["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][1]["status"] = "Implementing"
    recovery = {
        "version": "1.0",
        "timestamp": "2026-01-24T10:00:00.000Z",
        "sessionPath": str(imported / "plan" / SESSION),
        "pendingUpdates": pending,
        "error": {"message": "EBUSY: resource busy or locked", "code": "EBUSY", "attempts": 3},
        "pendingCount": 2,
    }
    failed = imported / "plan" / SESSION / "tasks.json.failed"
    failed.write_text(json.dumps(recovery, indent=2))
    result = cli("import", str(failed), "--session", SESSION, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["events"] == 2
    assert cli("project").exit_code == 0
    doc = loads((imported / TASKS).read_bytes())
    subtasks = doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]
    assert [s["status"] for s in subtasks[:2]] == ["Complete", "Implementing"]
    assert sorted(p.name for p in (imported / "plan" / SESSION).iterdir()) == [".evstore.lock", "tasks.json", "tasks.json.failed"]


def test_legacy_failed_file_can_seed_a_new_session(cli: Cli, project_dir: Path) -> None:
    """With no session yet, the pending backlog seeds one exporting to its sessionPath."""
    cli("init")
    target = project_dir / "plan" / "002"
    recovery = {"version": "1.0", "timestamp": "t", "sessionPath": str(target),
                "pendingUpdates": loads(MIXED.read_bytes()), "error": {"message": "x", "attempts": 3}, "pendingCount": 1}
    (project_dir / "rec.failed").write_text(json.dumps(recovery))
    assert cli("import", "rec.failed", "--session", "002").exit_code == 0
    assert cli("project", "--session", "002").exit_code == 0
    assert (target / "tasks.json").read_bytes() == MIXED.read_bytes()


def test_append_one_status_change(imported: Path, cli: Cli) -> None:
    result = cli("append", "--session", SESSION, "P1.M1.T1.S1", "Complete")
    assert result.exit_code == 0
    assert result.stdout == f"{SESSION} P1.M1.T1.S1 → Complete (seq 3, version 3)\n"
    as_json = json.loads(cli("append", "-s", SESSION, "P1.M1", "Implementing", "--reason", "agent", "--json").stdout)
    assert as_json["last_seq"] == as_json["version"] == 4
    (last,) = [json.loads(line) for line in cli("log", "--json", "--since", "3").stdout.splitlines()]
    assert last["data"] == {"item_id": "P1.M1", "status": "Implementing", "reason": "agent"}
    assert last["meta"]["tool"] == "evstore-cli"


def test_append_with_an_event_id_is_idempotent(imported: Path, cli: Cli) -> None:
    first = cli("append", "-s", SESSION, "P1", "Complete", "--event-id", "run-1-step-4")
    again = cli("append", "-s", SESSION, "P1", "Complete", "--event-id", "run-1-step-4")
    assert first.exit_code == again.exit_code == 0
    assert again.stdout == "already appended (seq 3..3): nothing written\n"
    assert len(cli("log", "--json").stdout.splitlines()) == 3


def test_a_duplicate_jsonl_append_reports_nothing_written(imported: Path, cli: Cli) -> None:
    lines = '{"item_id": "P1", "status": "Complete", "event_id": "a"}\n{"item_id": "P2", "status": "Complete", "event_id": "b"}\n'
    first = json.loads(cli("append", "-s", SESSION, "--jsonl", "-", "--json", input=lines).stdout)
    again = json.loads(cli("append", "-s", SESSION, "--jsonl", "-", "--json", input=lines).stdout)
    assert (first["items_written"], first["write_ops_saved"], first["efficiency"]) == (2, 1, "50.0%")
    assert again["duplicate"] is True
    assert (again["items_written"], again["write_ops_saved"], again["efficiency"]) == (0, 0, "0.0%")
    assert (again["first_seq"], again["last_seq"]) == (first["first_seq"], first["last_seq"])


def test_expected_version_conflict_exits_3(imported: Path, cli: Cli) -> None:
    assert cli("append", "-s", SESSION, "P1", "Complete", "--expected-version", "2").exit_code == 0
    before = stable(imported)
    late = cli("append", "-s", SESSION, "P2", "Complete", "--expected-version", "2")
    assert late.exit_code == 3
    assert late.stderr == f"evstore: error: session '{SESSION}' is at version 3, expected 2: re-read and retry\n"
    assert stable(imported) == before


def test_append_jsonl_is_one_transaction_with_stats(imported: Path, cli: Cli) -> None:
    lines = "\n".join([
        '{"item_id": "P1.M1.T1.S1", "status": "Complete"}',
        "",
        '{"type": "ItemStatusChanged", "item_id": "P1.M1.T1.S2", "status": "Implementing", "reason": "r"}',
        '{"type": "ItemUpdated", "data": {"item_id": "P1", "changes": {"owner": "bot"}}, "seq": 99, "stream": "x"}',
        '{"item_id": "P1.M1.T1.S3", "status": "Failed", "event_id": "e-3"}',
    ])
    result = cli("append", "-s", SESSION, "--jsonl", "-", input=lines)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"appended 4 event(s) to {SESSION} in one transaction (seq 3..6, version 6); "
        "write_ops_saved=3 efficiency=75.0%\n"
    )
    events = [json.loads(line) for line in cli("log", "--json", "--since", "2").stdout.splitlines()]
    assert len({e["recorded_at"] for e in events}) == 1
    assert events[3]["event_id"] == "e-3"
    assert events[2]["data"]["changes"] == {"owner": "bot"}


def test_project_replay_show_and_log(imported: Path, cli: Cli) -> None:
    cli("append", "-s", SESSION, "P1.M1.T1.S1", "Complete")
    projected = cli("project", "--json")
    assert projected.exit_code == 0
    entry = next(e for e in json.loads(projected.stdout) if e["projection"] == "tasks")
    assert (entry["action"], entry["seq"], entry["events_applied"]) == ("written", 3, 3)
    assert cli("project").stdout == f"{SESSION}: {imported / TASKS} unchanged (seq 3, +0 event(s))\n"

    written = (imported / TASKS).read_bytes()
    (imported / TASKS).unlink()
    assert cli("replay").exit_code == 0
    assert (imported / TASKS).read_bytes() == written

    shown = cli("show", "--json")
    (summary,) = json.loads(shown.stdout)
    assert summary["counts"] == {"Planned": 133, "Ready": 1, "Complete": 1}
    tree = cli("show", "--depth", "1")
    assert SESSION in tree.stdout
    assert "P1 Phase 1: Foundation" in tree.stdout

    log = cli("log", "--since", "2").stdout
    assert log.splitlines()[0].split()[0] == "3"
    assert "ItemStatusChanged  P1.M1.T1.S1 → Complete" in log


def test_replay_until_reproduces_an_earlier_state(imported: Path, cli: Cli) -> None:
    cli("append", "-s", SESSION, "P1.M1.T1.S1", "Complete")
    cli("project")
    then = (imported / TASKS).read_bytes()
    cli("append", "-s", SESSION, "P1.M1.T1.S2", "Complete")
    cli("project")
    result = cli("replay", "--session", SESSION, "--until", "3", "--out", "then")
    assert result.exit_code == 0, result.stderr
    assert (imported / "then" / "tasks.json").read_bytes() == then
    everything = cli("replay", "--until", "2999-01-01T00:00:00Z", "--out", "all")
    assert everything.exit_code == 0
    assert (imported / "all" / SESSION / "tasks.json").read_bytes() == (imported / TASKS).read_bytes()
    before_time = cli("replay", "-s", SESSION, "--until", "2000-01-01", "--out", "none")
    assert before_time.exit_code == 0
    assert not (imported / "none" / "tasks.json").exists()


BAD_INPUTS = [
    # (args, stdin, exit code, what the one-line message must contain)
    (["import", "broken.json", "-s", SESSION], None, 2, "broken.json: not valid JSON"),
    (["import", "notbacklog.json", "-s", SESSION], None, 2, 'notbacklog.json: not a backlog: expected an object with a "backlog" array'),
    (["import", "missing.json", "-s", SESSION], None, 2, "cannot read missing.json"),
    (["append", "-s", SESSION, "P9.M9.T9", "Complete"], None, 2, f"unknown item 'P9.M9.T9' in session '{SESSION}'"),
    (["append", "-s", SESSION, "P1", "Done"], None, 2, "invalid status 'Done': expected one of Planned"),
    (["append", "-s", "../x", "P1", "Complete"], None, 2, "invalid session id '../x'"),
    (["append", "-s", "a/b", "P1", "Complete"], None, 2, "invalid session id 'a/b'"),
    (["append", "-s", "", "P1", "Complete"], None, 2, "invalid session id ''"),
    (["import", str(TASKS), "-s", ".."], None, 2, "invalid session id '..'"),
    (["append", "-s", "nope", "P1", "Complete"], None, 2, f"unknown session 'nope' (known: {SESSION})"),
    (["project", "--flush-retries", "-1"], None, 2, "invalid --flush-retries value '-1': expected a whole number from 0 to 10"),
    (["project", "--flush-retries", "11"], None, 2, "invalid --flush-retries value '11'"),
    (["project", "--flush-retries", "abc"], None, 2, "invalid --flush-retries value 'abc'"),
    (["append", "-s", SESSION, "--jsonl", "-"], '{"item_id": "P1", "status": "Complete"}\n\n{"item_id": "P1", "status": "Nope"}\n', 2, "<stdin>:3: invalid status 'Nope'"),
    (["append", "-s", SESSION, "--jsonl", "-"], '{"item_id": "P1", "status": "Complete"}\n{oops\n', 2, "<stdin>:2: not valid JSON"),
    (["append", "-s", SESSION, "--jsonl", "-"], '{"item_id": "P1", "status": "Complete"}\n{"item_id": "P404", "status": "Complete"}\n', 2, "unknown item 'P404'"),
    (["append", "-s", SESSION, "--jsonl", "-"], '{"type": "Nope"}\n', 2, "<stdin>:1: unknown event type 'Nope' (known: BacklogImported"),
    (["append", "-s", SESSION, "--jsonl", "-"], "\n\n", 2, "<stdin>: no events"),
    (["replay", "--until", "3"], None, 2, "replay --until needs --out DIR"),
    (["replay", "--until", "yesterday", "--out", "x"], None, 2, "invalid --until value 'yesterday'"),
    (["append", "-s", SESSION], None, 2, "missing ITEM STATUS"),
    (["--db", "garbage.db", "log"], None, 5, "garbage.db is not an SQLite database"),
    (["--db", "newer.db", "log"], None, 5, "newer.db has schema version 7, newer than this evstore supports"),
]


@pytest.mark.parametrize(("args", "stdin", "code", "message"), BAD_INPUTS, ids=[" ".join(a[0]) for a in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(
    imported: Path, cli: Cli, args: list[str], stdin: str | None, code: int, message: str
) -> None:
    """Exit 2 (input) or 5 (journal), one line on stderr naming the input, and every file
    (journal, exports) byte-for-byte as before."""
    (imported / "broken.json").write_text('{"backlog": [')
    (imported / "notbacklog.json").write_text('{"tasks": []}')
    (imported / "garbage.db").write_bytes(b"not a database, just text" * 100)
    shutil.copyfile(imported / ".evstore" / "journal.db", imported / "newer.db")
    with sqlite3.connect(imported / "newer.db") as raw:
        raw.execute("PRAGMA user_version=7")
    assert cli("project").exit_code == 0
    before = stable(imported)
    result = cli(*args, input=stdin)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith("evstore: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert stable(imported) == before


def test_env_flush_retries_is_validated_too(imported: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVSTORE_FLUSH_RETRIES", "12")
    result = cli("project")
    assert result.exit_code == 2
    assert "invalid --flush-retries value '12'" in result.stderr


def test_help_groups_commands_and_each_has_an_example(cli: Cli) -> None:
    top = cli("--help").stdout
    for section in ("Write commands", "Read commands", "Maintain commands"):
        assert section in top
    for command in ("init", "import", "append", "project", "replay", "show", "log"):
        text = cli(command, "--help").stdout
        assert "Example:" in text, command
        assert f"evstore {command}" in text, command


def test_json_logs_on_stderr_for_machines(imported: Path, cli: Cli) -> None:
    result = cli("--log-format", "json", "-v", "project")
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(r["event"] == "projection_exported" and r["level"] == "info" for r in records)
    assert result.stdout.startswith(SESSION)


def test_initial_fixture_is_the_demo_backlog() -> None:
    """The demo and these tests import the same real file."""
    assert INITIAL.name == "001_14b9dc2a33c7.tasks.49991f1.initial.json"


def test_importing_a_legacy_failed_file_never_undoes_newer_updates(imported: Path, cli: Cli) -> None:
    """The file was written before the journal recorded S1 Complete: its own change (S2)
    is applied, its stale view of S1 is not, and the user is told."""
    log = [json.loads(line) for line in cli("log", "--json").stdout.splitlines()]
    written_at = log[-1]["recorded_at"]  # just after the import, before the next update
    assert cli("append", "-s", SESSION, "P1.M1.T1.S1", "Complete").exit_code == 0
    pending = loads((imported / TASKS).read_bytes())  # the pipeline's view: S1 still Planned
    pending["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][1]["status"] = "Complete"
    recovery = {"version": "1.0", "timestamp": written_at, "sessionPath": str(imported / "plan" / SESSION),
                "pendingUpdates": pending, "error": {"message": "EBUSY", "attempts": 3}, "pendingCount": 1}
    (imported / "old.failed").write_text(json.dumps(recovery))
    result = cli("import", "old.failed", "-s", SESSION, "--json")
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["events"] == 1
    assert any("left as the journal has them" in w for w in outcome["warnings"])
    cli("project")
    subtasks = loads((imported / TASKS).read_bytes())["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"]
    assert [s["status"] for s in subtasks[:2]] == ["Complete", "Complete"]
