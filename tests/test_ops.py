"""`evstore status` and `evstore errors` (docs/design.md §10): read-only reports."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from support import SESSION, failing_store, snapshot

from eventstore import ExportError, Store, schema
from eventstore.events import ErrorRecorded, ItemStatusChanged
from projections import DEFAULT
from projections.batch_runs import BatchRun

Cli = Callable[..., Result]


@pytest.fixture
def project(cli: Cli, project_dir: Path) -> Path:
    cli("init")
    cli("import", f"plan/{SESSION}/tasks.json", "-s", SESSION)
    return project_dir


def test_status_is_current_after_project_and_lags_after_an_append(project: Path, cli: Cli) -> None:
    assert cli("project").exit_code == 0
    fine = cli("status", "--json")
    assert fine.exit_code == 0
    report = json.loads(fine.stdout)
    assert report["current"] is True
    assert report["journal"]["head_seq"] == 2
    assert report["journal"]["schema_version"] == schema.latest_version("sqlite")
    assert report["journal"]["bytes"] > 0
    (session,) = report["sessions"]
    assert (session["session"], session["events"]) == (SESSION, 2)
    assert [p["name"] for p in session["projections"]] == ["tasks", "batch", "fix-history-json", "fix-history-md"]
    assert all(p["lag"] == 0 and p["checkpoint_seq"] == 2 for p in session["projections"])
    assert report["last_export_at"] is not None
    cli("append", "-s", SESSION, "P1", "Complete")
    behind = cli("status", "--json")
    assert behind.exit_code == 1
    lags = {p["name"]: p["lag"] for p in json.loads(behind.stdout)["sessions"][0]["projections"]}
    assert lags == dict.fromkeys(lags, 1)
    text = cli("status")
    assert text.exit_code == 1
    assert "tasks              1 event(s) behind" in text.stdout
    assert text.stdout.endswith("some projections lag: run `evstore project`\n")


def test_status_writes_nothing(project: Path, cli: Cli) -> None:
    cli("project")
    before = {k: v for k, v in snapshot(project).items() if not k.endswith("-shm")}
    cli("status")
    assert {k: v for k, v in snapshot(project).items() if not k.endswith("-shm")} == before


def test_status_shows_an_unfinished_batch_and_its_owner(project: Path, cli: Cli) -> None:
    with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT) as store:
        BatchRun(store, SESSION).start(["a", "b"], owner_pid=os.getpid())
        BatchRun(store, SESSION).next()
    batch = json.loads(cli("status", "--json").stdout)["sessions"][0]["batch"]
    assert (batch["owner_pid"], batch["owner_alive"], batch["remaining"], batch["in_flight"]) == (os.getpid(), True, 1, ["a"])
    assert f"owner pid {os.getpid()}" in cli("status").stdout


def test_status_and_errors_report_export_failures(project: Path, cli: Cli) -> None:
    """One export recovered after two EBUSY retries, one failed fast on ENOSPC."""
    store = failing_store(project, [errno.EBUSY, errno.EBUSY])
    store.project(SESSION)
    store.append(SESSION, [ItemStatusChanged(item_id="P1", status="Complete")])
    store = failing_store(project, [errno.ENOSPC])
    with pytest.raises(ExportError):
        store.project(SESSION)
    store.close()

    report = json.loads(cli("status", "--json").stdout)
    assert report["current"] is False
    assert report["last_error"]["errno"] == "ENOSPC"
    assert report["last_error"]["recovery_success"] is False
    assert report["last_error"]["error_type"] == "resource"
    assert "ENOSPC" in cli("status").stdout

    summary = json.loads(cli("errors", "--json").stdout)
    assert summary["total"] == 2
    assert summary["by_component"] == {"exporter": 2}
    assert summary["by_errno"] == {"EBUSY": 1, "ENOSPC": 1}
    assert summary["by_class"] == {"resource": 2}
    assert (summary["retried"], summary["retry_success_rate"], summary["recovered"]) == (1, 1.0, 1)
    assert summary["mean_resolution_ms"] is not None
    assert summary["worst_resolution_ms"] >= summary["mean_resolution_ms"]
    assert [r["errno"] for r in summary["last"]] == ["ENOSPC", "EBUSY"]  # newest first
    text = cli("errors").stdout
    assert text.startswith("2 error(s) recorded")
    assert "retry success rate 100%" in text
    first_seq = summary["last"][1]["seq"]
    later = json.loads(cli("errors", "--since", str(first_seq), "--json").stdout)
    assert [r["errno"] for r in later["last"]] == ["ENOSPC"]
    assert json.loads(cli("errors", "--since", "2999-01-01T00:00:00Z", "--json").stdout)["total"] == 0
    assert json.loads(cli("errors", "--since", "2000-01-01T00:00:00Z", "--json").stdout)["total"] == 2


def test_errors_since_time_and_bad_since(project: Path, cli: Cli) -> None:
    assert cli("errors").stdout == "no errors recorded\n"
    bad = cli("errors", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert bad.stderr == "evstore: error: invalid --since value 'last tuesday': expected a seq number or an ISO 8601 time\n"


def test_status_shows_the_breaker_of_each_watched_directory(project: Path, cli: Cli) -> None:
    with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT) as store:
        store.journal.append("_errors", [ErrorRecorded(
            component="breaker", operation="open", message=f"{project}/plan/{SESSION}: breaker open after 5 consecutive failures (EROFS); next trial in 30s",
            errno="EROFS", error_type="resource", severity="high", recoverability="degradable",
            category="configuration", retryable=False)])
    report = json.loads(cli("status", "--json").stdout)
    assert report["breakers"][f"{project}/plan/{SESSION}"]["state"] == "open"
    assert "breaker " in cli("status").stdout
    summary = json.loads(cli("errors", "--json").stdout)
    assert summary["total"] == 0  # breaker transitions are states, not failures
