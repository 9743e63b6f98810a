"""The SQLite journal (DESIGN §3): append-only events with a gap-free global `seq`.

The hot path is the standard `sqlite3` module on one connection in autocommit mode, with
explicit `BEGIN IMMEDIATE` transactions: an append takes the write lock before it reads
the stream's version, so the version check and the insert cannot interleave with
another writer's, in this process or another.
"""

from __future__ import annotations

import getpass
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from eventstore import schema
from eventstore.errors import (
    ConcurrencyError,
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
    JournalError,
    JournalNotFoundError,
    JournalSchemaError,
    JournalWriteError,
)
from eventstore.events import EVENT_TYPES, Event, parse_event, upcast
from eventstore.logs import get_logger
from eventstore.progress import Progress, reporting
from eventstore.retry import RetryPolicy

log = get_logger("evstore.journal")

Durability = Literal["full", "normal"]
_SQLITE_HEADER = b"SQLite format 3\x00"
_CURRENT_SCHEMA = {name: cls.schema_version for name, cls in EVENT_TYPES.items()}
_NO_META: dict[str, Any] = {}
_BUSY_NAMES = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_SNAPSHOT"})
_CORRUPT_NAMES = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and `Z`: sorts as text in time order."""
    # isoformat is several times faster than strftime, and this runs on every append.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def new_event_id() -> str:
    """A random (version 4) UUID as text, without uuid.uuid4's object overhead."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class StoredEvent:
    """An event as the journal holds it. `data` is the decoded payload (upcast to current)."""

    __slots__ = (
        "_meta",
        "data",
        "event_id",
        "recorded_at",
        "schema_version",
        "seq",
        "stream",
        "type",
        "version",
    )

    def __init__(  # noqa: PLR0913 - one argument per journal column
        self,
        seq: int,
        stream: str,
        version: int,
        type: str,  # noqa: A002 - the journal's column name
        data: dict[str, Any],
        meta: bytes | str | dict[str, Any],
        recorded_at: str,
        event_id: str,
        schema_version: int,
    ) -> None:
        self.seq = seq
        self.stream = stream
        self.version = version
        self.type = type
        self.data = data
        self._meta = meta
        self.recorded_at = recorded_at
        self.event_id = event_id
        self.schema_version = schema_version

    @property
    def meta(self) -> dict[str, Any]:
        # Decoded on demand: replay folds never look at it, and it is a third of the row.
        if not isinstance(self._meta, dict):
            self._meta = orjson.loads(self._meta)
        return self._meta

    @property
    def meta_key(self) -> bytes | str | None:
        """The meta column as stored while it is undecoded (None once decoded): a cheap
        key for readers that see the same meta on thousands of events."""
        return None if isinstance(self._meta, dict) else self._meta

    def model(self) -> Event:
        return parse_event({"type": self.type, **self.data}, where=f"event seq {self.seq}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "stream": self.stream,
            "version": self.version,
            "type": self.type,
            "data": self.data,
            "meta": self.meta,
            "recorded_at": self.recorded_at,
            "event_id": self.event_id,
        }

    def __repr__(self) -> str:
        return f"StoredEvent(seq={self.seq}, stream={self.stream!r}, type={self.type!r})"


@dataclass(frozen=True)
class AppendResult:
    stream: str
    first_seq: int
    last_seq: int
    last_version: int
    count: int
    duplicate: bool = False


@dataclass(frozen=True)
class Checkpoint:
    projection: str
    stream: str
    seq: int
    state: bytes
    exported_sha256: str | None
    exported_at: str | None


@dataclass(frozen=True)
class StreamInfo:
    stream: str
    events: int
    version: int
    last_seq: int
    last_recorded_at: str


def translate(exc: sqlite3.Error, path: Path) -> JournalError:
    """Map an sqlite3 error to evstore's tree by SQLite's result code, never its message."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in _BUSY_NAMES or (not name and "locked" in str(exc)):
        return JournalBusyError(f"journal {path} is busy: another writer holds it ({exc})")
    if name in _CORRUPT_NAMES:
        return JournalCorruptError(
            f"journal {path} is not a valid SQLite database ({exc}): restore it from a backup"
        )
    if name == "SQLITE_IOERR_FSYNC":
        # The commit's frames may be in the WAL already: after a crash SQLite can recover
        # them. Saying "not written" would invite a duplicate append.
        return JournalWriteError(
            f"journal {path}: the commit could not be made durable ({name}: {exc}); its "
            "outcome is unknown: check `evstore log` before appending again, or retry with "
            "the same --event-id"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return JournalWriteError(
            f"journal {path} cannot be opened ({name}: {exc}): check the path, its "
            "permissions and the open-file limit (ulimit -n)"
        )
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY")):
        return JournalWriteError(
            f"journal {path} cannot be written ({name}: {exc}): free space or fix permissions"
        )
    return JournalError(f"journal {path}: {name or type(exc).__name__}: {exc}")


def checked_event_ids(
    event_ids: Sequence[str | None] | None, count: int
) -> tuple[list[str | None], list[str]]:
    """(one id or None per event, the ids given): the checks both backends share, so an
    id one of them refuses is refused by the other as well."""
    ids = list(event_ids) if event_ids is not None else [None] * count
    if len(ids) != count:
        raise InvalidInputError("event_ids must have one entry per event")
    given = [event_id for event_id in ids if event_id is not None]
    if len(set(given)) != len(given):
        raise InvalidInputError("event_ids repeat within one append")
    if any("\x00" in event_id for event_id in given):
        # PostgreSQL cannot store NUL in text; SQLite could, but then one journal would
        # accept an id the other refuses.
        raise InvalidInputError("event_ids may not contain NUL characters: choose another id")
    return ids, given


def duplicate_of(
    found: list[tuple[Any, ...]],
    stream: str,
    given: Sequence[str],
    payloads: Sequence[tuple[str, bytes]],
) -> AppendResult | None:
    """What an append whose event ids are `given` already did, from the (seq, stream,
    version, event_id, type, data) rows holding those ids: None when none exist, its
    result when all of them do in `stream` with the same events (a retried append),
    ConcurrencyError when only some do, elsewhere, or for different events."""
    if not found:
        return None
    if len(found) != len(given) or len(given) != len(payloads) or {r[1] for r in found} != {stream}:
        raise ConcurrencyError(
            f"event ids already used by another append ({len(found)} of {len(given)} "
            f"present): use fresh ids for new events in session {stream!r}"
        )
    wanted = dict(zip(given, payloads, strict=True))
    for row in found:
        event_type, data = wanted[row[3]]
        if row[4] != event_type or _canonical(row[5]) != _canonical(data):
            # A retry repeats the same event; a different one under a known id would be
            # acknowledged and never written.
            raise ConcurrencyError(
                f"event id {row[3]!r} is already used by a different event "
                f"(seq {row[0]}, {row[4]}) in session {stream!r}: use a fresh id"
            )
    return AppendResult(
        stream=stream,
        first_seq=found[0][0],
        last_seq=found[-1][0],
        last_version=found[-1][2],
        count=len(found),
        duplicate=True,
    )


def _canonical(data: str | bytes | Any) -> bytes:
    # Compare JSON values, not their spelling: PostgreSQL may hand `json` back parsed.
    value = orjson.loads(data) if isinstance(data, (str, bytes)) else data
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class JournalReads:
    """The read side both journals share, written once in SQLite's `?` style: a backend
    supplies `_rows(sql, params)`, its placeholder and how it selects an event's columns
    (PostgreSQL casts its json columns to text, so their bytes are decoded as stored)."""

    placeholder = "?"
    event_columns = "seq, stream, version, type, data, meta, recorded_at, event_id, schema_version"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._rows(sql if self.placeholder == "?" else sql.replace("?", self.placeholder), params)

    def _value(self, sql: str, *params: Any) -> Any:
        rows = self._query(sql, *params)
        return rows[0][0] if rows else None

    def read(
        self,
        stream: str | None = None,
        *,
        after: int = 0,
        until: int | None = None,
        limit: int | None = None,
        types: Sequence[str] | None = None,
    ) -> Iterator[StoredEvent]:
        """Events with `after < seq <= until`, in `seq` order, of one stream or all."""
        clauses = ["seq > ?"]
        params: list[Any] = [after]
        if stream is not None:
            clauses.append("stream = ?")
            params.append(stream)
        if until is not None:
            clauses.append("seq <= ?")
            params.append(until)
        if types:
            clauses.append(f"type IN ({','.join('?' * len(types))})")
            params.extend(types)
        sql = f"SELECT {self.event_columns} FROM events WHERE {' AND '.join(clauses)} ORDER BY seq"  # noqa: S608 - fixed clauses, values bound
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return decode_rows(self._query(sql, *params))

    def streams_between(self, after: int, until: int) -> list[str]:
        """The streams with events in `after < seq <= until`, in order of first event."""
        rows = self._query(
            "SELECT stream FROM events WHERE seq > ? AND seq <= ? GROUP BY stream ORDER BY min(seq)",
            after, until,
        )
        return [row[0] for row in rows]

    def head(self) -> int:
        return int(self._value("SELECT coalesce(max(seq), 0) FROM events"))

    def stream_version(self, stream: str) -> int:
        return int(self._value("SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", stream))

    def count(self, stream: str, *, after: int = 0, until: int | None = None) -> int:
        """How many events of `stream` have `after < seq <= until` (a projection's lag)."""
        if until is not None:
            return int(self._value(
                "SELECT count(*) FROM events WHERE stream = ? AND seq > ? AND seq <= ?", stream, after, until,
            ))
        return int(self._value("SELECT count(*) FROM events WHERE stream = ? AND seq > ?", stream, after))

    def latest(self, stream: str) -> StoredEvent | None:
        """The newest event of `stream`."""
        version = self.stream_version(stream)
        return self.event_at(stream, version) if version else None

    def seq_at(self, moment: datetime) -> int:
        """The last `seq` recorded at or before `moment` (0 if none)."""
        return int(self._value(
            "SELECT coalesce(max(seq), 0) FROM events WHERE recorded_at <= ?", format_time(moment)
        ))

    def streams(self) -> list[StreamInfo]:
        rows = self._query(
            "SELECT stream, count(*), max(version), max(seq), max(recorded_at)"
            " FROM events GROUP BY stream ORDER BY min(seq)"
        )
        return [StreamInfo(*row) for row in rows]

    def event_at(self, stream: str, version: int) -> StoredEvent | None:
        """The event at `version` of `stream` (a point lookup on UNIQUE(stream, version))."""
        seq = self._value("SELECT seq FROM events WHERE stream = ? AND version = ?", stream, version)
        if seq is None:
            return None
        return next(self.read(after=seq - 1, until=seq))

    def checkpoint(self, projection: str, stream: str) -> Checkpoint | None:
        rows = self._query(
            "SELECT projection, stream, seq, state, exported_sha256, exported_at"
            " FROM checkpoints WHERE projection = ? AND stream = ?",
            projection, stream,
        )
        return Checkpoint(*rows[0]) if rows else None

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.save_checkpoints([checkpoint])

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        raise NotImplementedError


# Both journals' upsert of checkpoints, in SQLite's `?` style.
SAVE_CHECKPOINT = (
    "INSERT INTO checkpoints (projection, stream, seq, state, exported_sha256, exported_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (projection, stream) DO UPDATE SET seq = excluded.seq,"
    " state = excluded.state, exported_sha256 = excluded.exported_sha256,"
    " exported_at = excluded.exported_at"
)


class SQLiteJournal(JournalReads):
    """One SQLite file in WAL mode. Thread-safe: one connection behind a lock."""

    backend = "sqlite"

    def __init__(  # noqa: PLR0913 - every knob is keyword-only and has a default
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        durability: Durability = "full",
        busy_timeout_ms: int = 5000,
        busy_retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        tool: str = "evstore-lib",
    ) -> None:
        self.path = Path(path)
        self.durability = durability
        self._clock = clock
        self._busy_retry = busy_retry or RetryPolicy(retries=5)
        self._lock = threading.RLock()
        self._recording = False
        self._meta_base = {"host": socket.gethostname(), "user": _user(), "tool": tool}
        self._conn = self._connect(create=create, busy_timeout_ms=busy_timeout_ms)

    # --- opening ----------------------------------------------------------------------

    def _connect(self, *, create: bool, busy_timeout_ms: int) -> sqlite3.Connection:
        _check_header(self.path, create=create)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        try:
            # Read the version before anything that could write: a journal from a newer
            # evstore must be refused untouched.
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            latest = schema.latest_version(self.backend)
            if found > latest:
                raise JournalSchemaError(
                    f"journal {self.path} has schema version {found}, newer than this "
                    f"evstore supports ({latest}): upgrade evstore"
                )
            if found == 0 and _has_foreign_tables(conn):
                raise JournalCorruptError(
                    f"{self.path} is an SQLite database but not an evstore journal: "
                    "pass --db with a journal path, or run `evstore init` elsewhere"
                )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            if found < latest:
                self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise translate(exc, self.path) from exc
        except JournalError:
            conn.close()
            raise
        except OSError as exc:  # out of descriptors or memory while setting up
            conn.close()
            raise JournalWriteError(
                f"journal {self.path} cannot be opened: {exc.strerror or exc}: "
                "check the open-file limit (ulimit -n) and the disk"
            ) from exc
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the write lock.
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            for version, statements in schema.migrations(self.backend):
                if version <= found:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version}")
                log.info("journal_migrated", path=str(self.path), to_version=version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SQLiteJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions -----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, self.path) from exc
                raise

    def _with_busy_retry(self, fn: Callable[[], Any]) -> Any:
        failures: list[BaseException] = []
        started = time.monotonic()

        def on_retry(attempt: int, delay_s: float, exc: BaseException) -> None:
            failures.append(exc)
            log.warning(
                "journal_busy_retry",
                attempt=attempt,
                max_attempts=self._busy_retry.max_attempts,
                delay_ms=round(delay_s * 1000, 1),
                errno="SQLITE_BUSY",
                error=str(exc),
                path=str(self.path),
            )

        result = self._busy_retry.call(
            fn, retryable=lambda exc: isinstance(exc, JournalBusyError), on_retry=on_retry
        )
        if failures and not self._recording:
            self._record_recovered(failures[-1], len(failures), started)
        return result

    def _record_recovered(self, exc: BaseException, retries: int, started: float) -> None:
        # A busy journal that came free after retries is a handled failure worth counting
        # (`evstore errors`); best effort, and never recursively.
        from eventstore.classify import classify  # noqa: PLC0415 - only after a retry
        from eventstore.events import ErrorRecorded  # noqa: PLC0415

        self._recording = True
        try:
            self.append("_errors", [ErrorRecorded(
                component="journal", operation="append", message=str(exc), retry_count=retries,
                recovery_strategy="retry", recovery_success=True,
                resolution_time_ms=round((time.monotonic() - started) * 1000, 1),
                **classify(exc).fields(),  # type: ignore[arg-type]
            )])
        except Exception as record_exc:  # noqa: BLE001 - never mask what was recorded
            log.warning("error_not_recorded", error=str(record_exc))
        finally:
            self._recording = False

    # --- append -----------------------------------------------------------------------

    def append(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        stream: str,
        events: Sequence[Event],
        *,
        expected_version: int | None = None,
        event_ids: Sequence[str | None] | None = None,
        correlation_id: str | None = None,
        check: Callable[[int, list[StoredEvent], Sequence[Event]], None] | None = None,
        decide: Callable[[], Sequence[Event]] | None = None,
        progress: Progress | None = None,
    ) -> AppendResult:
        """Append `events` to `stream` in one transaction: all of them or none.

        `expected_version` is the stream's version the caller last saw (0: new stream);
        a mismatch raises ConcurrencyError. `event_ids` are idempotency keys: an append
        whose ids are all present already returns the original result and writes
        nothing. `check(head_seq, pending, events)` runs inside the transaction, after
        the version check, and may refuse the events by raising.

        With `decide`, the events are not given but decided inside the transaction,
        under the write lock, from state read there: no other writer can act between
        the decision and its append. An empty decision appends nothing (count 0).

        `progress(done, total)` (for `events`, not decided ones) counts each event twice
        out of `total = 2 * len(events)`: once serialized, once written (`check` runs
        in between).
        """
        if decide is None and not events:
            raise InvalidInputError(f"nothing to append to session {stream!r}")
        ids, given = checked_event_ids(event_ids, len(events))
        twice = 2 * len(events)
        payloads = _payloads(events if progress is None else reporting(events, progress, twice))
        meta = {"pid": os.getpid(), **self._meta_base}
        if correlation_id is not None:
            meta["correlation_id"] = correlation_id
        meta_json = orjson.dumps(meta).decode()

        def attempt() -> AppendResult:
            with self._write() as conn:
                if given:
                    original = self._existing(conn, stream, given, payloads)
                    if original is not None:
                        return original
                version, head = conn.execute(
                    "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream = ?),"
                    " (SELECT coalesce(max(seq), 0) FROM events)",
                    (stream,),
                ).fetchone()
                if expected_version is not None and version != expected_version:
                    raise ConcurrencyError(
                        f"session {stream!r} is at version {version}, "
                        f"expected {expected_version}: re-read and retry"
                    )
                chosen, chosen_payloads = events, payloads
                if decide is not None:
                    chosen = list(decide())
                    if not chosen:
                        return AppendResult(stream, head + 1, head, version, 0)
                    chosen_payloads = _payloads(chosen)
                recorded_at = format_time(self._clock())
                rows = [
                    (
                        stream,
                        version + offset,
                        event_type,
                        data.decode(),
                        meta_json,
                        recorded_at,
                        ids[offset - 1] if decide is None and ids[offset - 1] else new_event_id(),
                        _CURRENT_SCHEMA[event_type],
                    )
                    for offset, (event_type, data) in enumerate(chosen_payloads, start=1)
                ]
                if check is not None:
                    pending = [
                        StoredEvent(head + i, stream, row[1], row[2], orjson.loads(row[3]),
                                    meta, recorded_at, row[6], row[7])
                        for i, row in enumerate(rows, start=1)
                    ]
                    check(head, pending, chosen)
                conn.executemany(
                    "INSERT INTO events (stream, version, type, data, meta, recorded_at,"
                    " event_id, schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows if progress is None or decide is not None
                    else reporting(rows, progress, twice, start=len(events)),
                )
                return AppendResult(
                    stream=stream,
                    first_seq=head + 1,
                    last_seq=head + len(rows),
                    last_version=version + len(rows),
                    count=len(rows),
                )

        # No log line here: this is the hot path, and callers log the operation it serves.
        result: AppendResult = self._with_busy_retry(attempt)
        return result

    @staticmethod
    def _existing(
        conn: sqlite3.Connection,
        stream: str,
        given: list[str],
        payloads: Sequence[tuple[str, bytes]],
    ) -> AppendResult | None:
        marks = ",".join("?" * len(given))
        found = conn.execute(
            "SELECT seq, stream, version, event_id, type, data FROM events"
            f" WHERE event_id IN ({marks}) ORDER BY seq",  # noqa: S608 - only "?" marks
            given,
        ).fetchall()
        return duplicate_of(found, stream, given, payloads)

    # --- reading ----------------------------------------------------------------------

    def scan(
        self, stream: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[StoredEvent]:
        """What folds need of one stream's events, in `seq` order, and nothing more:
        seq, stream, version, type, data (upcast) and recorded_at. `meta` and `event_id`
        are not loaded (they read as {} and ""); replay is this loop, so it stays lean."""
        with self._lock:
            version, head = self._conn.execute(
                "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream = ?),"
                " (SELECT coalesce(max(seq), 0) FROM events)",
                (stream,),
            ).fetchone()
        # When this stream is most of what lies after `after` (a replay of a one-session
        # journal), reading the table in rowid order beats hopping through the index;
        # otherwise (many sessions, or a short catch-up) the (stream, seq) index wins.
        column = "+stream" if version * 2 >= head - after else "stream"
        sql = (
            "SELECT seq, version, type, data, recorded_at, schema_version FROM events"
            f" WHERE {column} = ? AND seq > ?"  # noqa: S608 - one of two fixed spellings
        )
        params: list[Any] = [stream, after]
        if until is not None:
            sql += " AND seq <= ?"
            params.append(until)
        sql += " ORDER BY seq"
        with self._lock:
            try:
                rows = self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc
        yield from decode_scan_rows(stream, rows)

    def change_token(self) -> tuple[int, ...]:
        """Changes whenever anything commits, without reading a table: `data_version`
        moves on another connection's commit, `total_changes` on this one's own."""
        with self._lock:
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
            return (int(version), self._conn.total_changes)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc

    # --- checkpoints ------------------------------------------------------------------

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Save several checkpoints in one transaction (one fsync)."""

        def attempt() -> None:
            with self._write() as conn:
                conn.executemany(
                    SAVE_CHECKPOINT,
                    [
                        (c.projection, c.stream, c.seq, c.state, c.exported_sha256, c.exported_at)
                        for c in checkpoints
                    ],
                )

        self._with_busy_retry(attempt)

    def now(self) -> str:
        return format_time(self._clock())

    # --- inspection (sqlite-utils on the same connection) -----------------------------

    def integrity_check(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return [row[0] for row in rows if row[0] != "ok"]

    def table_counts(self) -> dict[str, int]:
        import sqlite_utils  # noqa: PLC0415 - inspection only; keeps the append path lean

        with self._lock:
            db = sqlite_utils.Database(self._conn)
            return {name: db[name].count for name in db.table_names()}


def decode_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[StoredEvent]:
    """Rows of (seq, stream, version, type, data, meta, recorded_at, event_id,
    schema_version), data as JSON text, into events upcast to the current schema."""
    loads, current = orjson.loads, _CURRENT_SCHEMA
    for seq, stream, version, type_, data, meta, recorded_at, event_id, sv in rows:
        payload = loads(data)
        if sv < current.get(type_, sv):
            payload = upcast(type_, sv, payload)
        yield StoredEvent(seq, stream, version, type_, payload, meta, recorded_at, event_id, sv)


def decode_scan_rows(stream: str, rows: Iterable[tuple[Any, ...]]) -> Iterator[StoredEvent]:
    """The lean rows of `scan` (seq, version, type, data, recorded_at, schema_version):
    what folds need, without meta or event id. This is the replay loop: keep it tight."""
    loads, current, make = orjson.loads, _CURRENT_SCHEMA, StoredEvent
    for seq, version, type_, data, recorded_at, sv in rows:
        payload = loads(data)
        if sv < current.get(type_, sv):
            payload = upcast(type_, sv, payload)
        yield make(seq, stream, version, type_, payload, _NO_META, recorded_at, "", sv)


def _payloads(events: Iterable[Event]) -> list[tuple[str, bytes]]:
    return [(event.type, orjson.dumps(event.model_dump(mode="json"))) for event in events]  # type: ignore[attr-defined]


def _check_header(path: Path, *, create: bool) -> None:
    # sqlite3.connect opens anything; read the header ourselves so a file that is not a
    # journal is refused before SQLite could touch it.
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        if create:
            return
        raise JournalNotFoundError(
            f"no journal at {path}: run `evstore init` in the project root, or pass --db"
        ) from None
    except IsADirectoryError:
        raise JournalCorruptError(f"journal path {path} is a directory, not a file") from None
    except PermissionError as exc:
        raise JournalWriteError(f"journal {path} cannot be read: {exc.strerror}") from None
    if header and header != _SQLITE_HEADER:
        raise JournalCorruptError(
            f"{path} is not an SQLite database: pass --db with an evstore journal"
        )


def _has_foreign_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchone()
    return bool(row[0])


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
