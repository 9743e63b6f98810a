"""`evstore history ITEM`: the item's timeline from the journal."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import Result

from eventstore.records import StoredEvent, format_time
from projections.history import item_history
from support import SESSION

Cli = Callable[..., Result]
S1 = "P1.M1.T1.S1"


def event(seq: int, kind: str, data: dict[str, object], minute: int) -> StoredEvent:
    at = format_time(datetime(2026, 1, 13, 9, 0, tzinfo=UTC) + timedelta(minutes=minute))
    return StoredEvent(seq, "s", seq, kind, data, {"tool": "t", "user": "u", "host": "h", "pid": 1}, at, "", 1)


def test_status_durations_and_the_events_that_touched_the_item() -> None:
    """Each status holds until the next change; the current one until now. Failures,
    fixes and batch outcomes of the item are listed; other items' events are not."""
    doc = {"backlog": [{"type": "Subtask", "id": S1, "status": "Planned"}]}
    events = [
        event(1, "BacklogImported", {"backlog": doc, "source": "f", "sha256": ""}, 0),
        event(2, "ItemStatusChanged", {"item_id": S1, "status": "Implementing", "reason": "agent"}, 10),
        event(3, "ItemStatusChanged", {"item_id": "P9", "status": "Complete"}, 11),
        event(4, "TaskFailed", {"item_id": S1, "error": "boom\nstack"}, 20),
        event(5, "FixTaskCreated", {"original_id": S1, "fix_id": "P1.M1.T1.S2", "attempt": 1, "error": "boom"}, 20),
        event(6, "BatchItemCompleted", {"batch_id": "b1", "item": S1}, 30),
        event(7, "ItemUpdated", {"item_id": S1, "changes": {"status": "Complete"}, "removed": []}, 40),
    ]
    now = datetime(2026, 1, 13, 10, 0, tzinfo=UTC)
    entries = item_history(events, S1, now=now)
    assert [(e["seq"], e["kind"]) for e in entries] == [
        (1, "imported"), (2, "status"), (4, "failed"), (5, "fix"), (6, "batch"), (7, "status")]
    assert [e.get("held_s") for e in entries if "held_s" in e] == [600.0, 1800.0, 1200.0]
    assert entries[1]["reason"] == "agent"
    assert entries[4]["outcome"] == "completed"
    assert entries[0]["by"] == {"tool": "t", "user": "u", "host": "h", "pid": 1}


def test_history_through_the_cli(cli: Cli) -> None:
    cli("init")
    cli("import", f"plan/{SESSION}/tasks.json", "-s", SESSION)
    cli("append", "-s", SESSION, S1, "Implementing", "--reason", "picked up")
    cli("fail", S1, "-s", SESSION, "--error", "tests failed")
    cli("append", "-s", SESSION, S1, "Complete")
    result = cli("history", S1)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{S1} in session {SESSION}"
    assert "imported as Planned" in lines[1]
    assert "→ Implementing [picked up]" in lines[2]
    assert "failed: tests failed" in lines[3]
    assert f"fix #1 P1.M1.T1.S5 for {S1}" in lines[4]
    assert "→ Complete" in lines[5]
    assert "evstore-cli" in lines[5]
    entries = json.loads(cli("history", S1, "--json").stdout)
    assert [e["kind"] for e in entries] == ["imported", "status", "failed", "fix", "status"]
    assert all(e["held_s"] >= 0 for e in entries if "held_s" in e)


@pytest.mark.parametrize(("args", "message"), [
    (["history", "NOPE"], "item 'NOPE' does not appear in session(s)"),
    (["history", S1, "-s", "../x"], "invalid session id"),
])
def test_history_of_unknown_items_is_refused(cli: Cli, args: list[str], message: str) -> None:
    cli("init")
    cli("import", f"plan/{SESSION}/tasks.json", "-s", SESSION)
    result = cli(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
