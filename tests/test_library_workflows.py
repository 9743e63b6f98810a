"""The workflows the CLI runs, called as a library would call them, on real journals: an
import and its typed outcome, `--until`/`--since` parsing, the status report."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from support import INITIAL, MIXED, SESSION, seed

from eventstore import Store, schema
from eventstore.errors import InvalidInputError
from eventstore.events import ItemStatusChanged
from eventstore.numbers import MAX_INT64
from eventstore.until import parse_until
from projections import DEFAULT
from projections.batch_runs import BatchRun
from projections.importer import ImportOutcome, import_batch_progress, import_file
from projections.status import StatusReport, status_report

Cli = Callable[..., Result]
LEGACY_BATCH = Path(__file__).parent / "fixtures" / "wreckit" / "live.batch-progress.56e853a.json"


@pytest.fixture
def empty(project_dir: Path) -> Iterator[Store]:
    """A new journal with no session, in a project holding plan/<SESSION>/tasks.json."""
    with Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT, create=True) as s:
        yield s


def _pretty(value: object) -> str:
    """What the CLI's `--json` prints for `value`."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n"


def _edited(project_dir: Path, status: str = "Complete") -> Path:
    doc = json.loads(INITIAL.read_bytes())
    doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] = status
    path = project_dir / "edited.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


# --- import ------------------------------------------------------------------------------


def test_an_import_seeds_a_new_session_and_says_where_it_stands(
    empty: Store, project_dir: Path
) -> None:
    steps: list[str] = []
    path = project_dir / "plan" / SESSION / "tasks.json"
    outcome = import_file(empty, path, SESSION, stage=steps.append)
    assert isinstance(outcome, ImportOutcome)
    assert outcome.session == SESSION
    assert (outcome.events, outcome.first_seq, outcome.last_seq, outcome.version) == (2, 1, 2, 2)
    assert outcome.export_dir == empty.export_dir(SESSION)
    assert outcome.export_dir == (project_dir / "plan" / SESSION).resolve()
    assert outcome.warnings == ()
    assert steps == [
        f"reading {path}", f"parsing {path}", f"appending {path} to new session {SESSION}",
    ]
    assert [e.type for e in empty.read(SESSION)] == ["SessionCreated", "BacklogImported"]
    assert empty.state(SESSION, "tasks").doc == json.loads(INITIAL.read_bytes())
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.events = 0  # type: ignore[misc]


def test_a_reimport_appends_only_the_differences(store: Store, project_dir: Path) -> None:
    unchanged = import_file(store, project_dir / "plan" / SESSION / "tasks.json", SESSION)
    assert unchanged.events == 0
    assert (unchanged.first_seq, unchanged.last_seq, unchanged.version) == (None, None, 2)
    steps: list[str] = []
    reported: list[tuple[int, int | None]] = []
    edited = _edited(project_dir)
    outcome = import_file(store, edited, SESSION, progress=lambda *done: reported.append(done),
                          stage=steps.append)
    assert (outcome.events, outcome.first_seq, outcome.last_seq, outcome.version) == (1, 3, 3, 3)
    assert steps[2:] == [f"comparing {edited} with session {SESSION}",
                         f"appending 1 event(s) to session {SESSION}"]
    assert reported
    assert reported[-1][0] == reported[-1][1]  # the append, to its end
    (event,) = store.read(SESSION, after=2)
    assert (event.type, event.data["item_id"], event.data["status"]) == (
        "ItemStatusChanged", "P1.M1.T1.S1", "Complete",
    )


def test_an_import_into_a_session_that_moved_on_keeps_the_newer_update(
    store: Store, project_dir: Path
) -> None:
    """A recovery file written before the journal's latest update brings only what it
    changed, and warns about what it would have undone."""
    store.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S2", status="Complete")])
    pending = json.loads(INITIAL.read_bytes())
    pending["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] = "Implementing"
    recovery = {"version": "1.0", "timestamp": "2020-01-01T00:00:00.000Z",
                "sessionPath": f"plan/{SESSION}", "pendingUpdates": pending,
                "error": {"message": "EBUSY", "attempts": 3}, "pendingCount": 1}
    failed = project_dir / "plan" / SESSION / "tasks.json.failed"
    failed.write_text(json.dumps(recovery))
    outcome = import_file(store, failed, SESSION)
    assert outcome.events == 1
    assert outcome.version == outcome.last_seq == 4
    task = store.state(SESSION, "tasks").doc["backlog"][0]["milestones"][0]["tasks"][0]
    statuses = [s["status"] for s in task["subtasks"][:2]]
    assert statuses == ["Implementing", "Complete"]


def test_strict_refuses_a_file_that_breaks_the_schema_and_writes_nothing(
    empty: Store, project_dir: Path
) -> None:
    """A real file with two story_points of 0.5: refused with strict, else kept with a
    warning per problem."""
    real = project_dir / "plan" / SESSION / "tasks.json"
    real.write_bytes(MIXED.read_bytes())
    with pytest.raises(InvalidInputError, match=r"breaks the pipeline's backlog schema \(2 prob"):
        import_file(empty, real, SESSION, strict=True)
    assert empty.journal.head() == 0
    kept = import_file(empty, real, SESSION)
    assert kept.events == 2
    assert len(kept.warnings) == 2
    assert all("story_points" in w and "kept as is" in w for w in kept.warnings)


def test_a_legacy_batch_progress_file_becomes_the_unfinished_batch(
    empty: Store, project_dir: Path
) -> None:
    outcome = import_batch_progress(empty, LEGACY_BATCH, "wreckit", ".wreckit")
    assert outcome.session == "wreckit"
    assert outcome.first_seq == 1
    assert outcome.events == outcome.last_seq == outcome.version
    assert outcome.export_dir == (project_dir / ".wreckit").resolve()
    assert outcome.warnings == ()
    batch = empty.state("wreckit", "batch").batch
    assert batch.batch_id == json.loads(LEGACY_BATCH.read_bytes())["session_id"]


def test_the_outcome_as_a_dict_is_what_import_json_prints(
    store: Store, project_dir: Path, cli: Cli
) -> None:
    """The CLI prints `as_dict()`: same keys in the same order, same values."""
    edited = _edited(project_dir, "Implementing")
    library = import_file(store, edited, SESSION)
    assert list(library.as_dict()) == [
        "session", "events", "first_seq", "last_seq", "version", "export_dir", "warnings",
    ]
    printed = cli("import", str(edited), "-s", SESSION, "--json")
    assert printed.exit_code == 0, printed.stderr
    unchanged = dataclasses.replace(library, events=0, first_seq=None, last_seq=None)
    assert printed.stdout == _pretty(unchanged.as_dict())


# --- --until / --since -------------------------------------------------------------------


T0 = datetime(2026, 1, 13, 12, 0, tzinfo=UTC)


@pytest.fixture
def timed(project_dir: Path) -> Iterator[Store]:
    """A journal whose events were recorded a minute apart from T0 (seq 1 at T0)."""
    moments = (T0 + timedelta(minutes=n) for n in range(1000))
    path = project_dir / ".evstore" / "journal.db"
    with Store.open(path, projections=DEFAULT, create=True, clock=lambda: next(moments)) as s:
        seed(s, SESSION, INITIAL, f"plan/{SESSION}")  # seq 1 and 2, one append: one moment
        for item in ("P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T1.S3"):
            s.append(SESSION, [ItemStatusChanged(item_id=item, status="Complete")])
        yield s


def test_until_a_seq_is_that_seq_without_reading_the_journal() -> None:
    class Unreadable:
        def seq_at(self, moment: datetime) -> int:
            raise AssertionError(moment)

    assert parse_until(Unreadable(), "3") == 3
    assert parse_until(Unreadable(), " 0 ") == 0
    assert parse_until(Unreadable(), "9" * 30) == MAX_INT64  # past any journal: the end


def test_until_a_time_is_the_last_seq_recorded_by_then(timed: Store) -> None:
    journal = timed.journal
    recorded = [(e.seq, e.recorded_at) for e in journal.read()]
    assert len(recorded) == 5
    assert parse_until(journal, "2026-01-13T12:02:30Z") == 4  # seq 3 at +1 min, seq 4 at +2
    assert parse_until(journal, "2026-01-13T12:02:00+00:00") == 4  # at the moment: included
    assert parse_until(journal, "2026-01-13T12:02:00") == 4  # no offset: UTC
    assert parse_until(journal, "2026-01-13T14:01:59+02:00") == 3  # an offset is honoured
    assert parse_until(journal, "2026-01-13T11:59:59Z") == 0  # before the first event
    assert parse_until(journal, "2027-01-01") == 5


@pytest.mark.parametrize("bad", ["yesterday", "-1", "²", "", "12:00 tomorrow", "1e3"])
def test_until_refuses_anything_else_naming_the_option(timed: Store, bad: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        parse_until(timed.journal, bad)
    assert str(refused.value) == (
        f"invalid --until value {bad!r}: expected a seq number or an ISO 8601 time"
    )
    with pytest.raises(InvalidInputError, match=r"^invalid --since value "):
        parse_until(timed.journal, bad, option="--since")


# --- status ------------------------------------------------------------------------------


def test_the_status_of_a_session_never_exported(store: Store) -> None:
    report = status_report(store)
    assert isinstance(report, StatusReport)
    assert report.current is False
    journal = report.journal
    assert journal.path == str(store.journal.path.resolve())
    assert journal.head_seq == 2
    assert journal.schema_version == schema.latest_version("sqlite")
    assert journal.latest_schema_version == schema.latest_version("sqlite")
    assert not journal.outdated
    assert journal.bytes is not None
    assert journal.bytes > 0
    (session,) = report.sessions
    assert (session.session, session.events, session.version) == (SESSION, 2, 2)
    assert session.export_dir == str(store.export_dir(SESSION))
    assert session.shared_with == ()
    assert session.batch is None
    assert [p.name for p in session.projections] == [
        "tasks", "batch", "fix-history-json", "fix-history-md",
    ]
    assert all((p.checkpoint_seq, p.lag, p.current) == (None, 2, False)
               for p in session.projections)
    assert (report.last_export_at, report.last_error, report.breakers) == (None, None, {})


def test_the_status_after_an_export_and_with_a_batch_running(store: Store) -> None:
    store.project()
    exported = status_report(store)
    assert exported.current is True
    (session,) = exported.sessions
    assert all((p.checkpoint_seq, p.lag) == (2, 0) for p in session.projections)
    assert exported.last_export_at == max(p.exported_at for p in session.projections)
    BatchRun(store, SESSION).start(["a", "b", "c"], parallel=2, owner_pid=1)
    BatchRun(store, SESSION).next()
    running = status_report(store)
    batch = running.sessions[0].batch
    assert batch is not None
    assert (batch.owner_pid, batch.remaining, batch.in_flight) == (1, 2, ("a",))
    assert running.current is False  # the batch's events are not exported yet
    assert running.journal.head_seq == 4


def test_the_status_as_a_dict_is_what_status_json_prints(store: Store, cli: Cli) -> None:
    store.project()
    store.append(SESSION, [ItemStatusChanged(item_id="P1", status="Complete")])
    report = status_report(store)
    printed = cli("status", "--json")
    assert printed.exit_code == 1  # a projection lags
    assert printed.stdout == _pretty(report.as_dict())
    assert list(report.as_dict()) == ["journal", "sessions", "last_export_at", "last_error",
                                      "breakers", "current"]
