"""The journal contract (docs/design.md §3, §12), run unchanged on both backends.

Every test takes `backend` (or `journal`), parametrized as `sqlite` (a file in a temp
dir) and `postgresql` (a fresh database on the session's real server, tests/pgserver.py).
A backend helper hides only what cannot be neutral: how to open a journal, how to run
raw SQL beside it, how to hold its write lock, how to set its schema version by hand.
What is asserted is the same for both, and typed against the interface (`Journal`):
a test that needs a backend's own name for something is not a contract test.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from eventstore import schema
from eventstore.errors import (
    ConcurrencyError,
    InvalidInputError,
    JournalBusyError,
    JournalNotFoundError,
    JournalSchemaError,
)
from eventstore.events import ItemStatusChanged, ItemUpdated, SessionCreated
from eventstore.persistence import Journal
from eventstore.records import Checkpoint, Lookup
from eventstore.retry import RetryPolicy
from eventstore.sqlite import SQLiteJournal
from eventstore.staging import StagedEvents

pytest_plugins = ["pgserver"]  # the pg_server / pg_url fixtures

ROOT = Path(__file__).resolve().parent.parent
RAW_INSERT = (
    "INSERT INTO events (seq, stream, version, type, data, meta, recorded_at, event_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def status(item: str = "P1", value: str = "Complete") -> ItemStatusChanged:
    return ItemStatusChanged(item_id=item, status=value)  # type: ignore[arg-type]


# --- the two backends -----------------------------------------------------------------------


class SqliteBackend:
    name = "sqlite"

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "j.db"
        self.db = str(self.path)
        self.raw_error: type[Exception] = sqlite3.IntegrityError
        self.json_error: type[Exception] = sqlite3.IntegrityError  # CHECK(json_valid(...))

    def open(self, **kwargs: Any) -> Any:
        return SQLiteJournal(self.path, **kwargs)

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:
            return conn.execute(sql, params).fetchall()

    def set_version(self, version: int) -> None:
        self.raw(f"PRAGMA user_version={version}")

    def create_at_version_1(self) -> None:
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in schema.migrations("sqlite")[0][1]:
                conn.execute(statement)
            conn.execute("PRAGMA user_version=1")
            conn.commit()

    def fingerprint(self) -> object:
        return self.path.read_bytes()

    def is_empty(self) -> bool:
        return not self.path.exists()

    @contextlib.contextmanager
    def hold_write_lock(self) -> Iterator[threading.Event]:
        """Another connection holding the journal's write lock until `release` is set."""
        blocker = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Event()
        done = threading.Thread(target=lambda: (release.wait(30), blocker.execute("COMMIT")))
        done.start()
        try:
            yield release
        finally:
            release.set()
            done.join()
            blocker.close()

    def synchronous(self, journal: Journal) -> str:
        level = journal._conn.execute("PRAGMA synchronous").fetchone()[0]  # noqa: SLF001
        return {2: "full", 1: "normal"}[level]


class PostgresBackend:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415

        self.db = url
        self.raw_error = psycopg.errors.IntegrityError
        self.json_error = psycopg.errors.InvalidTextRepresentation  # the json type's input check

    def open(self, **kwargs: Any) -> Any:
        from eventstore.postgres import PostgresJournal  # noqa: PLC0415

        return PostgresJournal(self.db, **kwargs)

    def raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.db) as conn:
            cur = conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def set_version(self, version: int) -> None:
        self.raw("UPDATE evstore_schema SET version = ?", (version,))

    def create_at_version_1(self) -> None:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.db) as conn:
            for statement in schema.migrations("postgresql")[0][1]:
                conn.execute(statement)  # type: ignore[call-overload]
            conn.execute("INSERT INTO evstore_schema (version) VALUES (1)")

    def fingerprint(self) -> object:
        return self.raw(
            "SELECT (SELECT version FROM evstore_schema),"
            " (SELECT json_agg(e ORDER BY seq)::text FROM events e),"
            " (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')"
        )

    def is_empty(self) -> bool:
        return self.raw("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]

    @contextlib.contextmanager
    def hold_write_lock(self) -> Iterator[threading.Event]:
        import psycopg  # noqa: PLC0415

        from eventstore.postgres import APPEND_LOCK  # noqa: PLC0415

        blocker = psycopg.connect(self.db, autocommit=True)
        blocker.execute("BEGIN")
        blocker.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        release = threading.Event()
        done = threading.Thread(target=lambda: (release.wait(30), blocker.execute("COMMIT")))
        done.start()
        try:
            yield release
        finally:
            release.set()
            done.join()
            blocker.close()

    def synchronous(self, journal: Journal) -> str:
        value = journal._pg.execute("SHOW synchronous_commit").fetchone()[0]  # noqa: SLF001
        return {"on": "full", "off": "normal"}[value]


Backend = SqliteBackend | PostgresBackend


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path)
    return PostgresBackend(request.getfixturevalue("pg_url"))


@pytest.fixture
def journal(backend: Backend) -> Iterator[Journal]:
    j = backend.open(create=True)
    yield j
    j.close()


# --- opening ----------------------------------------------------------------------------------


def test_new_journal_is_at_the_latest_schema(backend: Backend, journal: Journal) -> None:
    assert journal.schema_version == schema.latest_version(backend.name) == 6
    assert journal.backend == backend.name
    assert journal.integrity_check() == []


def test_missing_journal_is_not_created_unless_asked(backend: Backend) -> None:
    """No journal there (no file; an empty database): say how to make one, create nothing."""
    with pytest.raises(JournalNotFoundError, match="evstore init") as caught:
        backend.open()
    assert caught.value.exit_code == 5
    assert backend.is_empty()


def test_durability_full_by_default_normal_on_request(backend: Backend) -> None:
    """full: an acknowledged append is on disk (synchronous=FULL / synchronous_commit=on);
    normal is the explicit trade (synchronous=NORMAL / synchronous_commit=off)."""
    with backend.open(create=True) as j:
        assert backend.synchronous(j) == "full"
    with backend.open(durability="normal") as j:
        assert backend.synchronous(j) == "normal"


def test_older_journal_is_migrated_keeping_its_events(backend: Backend) -> None:
    """A version-1 journal (events only) gains the checkpoints table, the (stream, seq)
    index and the later blocks by its first write (SQLite; PostgreSQL on open), each block
    logged; it reads as it is before."""
    backend.create_at_version_1()
    backend.raw(RAW_INSERT, (1, "s", 1, "SessionCreated", '{"export_dir": "x"}', "{}",
                             "2026-01-01T00:00:00.000000Z", "a"))
    with capture_logs() as logs, backend.open() as j:
        assert [(e.type, e.data) for e in j.read()] == [("SessionCreated", {"export_dir": "x"})]
        assert j.export_dir_of("s") == "x"  # block 4's index covers the events already there
        assert j.checkpoint("tasks", "s") is None
        j.save_checkpoint(Checkpoint("tasks", "s", 1, b"{}", None, None))
        assert j.schema_version == 6
        assert j.append("s", [status()]).first_seq == 2
    assert [entry["to_version"] for entry in logs if entry["event"] == "journal_migrated"] == [2, 3, 4, 5, 6]


def test_newer_journal_is_refused_untouched(backend: Backend) -> None:
    """A journal from a newer evstore is refused (exit 5) before anything is written."""
    with backend.open(create=True) as j:
        j.append("s", [status()])
    backend.set_version(99)
    before = backend.fingerprint()
    with pytest.raises(JournalSchemaError, match="schema version 99, newer") as caught:
        backend.open()
    assert caught.value.exit_code == 5
    assert backend.fingerprint() == before


# --- append -----------------------------------------------------------------------------------


def test_append_assigns_gap_free_seq_and_per_stream_versions(journal: Journal) -> None:
    """seq is global and gap-free; version counts per stream from 1."""
    a = journal.append("a", [status(), status()])
    b = journal.append("b", [status()])
    c = journal.append("a", [status()])
    assert (a.first_seq, a.last_seq, a.last_version, a.count) == (1, 2, 2, 2)
    assert (b.first_seq, b.last_version) == (3, 1)
    assert (c.first_seq, c.last_version) == (4, 3)
    rows = [(e.seq, e.stream, e.version) for e in journal.read()]
    assert rows == [(1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3)]


def test_a_refused_append_leaves_no_gap(journal: Journal) -> None:
    """A rolled-back append uses up no seq: the next one takes the very next number."""
    journal.append("s", [status()])
    with pytest.raises(ConcurrencyError):
        journal.append("s", [status()] * 3, expected_version=5)
    assert journal.append("t", [status()]).first_seq == 2


def test_rows_carry_type_data_meta_time_and_ids(backend: Backend) -> None:
    """Every column of docs/design.md §3: JSON data without `type`, meta with
    pid/host/user/tool, UTC time."""
    moment = datetime(2026, 1, 13, 9, 26, 10, 123456, tzinfo=UTC)
    with backend.open(create=True, clock=lambda: moment, tool="t") as j:
        j.append("s", [status("P1.M1")], correlation_id="run-7")
        (event,) = j.read()
    assert event.type == "ItemStatusChanged"
    assert event.data == {"item_id": "P1.M1", "status": "Complete", "reason": None}
    assert event.recorded_at == "2026-01-13T09:26:10.123456Z"
    assert set(event.meta) == {"pid", "host", "user", "tool", "correlation_id"}
    assert (event.meta["tool"], event.meta["pid"]) == ("t", os.getpid())
    assert event.meta["correlation_id"] == "run-7"
    assert len(event.event_id) == 36
    assert event.schema_version == 1
    assert event.as_dict()["seq"] == 1


def test_data_keeps_its_key_order_and_text(backend: Backend, journal: Journal) -> None:
    """Payloads come back with their keys in the order written (no jsonb reordering),
    byte for byte as orjson wrote them, unicode and all."""
    changes = {"zeta": 1, "alpha": {"y": [3, 2, 1], "b": None}, "mid": 'ünï 漢字 \u0000 "q"'}
    event = ItemUpdated(item_id="P1", changes=changes)
    journal.append("s", [event])
    (stored,) = journal.read()
    assert list(stored.data["changes"]) == ["zeta", "alpha", "mid"]
    assert list(stored.data["changes"]["alpha"]) == ["y", "b"]
    assert stored.data["changes"] == changes
    (scanned,) = journal.scan("s")
    assert orjson.dumps(scanned.data) == orjson.dumps(event.model_dump(mode="json"))
    assert backend.raw("SELECT CAST(data AS TEXT) FROM events") == [
        (orjson.dumps(event.model_dump(mode="json")).decode(),)]


def test_expected_version_conflict_raises_and_writes_nothing(journal: Journal) -> None:
    """A stale expected_version is a ConcurrencyError (exit 3) and the journal is unchanged."""
    journal.append("s", [status()], expected_version=0)
    with pytest.raises(ConcurrencyError, match="at version 1, expected 0") as caught:
        journal.append("s", [status(), status()], expected_version=0)
    assert caught.value.exit_code == 3
    assert journal.head() == 1
    assert journal.append("s", [status()], expected_version=1).last_version == 2


def test_repeated_event_id_returns_the_original_result(journal: Journal) -> None:
    """A retried append (same ids) writes nothing and answers as the first time."""
    first = journal.append("s", [status(), status("P2")], event_ids=["e-1", "e-2"])
    assert not first.duplicate
    journal.append("s", [status("P3")])
    again = journal.append("s", [status(), status("P2")], event_ids=["e-1", "e-2"])
    assert again.duplicate
    assert (again.first_seq, again.last_seq, again.last_version) == (first.first_seq, first.last_seq, 2)
    assert journal.head() == 3
    assert [e.event_id for e in journal.read(until=2)] == ["e-1", "e-2"]


def test_partly_used_event_ids_are_a_conflict(journal: Journal) -> None:
    """Ids that match only part of an earlier append (or another stream's) cannot be a retry of it."""
    journal.append("s", [status()], event_ids=["e-1"])
    with pytest.raises(ConcurrencyError, match="already used"):
        journal.append("s", [status(), status()], event_ids=["e-1", "e-2"])
    with pytest.raises(ConcurrencyError, match="already used"):
        journal.append("other", [status()], event_ids=["e-1"])
    assert journal.head() == 1


def test_event_ids_repeating_within_one_append_are_refused(journal: Journal) -> None:
    with pytest.raises(InvalidInputError, match="repeat"):
        journal.append("s", [status(), status()], event_ids=["x", "x"])
    with pytest.raises(InvalidInputError, match="one entry per event"):
        journal.append("s", [status(), status()], event_ids=["x"])
    with pytest.raises(InvalidInputError, match="nothing to append"):
        journal.append("s", [])
    assert journal.head() == 0


def test_check_hook_can_refuse_inside_the_transaction(journal: Journal) -> None:
    """The check hook sees the head and the pending rows; a refusal rolls all back."""
    journal.append("s", [status()])

    def refuse(head: int, pending: list[Any], events: object) -> None:
        assert head == 1
        assert [(p.seq, p.version) for p in pending] == [(2, 2), (3, 3)]
        assert len(events) == 2  # type: ignore[arg-type]
        raise InvalidInputError("no")

    with pytest.raises(InvalidInputError):
        journal.append("s", [status(), status()], check=refuse)
    assert journal.head() == 1


def test_decide_runs_under_the_write_lock(journal: Journal) -> None:
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


def test_decide_is_atomic_with_its_append_across_connections(backend: Backend) -> None:
    """Two journals (two connections) deciding from the same state at once: the second
    decides only after the first committed, so it sees the first's event."""
    first, second = backend.open(create=True), backend.open()
    try:
        first.append("s", [status()])
        inside = threading.Event()
        seen: list[int] = []

        def slow_decide() -> list[ItemStatusChanged]:
            seen.append(first.stream_version("s"))
            inside.set()
            time.sleep(0.3)
            return [status("P2")]

        def fast_decide() -> list[ItemStatusChanged]:
            seen.append(second.stream_version("s"))
            return [status("P3")]

        worker = threading.Thread(target=lambda: first.append("s", (), decide=slow_decide))
        worker.start()
        assert inside.wait(10)
        second.append("s", (), decide=fast_decide)
        worker.join()
        assert seen == [1, 2]
        assert [e.data["item_id"] for e in second.read("s")] == ["P1", "P2", "P3"]
    finally:
        first.close()
        second.close()


# --- what the database itself enforces ---------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET type = 'X'",
        "DELETE FROM events",
        "UPDATE events SET data = '{}' WHERE seq = 1",
    ],
)
def test_events_are_append_only(backend: Backend, journal: Journal, sql: str) -> None:
    """Triggers refuse UPDATE and DELETE, even from a raw connection."""
    journal.append("s", [status()])
    with pytest.raises(backend.raw_error, match="append-only"):
        backend.raw(sql)
    assert journal.head() == 1
    assert journal.read().__next__().type == "ItemStatusChanged"


def test_data_must_be_valid_json(backend: Backend, journal: Journal) -> None:
    """The JSON check (json_valid / the json type) guards raw writers too."""
    with pytest.raises(backend.json_error, match=r"(?i)CHECK|json"):
        backend.raw(RAW_INSERT, (1, "s", 1, "X", "{not json", "{}", "t", "id"))
    with pytest.raises(backend.json_error, match=r"(?i)CHECK|json"):
        backend.raw(RAW_INSERT, (1, "s", 1, "X", "{}", "[1,", "t", "id"))
    assert journal.head() == 0


def test_unique_stream_version_and_event_id(backend: Backend, journal: Journal) -> None:
    """Two events cannot share a (stream, version), nor an event_id."""
    journal.append("s", [status()], event_ids=["taken"])
    with pytest.raises(backend.raw_error, match="(?i)unique|duplicate"):
        backend.raw(RAW_INSERT, (2, "s", 1, "X", "{}", "{}", "t", "other-id"))
    with pytest.raises(backend.raw_error, match="(?i)unique|duplicate"):
        backend.raw(RAW_INSERT, (2, "t", 1, "X", "{}", "{}", "t", "taken"))
    assert journal.head() == 1


# --- busy ----------------------------------------------------------------------------------------


def test_busy_journal_is_retried_then_reported(backend: Backend) -> None:
    """A writer held out past the busy timeout retries with backoff (sleeps recorded),
    then raises JournalBusyError (exit 5); each retry is logged at warning."""
    with backend.open(create=True) as setup:
        setup.append("s", [status()])
    slept: list[float] = []
    journal = backend.open(busy_timeout_ms=50, busy_retry=RetryPolicy(retries=2, sleep=slept.append))
    try:
        with backend.hold_write_lock(), capture_logs() as logs, \
                pytest.raises(JournalBusyError, match="busy") as caught:
            journal.append("s", [status()])
        assert caught.value.exit_code == 5
        assert len(slept) == 2
        retries = [entry for entry in logs if entry["event"] == "journal_busy_retry"]
        assert [(r["attempt"], r["max_attempts"], r["log_level"]) for r in retries] == [
            (1, 3, "warning"), (2, 3, "warning")]
        assert journal.append("s", [status()]).last_version == 2  # fine once the lock is gone
        assert journal.head() == 2
    finally:
        journal.close()


def test_busy_is_waited_out_when_the_other_writer_finishes(backend: Backend) -> None:
    """A writer that holds the lock briefly only delays the append (the busy timeout)."""
    with backend.open(create=True) as j:
        with backend.hold_write_lock() as release:
            threading.Timer(0.2, release.set).start()
            started = time.monotonic()
            assert j.append("s", [status()]).last_seq == 1
        assert time.monotonic() - started >= 0.15


# --- reading ---------------------------------------------------------------------------------------


def test_read_filters(journal: Journal) -> None:
    """after/until/limit/stream/types select by seq, in seq order."""
    journal.append("a", [SessionCreated(export_dir="x"), status(), status()])
    journal.append("b", [status()])
    assert [e.seq for e in journal.read(after=1, until=3)] == [2, 3]
    assert [e.seq for e in journal.read("b")] == [4]
    assert [e.seq for e in journal.read(limit=2)] == [1, 2]
    assert [e.seq for e in journal.read(after=2, limit=1)] == [3]
    assert [e.seq for e in journal.read(types=["SessionCreated"])] == [1]
    assert [e.seq for e in journal.read("a", types=["ItemStatusChanged", "Nope"], after=2)] == [3]
    assert list(journal.read(after=4)) == []


def test_scan_loads_what_folds_need(journal: Journal) -> None:
    """scan(): one stream, seq order, after/until; meta and event_id are not loaded."""
    journal.append("a", [SessionCreated(export_dir="x"), status()])
    journal.append("b", [status()])
    journal.append("a", [status("P2")])
    scanned = list(journal.scan("a"))
    assert [(e.seq, e.version, e.type, e.stream) for e in scanned] == [
        (1, 1, "SessionCreated", "a"), (2, 2, "ItemStatusChanged", "a"), (4, 3, "ItemStatusChanged", "a")]
    assert scanned[2].data == {"item_id": "P2", "status": "Complete", "reason": None}
    assert (scanned[0].meta, scanned[0].event_id) == ({}, "")
    assert scanned[0].recorded_at == next(journal.read()).recorded_at
    assert [e.seq for e in journal.scan("a", after=1, until=2)] == [2]
    assert list(journal.scan("nobody")) == []


def test_head_versions_counts_and_point_lookups(journal: Journal) -> None:
    """head, stream_version, count(after=), latest, event_at, streams."""
    assert (journal.head(), journal.stream_version("a"), journal.latest("a")) == (0, 0, None)
    assert journal.streams() == []
    journal.append("b", [status()])
    journal.append("a", [status(), status("P2")])
    journal.append("b", [status("P3")])
    assert journal.head() == 4
    assert (journal.stream_version("a"), journal.stream_version("b")) == (2, 2)
    assert (journal.count("a"), journal.count("a", after=2), journal.count("b", after=4)) == (2, 1, 0)
    latest = journal.latest("b")
    assert (latest.seq, latest.data["item_id"], latest.meta["pid"]) == (4, "P3", os.getpid())
    found = journal.event_at("a", 2)
    assert (found.seq, found.version, found.data["item_id"]) == (3, 2, "P2")
    assert journal.event_at("a", 3) is None
    infos = journal.streams()
    assert [(s.stream, s.events, s.version, s.last_seq) for s in infos] == [("b", 2, 2, 4), ("a", 2, 2, 3)]
    assert infos[0].last_recorded_at == latest.recorded_at


def test_change_token_moves_on_any_append_and_streams_between_lists_them(backend: Backend) -> None:
    """What `evstore watch` polls: the token changes when events commit (this connection's
    or another's); streams_between names the streams of a seq range in first-event order."""
    with backend.open(create=True) as j, backend.open() as other:
        before = j.change_token()
        assert j.change_token() == before
        j.append("b", [status()])
        mine = j.change_token()
        assert mine != before
        other.append("a", [status()])
        theirs = j.change_token()
        assert theirs != mine
        other.append("b", [status()])
        assert j.streams_between(0, 3) == ["b", "a"]
        assert j.streams_between(1, 3) == ["a", "b"]
        assert j.streams_between(2, 2) == []


def test_seq_at_time_finds_the_last_event_recorded_by_then(backend: Backend) -> None:
    """--until TIME resolves to the last seq recorded at or before it."""
    times = iter(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=m) for m in range(10))
    with backend.open(create=True, clock=lambda: next(times)) as j:
        for _ in range(3):
            j.append("s", [status()])
        assert j.seq_at(datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)) == 2
        assert j.seq_at(datetime(2025, 1, 1, tzinfo=UTC)) == 0
        assert j.seq_at(datetime(2027, 1, 1, tzinfo=UTC)) == 3


# --- checkpoints --------------------------------------------------------------------------------------


def test_checkpoint_round_trip(journal: Journal) -> None:
    """Checkpoints keep seq, state bytes and the exported hash; saving again replaces."""
    journal.save_checkpoint(Checkpoint("tasks", "s", 3, b"{}", "abc", "t"))
    journal.save_checkpoint(Checkpoint("tasks", "s", 5, orjson.dumps({"a": 1}), "def", "t2"))
    found = journal.checkpoint("tasks", "s")
    assert found is not None
    assert (found.seq, orjson.loads(found.state), found.exported_sha256, found.exported_at) == (
        5, {"a": 1}, "def", "t2")
    assert isinstance(found.state, bytes)
    assert journal.checkpoint("tasks", "other") is None
    counts = journal.table_counts()
    assert (counts["events"], counts["checkpoints"]) == (0, 1)
    assert journal.export_digests("tasks", "s") == {"abc", "def"}  # renderings remembered


def test_save_checkpoints_saves_several_at_once(journal: Journal) -> None:
    """Several (projection, session) checkpoints in one call; NULL hashes kept as None;
    binary state kept byte for byte."""
    state = bytes(range(256))
    journal.save_checkpoints([
        Checkpoint("tasks", "s", 1, state, None, None),
        Checkpoint("batch", "s", 2, b"[]", "h", "t"),
        Checkpoint("tasks", "u", 0, b"", None, "t"),
    ])
    tasks = journal.checkpoint("tasks", "s")
    assert (tasks.seq, tasks.state, tasks.exported_sha256, tasks.exported_at) == (1, state, None, None)
    assert journal.checkpoint("batch", "s").exported_sha256 == "h"
    assert journal.checkpoint("tasks", "u").state == b""
    journal.save_checkpoints([Checkpoint("tasks", "s", 7, b"x", "y", "z")])
    assert journal.checkpoint("tasks", "s").seq == 7
    assert journal.table_counts()["checkpoints"] == 3


# --- concurrency: seq order is commit order -------------------------------------------------------

WRITER = r"""
import random, sys, time, os
sys.path.insert(0, sys.argv[5])
from contract_helpers import open_journal
from eventstore.events import ItemStatusChanged

db, name, total, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
rng = random.Random(name)
journal = open_journal(db)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
n = 0
while n < total:
    size = min(total - n, rng.choice((1, 1, 1, 2, 3)))
    stream = "shared" if rng.random() < 0.5 else name
    events = [ItemStatusChanged(item_id=f"{name}-{n + i}", status="Complete") for i in range(size)]
    result = journal.append(stream, events, event_ids=[f"{name}-{n + i}" for i in range(size)])
    assert result.count == size
    n += size
journal.close()
print("done", flush=True)
"""

PROJECTOR = r"""
import json, sys, time, os
sys.path.insert(0, sys.argv[4])
from contract_helpers import open_journal
from eventstore.records import Checkpoint

db, expected, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
journal = open_journal(db)
print("ready", flush=True)
checkpoint, applied, reads = 0, [], 0
deadline = time.monotonic() + 300
while checkpoint < expected and time.monotonic() < deadline:
    batch = list(journal.read(after=checkpoint, limit=200))
    reads += 1
    for event in batch:  # the naive projector: trusts seq order, never looks back
        applied.append([event.seq, event.event_id])
        checkpoint = event.seq
    if batch:
        journal.save_checkpoint(Checkpoint("probe", "all", checkpoint, b"", None, None))
    else:
        time.sleep(0.0005)
# Writers are done: anything committed late with a lower seq is now skipped for good.
final = [[e.seq, e.event_id] for e in journal.read()]
json.dump({"applied": applied, "final": final, "reads": reads,
           "checkpoint": journal.checkpoint("probe", "all").seq}, open(out, "w"))
journal.close()
print("done", flush=True)
"""

WRITERS, PER_WRITER = 8, 1000


@pytest.mark.slow
def test_seq_is_commit_order_a_following_projector_misses_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    """8 writer processes (own connections, one to three events per append, half of them
    into one shared stream) append 1,000 events each while a projector process follows
    the head with `seq > checkpoint` reads. The projector applies all 8,000 exactly once,
    in seq order, with no gap; every stream's versions run 1..n. With seq handed out by a
    sequence at INSERT, a later number can commit first and this projector skips the
    earlier one for ever."""
    with backend.open(create=True) as j:
        pass
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "contract_helpers.py").write_text(HELPERS)
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, backend.db, f"w{n}", str(PER_WRITER),
                          str(go), str(helpers)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for n in range(WRITERS)
    ]
    out = tmp_path / "projector.json"
    projector = subprocess.Popen(
        [sys.executable, "-c", PROJECTOR, backend.db, str(WRITERS * PER_WRITER), str(out), str(helpers)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    children = [*writers, projector]
    try:
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line == "ready\n", (line, child.stderr.read() if child.stderr else "")
        go.touch()
        for child in children:
            _, err = child.communicate(timeout=600)
            assert child.returncode == 0, err[-3000:]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    report = json.loads(out.read_text())
    applied, final = report["applied"], report["final"]
    total = WRITERS * PER_WRITER
    assert [seq for seq, _ in final] == list(range(1, total + 1)), "the journal's seq is gap-free"
    assert len(applied) == total, f"the projector applied {len(applied)} of {total} events"
    assert [seq for seq, _ in applied] == list(range(1, total + 1)), "in seq order, no gap, once each"
    assert applied == final
    assert len({event_id for _, event_id in applied}) == total
    assert report["checkpoint"] == total
    assert report["reads"] > 10, "the projector really followed the writers"
    with backend.open() as j:
        for info in j.streams():
            versions = [e.version for e in j.read(info.stream)]
            assert versions == list(range(1, info.events + 1)), info.stream
        assert j.integrity_check() == []
        writer_of = [e.event_id.split("-")[0] for e in j.read()]
    switches = sum(1 for a, b in zip(writer_of, writer_of[1:]) if a != b)
    # One after another would be WRITERS - 1 switches; a loaded 2-core machine still gives
    # dozens, an idle one hundreds: enough to prove they overlapped.
    assert switches > 4 * WRITERS, f"the writers ran one after another ({switches} switches)"


HELPERS = """
from eventstore.locate import is_url


def open_journal(db):
    if is_url(db):
        from eventstore.postgres import PostgresJournal
        return PostgresJournal(db, busy_timeout_ms=60000)
    from eventstore.sqlite import SQLiteJournal
    return SQLiteJournal(db, durability="normal", busy_timeout_ms=60000)
"""


def test_a_known_event_id_with_different_content_is_a_conflict(journal: Journal) -> None:
    """A retry repeats the same events; other content under a used id is not a retry
    (acknowledging it as one would lose the new event)."""
    journal.append("s", [status("P1", "Complete")], event_ids=["k2"])
    for different in (status("P2", "Failed"), status("P1", "Failed"),
                      ItemUpdated(item_id="P1", changes={"status": "Complete"})):
        with pytest.raises(ConcurrencyError, match="'k2'.*different event") as caught:
            journal.append("s", [different], event_ids=["k2"])
        assert caught.value.exit_code == 3
    assert journal.append("s", [status("P1", "Complete")], event_ids=["k2"]).duplicate
    assert journal.head() == 1


def test_event_ids_with_nul_are_refused_on_both_backends(journal: Journal) -> None:
    with pytest.raises(InvalidInputError, match="NUL") as caught:
        journal.append("s", [status()], event_ids=["a\x00b"])
    assert caught.value.exit_code == 2
    assert journal.head() == 0


def test_both_backends_implement_the_one_interface(backend: Backend, journal: Journal) -> None:
    import eventstore  # noqa: PLC0415

    assert isinstance(journal, eventstore.Journal)
    assert eventstore.Journal is Journal
    assert journal.latest_schema_version == schema.latest_version(backend.name)
    assert (journal.file is None) == (backend.name == "postgresql")
    assert journal.location and "secret" not in journal.location


def staged(stream: str, *items: tuple[str, str | None]) -> StagedEvents:
    events = StagedEvents(stream)
    for item, event_id in items:
        events.add("ItemStatusChanged", orjson.dumps(status(item).model_dump(mode="json")),
                   event_id or f"gen-{item}", given=event_id is not None)
    return events


def test_a_staged_append_is_one_transaction_and_idempotent(journal: Journal) -> None:
    journal.append("s", [status("P0")])
    with staged("s", ("P1", "k1"), ("P2", None)) as events:
        events.validated_version = 1
        seen: list[int] = []
        first = journal.append_staged(events, revalidate=seen.append)
        assert (first.first_seq, first.last_seq, first.count, first.duplicate) == (2, 3, 2, False)
        assert seen == []  # validated at the version it was appended at: not again
    with staged("s", ("P1", "k1"), ("P2", None)) as again:
        assert again.given_ids == ["k1"]
    with staged("s", ("P1", "k1")) as retry:
        assert journal.append_staged(retry).duplicate
    assert [(e.seq, e.data["item_id"]) for e in journal.read("s")] == [
        (1, "P0"), (2, "P1"), (3, "P2")]


def test_a_staged_append_revalidates_when_the_stream_moved(journal: Journal) -> None:
    with staged("s", ("P1", None)) as events:
        events.validated_version = 0
        journal.append("s", [status("P0")])  # another writer, after validation
        heads: list[int] = []
        journal.append_staged(events, revalidate=heads.append)
        assert heads == [1]

        def refuse(_: int) -> None:
            raise InvalidInputError("no longer valid")

        journal.append("s", [status("P9")])
        with pytest.raises(InvalidInputError, match="no longer valid"):
            journal.append_staged(events, revalidate=refuse)
    assert journal.head() == 3


def test_lookup_writes_are_made_in_the_append_transaction(journal: Journal) -> None:
    from eventstore.records import LookupWrite  # noqa: PLC0415

    assert journal.lookup("p", "s", ["a"]) == Lookup(current=False, entries={})

    def build(head: int, pending: list[Any], chosen: Any) -> list[LookupWrite]:  # noqa: ARG001
        return [LookupWrite("p", "s", {"a": [1, "x"], "b": {"k": None}}, replace=True),
                LookupWrite("q", "s", {"z": 0}, replace=True)]

    journal.append("s", [status()], check=build)
    assert journal.lookup("p", "s", ["a", "b", "c"]) == Lookup(True, {"a": [1, "x"], "b": {"k": None}})
    assert journal.lookup("p", "other", ["a"]) == Lookup(False, {})

    def refuse(head: int, pending: list[Any], chosen: Any) -> list[LookupWrite]:  # noqa: ARG001
        raise InvalidInputError("no")

    with pytest.raises(InvalidInputError):
        journal.append("s", [status()], check=refuse)
    assert journal.lookup("p", "s", ["a"]).current  # a refused append changes nothing

    def change(head: int, pending: list[Any], chosen: Any) -> list[LookupWrite]:  # noqa: ARG001
        return [LookupWrite("p", "s", {"a": None, "c": 3}), LookupWrite("q", "s", {})]

    journal.append("s", [status()], check=change)
    assert journal.lookup("p", "s", ["a", "b", "c"]) == Lookup(True, {"b": {"k": None}, "c": 3})
    assert journal.lookup("q", "s", ["z"]) == Lookup(True, {"z": 0})  # kept, unchanged

    def keep_p_only(head: int, pending: list[Any], chosen: Any) -> list[LookupWrite]:  # noqa: ARG001
        return [LookupWrite("p", "s", {})]

    journal.append("s", [status()], check=keep_p_only)
    assert journal.lookup("p", "s", ["c"]) == Lookup(True, {"c": 3})
    assert journal.lookup("q", "s", ["z"]) == Lookup(False, {})  # not kept by that append

    journal.append("other", [status()])  # another stream's append leaves these alone
    assert journal.lookup("p", "s", ["c"]).current
    journal.append("s", [status()])  # an append without a check keeps none
    assert journal.lookup("p", "s", ["c"]) == Lookup(False, {})

    journal.append("s", [status()], check=build)
    assert journal.lookup("p", "s", ["a"]) == Lookup(True, {"a": [1, "x"]})

    def drop(head: int, pending: list[Any], chosen: Any) -> list[LookupWrite]:  # noqa: ARG001
        return [LookupWrite("p", "s", {}, drop=True)]

    journal.append("s", [status()], check=drop)
    assert journal.lookup("p", "s", ["a"]) == Lookup(False, {})


def test_a_staged_append_leaves_lookup_entries_unmarked(journal: Journal) -> None:
    from eventstore.records import LookupWrite  # noqa: PLC0415

    def build(head: int, pending: list[Any], chosen: Any) -> list[LookupWrite]:  # noqa: ARG001
        return [LookupWrite("p", "s", {"a": 1}, replace=True)]

    journal.append("s", [status("P0")], check=build)
    with staged("s", ("P1", None)) as events:
        events.validated_version = 1
        journal.append_staged(events)
    assert journal.lookup("p", "s", ["a"]) == Lookup(False, {})


def test_a_retried_append_checks_the_events_as_given_not_as_a_check_left_them(
    journal: Journal,
) -> None:
    """The check sees the serialized dicts, not a parse of the bytes; a retry must not see
    what the first attempt's check did to them."""
    from eventstore.errors import JournalBusyError  # noqa: PLC0415

    seen: list[str] = []

    def check(head: int, pending: list[Any], chosen: Any) -> None:  # noqa: ARG001
        seen.append(pending[0].data["item_id"])
        pending[0].data["item_id"] = "changed by the check"
        if len(seen) == 1:
            raise JournalBusyError("busy, as if another writer came in")

    journal.append("s", [status("P1")], check=check)
    assert seen == ["P1", "P1"]
    assert [e.data["item_id"] for e in journal.read("s")] == ["P1"]
