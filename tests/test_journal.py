"""The SQLite journal against real files: schema, durability settings, append semantics."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from eventstore import schema
from eventstore.errors import (
    ConcurrencyError,
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
    JournalNotFoundError,
    JournalSchemaError,
)
from eventstore.events import ItemStatusChanged, SessionCreated
from eventstore.journal import SQLiteJournal
from eventstore.retry import RetryPolicy


def status(item: str = "P1", value: str = "Complete") -> ItemStatusChanged:
    return ItemStatusChanged(item_id=item, status=value)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> SQLiteJournal:
    j = SQLiteJournal(tmp_path / "j.db", create=True)
    yield j
    j.close()


def pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_new_journal_is_wal_full_and_at_the_latest_schema(journal: SQLiteJournal) -> None:
    """WAL mode on disk, synchronous=FULL (2) on the connection, user_version = latest."""
    assert pragma(journal.path, "journal_mode") == "wal"
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert journal._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert journal.schema_version == schema.latest_version("sqlite") == 3


def test_durability_normal_is_an_explicit_choice(tmp_path: Path) -> None:
    """--durability normal sets synchronous=NORMAL (1)."""
    with SQLiteJournal(tmp_path / "j.db", create=True, durability="normal") as j:
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_missing_journal_is_not_created_unless_asked(tmp_path: Path) -> None:
    """Opening a journal that does not exist says how to make one, and creates nothing."""
    with pytest.raises(JournalNotFoundError, match="evstore init"):
        SQLiteJournal(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_append_assigns_gap_free_seq_and_per_stream_versions(journal: SQLiteJournal) -> None:
    """seq is global and gap-free; version counts per stream from 1."""
    a = journal.append("a", [status(), status()])
    b = journal.append("b", [status()])
    c = journal.append("a", [status()])
    assert (a.first_seq, a.last_seq, a.last_version) == (1, 2, 2)
    assert (b.first_seq, b.last_version) == (3, 1)
    assert (c.first_seq, c.last_version) == (4, 3)
    rows = [(e.seq, e.stream, e.version) for e in journal.read()]
    assert rows == [(1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3)]


def test_rows_carry_type_data_meta_time_and_ids(tmp_path: Path) -> None:
    """Every column of §3: JSON data without `type`, meta with pid/host/user/tool, UTC time."""
    moment = datetime(2026, 1, 13, 9, 26, 10, 123456, tzinfo=UTC)
    with SQLiteJournal(tmp_path / "j.db", create=True, clock=lambda: moment, tool="t") as j:
        j.append("s", [status("P1.M1")], correlation_id="run-7")
        (event,) = j.read()
    assert event.type == "ItemStatusChanged"
    assert event.data == {"item_id": "P1.M1", "status": "Complete", "reason": None}
    assert event.recorded_at == "2026-01-13T09:26:10.123456Z"
    assert set(event.meta) == {"pid", "host", "user", "tool", "correlation_id"}
    assert event.meta["tool"] == "t"
    assert event.meta["correlation_id"] == "run-7"
    assert len(event.event_id) == 36
    assert event.schema_version == 1


def test_expected_version_conflict_raises_and_writes_nothing(journal: SQLiteJournal) -> None:
    """A stale expected_version is a ConcurrencyError (exit 3) and the journal is unchanged."""
    journal.append("s", [status()], expected_version=0)
    with pytest.raises(ConcurrencyError, match="at version 1, expected 0") as caught:
        journal.append("s", [status(), status()], expected_version=0)
    assert caught.value.exit_code == 3
    assert journal.head() == 1
    assert journal.append("s", [status()], expected_version=1).last_version == 2


def test_repeated_event_id_returns_the_original_result(journal: SQLiteJournal) -> None:
    """A retried append (same ids) writes nothing and answers as the first time."""
    first = journal.append("s", [status(), status("P2")], event_ids=["e-1", "e-2"])
    journal.append("s", [status("P3")])
    again = journal.append("s", [status(), status("P2")], event_ids=["e-1", "e-2"])
    assert again.duplicate
    assert (again.first_seq, again.last_seq, again.last_version) == (first.first_seq, first.last_seq, 2)
    assert journal.head() == 3


def test_partly_used_event_ids_are_a_conflict(journal: SQLiteJournal) -> None:
    """Ids that match only part of an earlier append cannot be a retry of it."""
    journal.append("s", [status()], event_ids=["e-1"])
    with pytest.raises(ConcurrencyError, match="already used"):
        journal.append("s", [status(), status()], event_ids=["e-1", "e-2"])
    assert journal.head() == 1


def test_event_ids_repeating_within_one_append_are_refused(journal: SQLiteJournal) -> None:
    with pytest.raises(InvalidInputError, match="repeat"):
        journal.append("s", [status(), status()], event_ids=["x", "x"])


def test_check_hook_can_refuse_inside_the_transaction(journal: SQLiteJournal) -> None:
    """A refusal from the check hook rolls the whole append back."""

    def refuse(head: int, pending: list[object], events: object) -> None:
        assert head == 0
        assert len(pending) == 2
        assert len(events) == 2  # type: ignore[arg-type]
        raise InvalidInputError("no")

    with pytest.raises(InvalidInputError):
        journal.append("s", [status(), status()], check=refuse)
    assert journal.head() == 0


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET type = 'X'",
        "DELETE FROM events",
        "UPDATE events SET data = '{}' WHERE seq = 1",
    ],
)
def test_events_are_append_only(journal: SQLiteJournal, sql: str) -> None:
    """Triggers refuse UPDATE and DELETE, even from a raw connection."""
    journal.append("s", [status()])
    with sqlite3.connect(journal.path) as raw, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute(sql)
    assert journal.head() == 1


def test_data_must_be_valid_json(journal: SQLiteJournal) -> None:
    """The CHECK(json_valid(data)) constraint guards raw writers too."""
    with sqlite3.connect(journal.path) as raw, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        raw.execute(
            "INSERT INTO events (stream, version, type, data, meta, recorded_at, event_id)"
            " VALUES ('s', 1, 'X', '{not json', '{}', 't', 'id')"
        )


def test_unique_stream_version(journal: SQLiteJournal) -> None:
    """Two events cannot share a (stream, version)."""
    journal.append("s", [status()])
    with sqlite3.connect(journal.path) as raw, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        raw.execute(
            "INSERT INTO events (stream, version, type, data, meta, recorded_at, event_id)"
            " VALUES ('s', 1, 'X', '{}', '{}', 't', 'other-id')"
        )


def test_older_journal_is_migrated_keeping_its_events(tmp_path: Path) -> None:
    """A version-1 journal (events only) gains the checkpoints table and the (stream, seq) index on open."""
    path = tmp_path / "old.db"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=WAL")
    (_, statements) = schema.migrations("sqlite")[0]
    for statement in statements:
        raw.execute(statement)
    raw.execute("PRAGMA user_version=1")
    raw.execute(
        "INSERT INTO events (stream, version, type, data, meta, recorded_at, event_id)"
        " VALUES ('s', 1, 'SessionCreated', '{\"export_dir\": \"x\"}', '{}', '2026-01-01T00:00:00.000000Z', 'a')"
    )
    raw.commit()
    raw.close()
    with capture_logs() as logs, SQLiteJournal(path) as j:
        assert j.schema_version == 3
        assert [e.type for e in j.read()] == ["SessionCreated"]
        assert j.checkpoint("tasks", "s") is None
    assert [entry["to_version"] for entry in logs if entry["event"] == "journal_migrated"] == [2, 3]


def test_newer_journal_is_refused_untouched(tmp_path: Path) -> None:
    """A journal from a newer evstore is refused (exit 5) before anything is written."""
    path = tmp_path / "new.db"
    with SQLiteJournal(path, create=True) as j:
        j.append("s", [status()])
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version=99")
    before = path.read_bytes()
    with pytest.raises(JournalSchemaError, match="schema version 99, newer") as caught:
        SQLiteJournal(path)
    assert caught.value.exit_code == 5
    assert path.read_bytes() == before


@pytest.mark.parametrize("content", [b"this is not a database at all", b"{\"backlog\": []}", b"\x00" * 4096])
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    """Garbage where the journal should be: exit 5, the file left as it was."""
    path = tmp_path / "j.db"
    path.write_bytes(content)
    with pytest.raises(JournalCorruptError, match="not an SQLite database") as caught:
        SQLiteJournal(path)
    assert caught.value.exit_code == 5
    assert path.read_bytes() == content
    assert not (tmp_path / "j.db-wal").exists()


def test_someone_elses_sqlite_database_is_not_adopted(tmp_path: Path) -> None:
    """An SQLite file with foreign tables and no evstore schema is refused, not migrated."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(JournalCorruptError, match="not an evstore journal"):
        SQLiteJournal(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == [("people",)]


def test_busy_journal_is_retried_then_reported(tmp_path: Path) -> None:
    """A writer held out past busy_timeout retries with backoff (sleeps recorded), then
    raises JournalBusyError; each retry is logged at warning with its fields."""
    path = tmp_path / "j.db"
    slept: list[float] = []
    with SQLiteJournal(path, create=True) as setup:
        setup.append("s", [status()])
    journal = SQLiteJournal(path, busy_timeout_ms=10, busy_retry=RetryPolicy(retries=2, sleep=slept.append))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with capture_logs() as logs, pytest.raises(JournalBusyError, match="busy") as caught:
            journal.append("s", [status()])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert caught.value.exit_code == 5
    assert len(slept) == 2
    retries = [entry for entry in logs if entry["event"] == "journal_busy_retry"]
    assert [(r["attempt"], r["max_attempts"], r["log_level"]) for r in retries] == [(1, 3, "warning"), (2, 3, "warning")]
    assert journal.append("s", [status()]).last_version == 2  # fine once the lock is gone
    journal.close()


def test_busy_is_waited_out_when_the_other_writer_finishes(tmp_path: Path) -> None:
    """A writer that holds the lock briefly only delays the append (busy_timeout)."""
    path = tmp_path / "j.db"
    with SQLiteJournal(path, create=True) as j:
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.2, lambda: blocker.execute("COMMIT"))
        timer.start()
        assert j.append("s", [status()]).last_seq == 1
        timer.join()
        blocker.close()


def test_decide_runs_under_the_write_lock(journal: SQLiteJournal) -> None:
    """Events decided inside the transaction see the head as it is when the lock is held;
    an empty decision appends nothing."""
    journal.append("s", [status()])
    seen: list[int] = []

    def decide() -> list[ItemStatusChanged]:
        seen.append(journal.stream_version("s"))
        return [status("P2")] if seen[-1] == 1 else []

    first = journal.append("s", (), decide=decide)
    second = journal.append("s", (), decide=decide)
    assert (first.count, first.last_version, second.count) == (1, 2, 0)
    assert seen == [1, 2]
    assert journal.head() == 2


def test_read_filters(journal: SQLiteJournal) -> None:
    """after/until/limit/stream/types select by seq, in seq order."""
    journal.append("a", [SessionCreated(export_dir="x"), status(), status()])
    journal.append("b", [status()])
    assert [e.seq for e in journal.read(after=1, until=3)] == [2, 3]
    assert [e.seq for e in journal.read("b")] == [4]
    assert [e.seq for e in journal.read(limit=2)] == [1, 2]
    assert [e.seq for e in journal.read(types=["SessionCreated"])] == [1]


def test_seq_at_time_finds_the_last_event_recorded_by_then(tmp_path: Path) -> None:
    """--until TIME resolves to the last seq recorded at or before it."""
    times = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in range(10))
    with SQLiteJournal(tmp_path / "j.db", create=True, clock=lambda: next(times)) as j:
        for _ in range(3):
            j.append("s", [status()])
        assert j.seq_at(datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)) == 2
        assert j.seq_at(datetime(2025, 1, 1, tzinfo=UTC)) == 0


def test_checkpoint_round_trip(journal: SQLiteJournal) -> None:
    """Checkpoints keep seq, state bytes and the exported hash; saving again replaces."""
    from eventstore.journal import Checkpoint

    journal.save_checkpoint(Checkpoint("tasks", "s", 3, b"{}", "abc", "t"))
    journal.save_checkpoint(Checkpoint("tasks", "s", 5, orjson.dumps({"a": 1}), "def", "t2"))
    found = journal.checkpoint("tasks", "s")
    assert found is not None
    assert (found.seq, orjson.loads(found.state), found.exported_sha256) == (5, {"a": 1}, "def")
    assert journal.table_counts()["checkpoints"] == 1
