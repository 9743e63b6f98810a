"""The SQLite backend of the journal (docs/design.md §3): `Journal` in one WAL-mode file.

The hot path is the standard `sqlite3` module on one connection in autocommit mode, with
explicit `BEGIN IMMEDIATE` transactions: an append takes the write lock before it reads
the stream's version, so the version check and the insert cannot interleave with
another writer's, in this process or another.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from eventstore import schema
from eventstore.atomic import fsync_directory, write_atomic
from eventstore.errors import (
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
    JournalError,
    JournalReadError,
    JournalSchemaError,
    JournalWriteError,
)
from eventstore.logs import get_logger
from eventstore.persistence import EXPORT_DIR_EVENTS, Durability, Journal, outdated_note
from eventstore.progress import Progress, reporting
from eventstore.records import (
    CURRENT_SCHEMA,
    AppendResult,
    Checkpoint,
    JournalFile,
    StoredEvent,
    decode_rows,
    decode_scan_rows,
    export_dir_of_data,
    format_time,
    new_event_id,
    utc_now,
)
from eventstore.retry import RetryPolicy
from eventstore.sqlite_detach import close_without_checkpoint
from eventstore.sqlite_file import (
    check_findings,
    check_journal_file,
    inspect_sqlite,
    journal_file_defect,
    on_read_only_file_system,
    open_read_only,
    read_failed_during_check,
    translate,
)
from eventstore.writes import (
    PRUNE_DIGESTS,
    SAVE_CHECKPOINT,
    SAVE_DIGEST,
    SAVE_STATE,
    check_version,
    checked_event_ids,
    checkpoint_rows,
    current_user,
    duplicate_of,
    lookup_statements,
    pending_data,
    serialized,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from datetime import datetime

    from eventstore.events import Event
    from eventstore.persistence import AppendCheck
    from eventstore.staging import StagedEvents

log = get_logger("evstore.journal")

_sha256 = hashlib.sha256
# The append's one read: the stream's version, the head, and the head's chain link (the
# last two are the rowid's last entry: no extra page beyond what the head read touches).
_HEAD_AND_LINK = (
    "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream = ?),"
    " (SELECT coalesce(max(seq), 0) FROM events),"
    " (SELECT chain FROM events ORDER BY seq DESC LIMIT 1)"
)
T = TypeVar("T")


class SQLiteJournal(Journal):
    """One SQLite file in WAL mode. Thread-safe: one connection behind a lock."""

    backend = "sqlite"

    def __init__(  # noqa: PLR0913 - every knob is keyword-only and has a default
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        read_only: bool = False,
        durability: Durability = "full",
        busy_timeout_ms: int = 5000,
        busy_retry: RetryPolicy | None = None,
        read_retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        tool: str = "evstore-lib",
    ) -> None:
        if create and read_only:
            raise ValueError("a journal cannot be created read-only")
        self.path = Path(path)
        self.file = self.path
        self.location = str(self.path)
        self.durability = durability
        self.read_only = read_only
        self._clock = clock
        self._busy_retry = busy_retry or RetryPolicy(retries=5)
        # Short waits, more attempts: a flaky read is usually gone the next instant, and
        # SQLite keeps the pages it did read, so each attempt gets further.
        self._read_retry = read_retry or RetryPolicy(retries=8, base_s=0.01, cap_s=0.2)
        self._lock = threading.RLock()
        self._id: str | None = None
        self._meta_base = {"host": socket.gethostname(), "user": current_user(), "tool": tool}
        self._busy_timeout_ms = busy_timeout_ms
        self._found_version = 0
        self._migrate_on_write = False
        self._wal_on_write = False
        self._writing = False
        self.immutable = False
        self._conn = self._connect(create=create, busy_timeout_ms=busy_timeout_ms)

    # --- opening ----------------------------------------------------------------------

    def file_identity(self) -> tuple[tuple[int, int] | None, ...]:
        """(device, inode) of the journal file and of its -wal file (None when absent):
        another identity than at open means the file this connection reads is no longer
        the one at the path (replaced, or its WAL removed)."""
        found: list[tuple[int, int] | None] = []
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                info = path.stat()
            except FileNotFoundError:
                found.append(None)
            else:
                found.append((info.st_dev, info.st_ino))
        return tuple(found)

    def reopen(self) -> Path | None:
        """Connect again to whatever journal is at the path now, after it was replaced or
        its WAL removed under this connection. The events this connection still sees and
        the journal at the path may not have (it reads a file or WAL nobody else can) are
        first kept in `lost+found/` beside the journal, as `log --json` lines: returned,
        None when there were none. The old connection closes without checkpointing, so
        its timeline is not written over the journal at the path."""
        with self._lock:
            rescued = self._rescue_unseen()
            close_without_checkpoint(self._conn, self.path)
            self._conn = self._connect(create=False, busy_timeout_ms=self._busy_timeout_ms)
            self._id = None
            return rescued

    def _rescue_unseen(self) -> Path | None:
        # The file at the path without any WAL (immutable: no locks, no -shm) is where
        # both timelines start from; what this connection holds after its head is at risk.
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as base:
                (start,) = base.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
            sql = f"SELECT {self.event_columns} FROM events WHERE seq > ? ORDER BY seq"  # noqa: S608
            rows = self._conn.execute(sql, (start,)).fetchall()
        except (sqlite3.Error, OSError) as exc:
            log.warning("journal_rescue_failed", path=str(self.path), error=str(exc))
            return None
        if not rows:
            return None
        lines = b"".join(orjson.dumps(event.as_dict()) + b"\n" for event in decode_rows(rows))
        folder = self.path.parent / "lost+found"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.path.name}.lost-{format_time(self._clock())}.jsonl"
        write_atomic(target, lines)
        return target

    def _connect(self, *, create: bool, busy_timeout_ms: int) -> sqlite3.Connection:  # noqa: C901 - one check per way a file can fail to be a journal
        existed = check_journal_file(self.path, create=create)
        if not existed:
            self._create_whole()
            existed = True
        conn = self._open_connection(busy_timeout_ms)
        try:
            # Read the version before anything that could write: a journal from a newer
            # evstore must be refused untouched.
            found = self._read_on(conn, lambda: conn.execute("PRAGMA user_version").fetchone()[0])
            latest = schema.latest_version(self.backend)
            if found > latest:
                raise JournalSchemaError(
                    f"journal {self.path} has schema version {found}, newer than this "
                    f"evstore supports ({latest}): upgrade evstore"
                )
            if found == 0 and self._read_on(conn, lambda: _has_foreign_tables(conn)):
                raise JournalCorruptError(
                    f"{self.path} is an SQLite database but not an evstore journal: "
                    "pass --db with a journal path, or run `evstore init` elsewhere"
                )
            self._found_version = found
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            if self.read_only:
                if found < latest:
                    log.warning("journal_schema_outdated", path=str(self.path), schema=found,
                                latest=latest, message=outdated_note(found))
                return conn
            if existed and create:
                self._refuse_damage(conn)  # `init` on a damaged journal must not bless it
            conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
            # A state snapshot of a big backlog passes through the -wal (~190 MB for 100,000
            # items); without a limit a long-lived connection (watch, mcp) keeps it that
            # size after every checkpoint. Set per connection, it writes nothing.
            conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
            mode = self._read_on(conn, lambda: conn.execute("PRAGMA journal_mode").fetchone()[0])
            # Switching to WAL and migrating both write the file: with the first write, in
            # its transaction, so a command refused before it writes leaves every byte.
            self._wal_on_write = str(mode).lower() != "wal"
            self._migrate_on_write = found < latest
        except sqlite3.Error as exc:
            conn.close()
            raise translate(exc, self.path) from exc
        except (JournalError, ValueError):
            conn.close()
            raise
        except OSError as exc:  # out of descriptors or memory while setting up
            conn.close()
            raise JournalWriteError(
                f"journal {self.path} cannot be opened: {exc.strerror or exc}: "
                "check the open-file limit (ulimit -n) and the disk"
            ) from exc
        if create and self._migrate_on_write:  # `init` migrates at once: that is its job
            self._conn = conn
            try:
                self.migrate()
            except BaseException:
                conn.close()
                raise
        return conn

    def _create_whole(self) -> None:
        """Build a new journal under a temporary name, schema and all, then link it into
        place: nobody ever sees an empty file at the path (which every command refuses as
        a lost journal), and of two racing `init`s the second opens the first's journal."""
        directory = self.path.parent
        temp = directory / f".{self.path.name}.{os.urandom(8).hex()}.tmp"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(temp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
                conn.execute("BEGIN IMMEDIATE")
                self._apply_migrations(conn)
                conn.execute("COMMIT")
            finally:
                conn.close()  # the last connection: the -wal is folded in and removed
            with contextlib.suppress(FileExistsError):
                os.link(temp, self.path)
            fsync_directory(directory)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
        except OSError as exc:
            raise JournalWriteError(
                f"journal {self.path} cannot be created: {exc.strerror or exc}"
                f"{_on_read_only_fs(directory)}"
            ) from None
        finally:
            for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
                with contextlib.suppress(OSError):  # absent, or never made (read-only)
                    leftover.unlink()

    def _open_connection(self, busy_timeout_ms: int) -> sqlite3.Connection:
        """A connection that has really opened the file (SQLite opens lazily)."""
        timeout = busy_timeout_ms / 1000
        if self.read_only:
            opened = self._read_on(None, lambda: open_read_only(self.path, timeout_s=timeout))
            conn, self.immutable = opened
            return conn
        try:
            return sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    def _refuse_damage(self, conn: sqlite3.Connection) -> None:
        damage = self._damage(conn)
        if damage:
            raise JournalCorruptError(_damaged(self.path, damage))

    def migrate(self) -> int:
        """Bring an older journal to this evstore's schema now, in one transaction (the
        first write does it anyway); returns the schema version."""
        if self.read_only:
            raise JournalWriteError(f"journal {self.path} is open read-only: cannot migrate it")
        if self._migrate_on_write or self._wal_on_write:
            self._with_busy_retry(self._commit_nothing)
        return self.schema_version

    def _commit_nothing(self) -> None:
        with self._write():
            pass

    def _apply_migrations(self, conn: sqlite3.Connection) -> None:
        # Another process may have migrated while we waited for the write lock.
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        for version, statements in schema.migrations(self.backend):
            if version <= found:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={version}")
            log.info("journal_migrated", path=str(self.path), to_version=version)

    @property
    def schema_version(self) -> int:
        return int(self._read(lambda: self._conn.execute("PRAGMA user_version").fetchone()[0]))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- reading safely ---------------------------------------------------------------

    def _read(self, fn: Callable[[], T]) -> T:
        return self._read_on(self._conn, fn)

    def _read_on(self, conn: sqlite3.Connection | None, fn: Callable[[], T]) -> T:
        """`fn()` under the lock, its SQLite errors translated; a read error that may be
        transient (I/O, or a malformed page that an integrity check does not confirm) is
        retried with backoff, like a busy journal."""

        def attempt() -> T:
            with self._lock:
                try:
                    return fn()
                except sqlite3.Error as exc:
                    raise translate(exc, self.path) from exc

        if self._writing:
            # Inside a write transaction a failed read may have made SQLite roll it back:
            # retrying here would run the rest of it outside any transaction. The whole
            # transaction is retried instead (_with_busy_retry).
            return attempt()

        def on_retry(attempt_no: int, delay_s: float, exc: BaseException) -> None:
            log.warning("journal_read_retry", attempt=attempt_no,
                        max_attempts=self._read_retry.max_attempts,
                        delay_ms=round(delay_s * 1000, 1), error=str(exc), path=str(self.path))

        try:
            result: T = self._read_retry.call(attempt, retryable=_transient, on_retry=on_retry)
        except JournalReadError as exc:
            # Malformed on every attempt: now, and only now, ask the integrity check.
            if exc.suspect_damage and conn is not None:
                with self._lock:
                    damage = self._damage(conn)
                if damage:
                    raise JournalCorruptError(_damaged(self.path, damage)) from exc
            raise JournalReadError(
                f"{exc} (after {self._read_retry.max_attempts} attempts)",
                suspect_damage=exc.suspect_damage,
            ) from exc
        return result

    def _damage(self, conn: sqlite3.Connection) -> list[str] | None:
        """What `PRAGMA quick_check` finds wrong ([] when nothing), or None when the check
        itself could not read the file: only a finding is evidence of damage. A check that
        SQLite aborts as malformed counts only when it does so every time: a failed read
        can pass for a malformed page once, not on every attempt."""
        malformed: list[str] = []
        for _ in range(_DAMAGE_CHECKS):
            try:
                rows = conn.execute("PRAGMA quick_check").fetchall()
            except sqlite3.Error as exc:
                name = getattr(exc, "sqlite_errorname", "") or ""
                if not name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
                    return None
                malformed.append(f"{name}: {exc}")
                continue
            findings = check_findings(rows)
            return None if read_failed_during_check(findings) else findings
        return malformed[-1:]

    # --- transactions -----------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self.read_only:
                raise JournalWriteError(f"journal {self.path} is open read-only")
            try:
                if self._wal_on_write:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    self._wal_on_write = False
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise translate(exc, self.path) from exc
            self._writing = True
            try:
                if self._migrate_on_write:
                    self._apply_migrations(self._conn)
                yield self._conn
                self._commit()
            except BaseException as exc:
                if self._conn.in_transaction:
                    # A rollback that fails (the disk again) leaves SQLite to roll back
                    # on close; the error that matters is the first one.
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise translate(exc, self.path) from exc
                raise
            finally:
                self._writing = False
            if self._migrate_on_write:
                self._migrate_on_write = False
                self._found_version = schema.latest_version(self.backend)

    def _commit(self) -> None:
        if not self._conn.in_transaction:  # SQLite rolled it back after an error
            raise JournalReadError(
                f"journal {self.path}: a read failed inside a write transaction and SQLite "
                "rolled it back"
            )
        self._conn.execute("COMMIT")

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

        result = self._busy_retry.call(fn, retryable=_transient, on_retry=on_retry)
        if failures:
            self._record_recovered(failures[-1], len(failures), started)
        return result

    # --- append -----------------------------------------------------------------------

    def append(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        stream: str,
        events: Sequence[Event],
        *,
        expected_version: int | None = None,
        event_ids: Sequence[str | None] | None = None,
        correlation_id: str | None = None,
        extra_meta: Mapping[str, Any] | None = None,
        check: AppendCheck | None = None,
        decide: Callable[[], Sequence[Event]] | None = None,
        progress: Progress | None = None,
    ) -> AppendResult:
        """Append `events` to `stream` in one transaction: all of them or none (see
        Journal.append). `check` runs between the halves `progress` counts.
        """
        if decide is None and not events:
            raise InvalidInputError(f"nothing to append to session {stream!r}")
        ids, given = checked_event_ids(event_ids, len(events))
        twice = 2 * len(events)
        payloads = serialized(events if progress is None else reporting(events, progress, twice))
        meta = self._meta(correlation_id, extra_meta)
        meta_json = orjson.dumps(meta).decode()
        tries = [0]

        def attempt() -> AppendResult:
            tries[0] += 1
            with self._write() as conn:
                if given:
                    original = self._existing(conn, stream, given, payloads)
                    if original is not None:
                        return original
                version, head, prev_link = conn.execute(_HEAD_AND_LINK, (stream,)).fetchone()
                check_version(stream, version, expected_version)
                chosen, chosen_payloads = events, payloads
                if decide is not None:
                    chosen = list(decide())
                    if not chosen:
                        return AppendResult(stream, head + 1, head, version, 0)
                    chosen_payloads = serialized(chosen)
                recorded_at = format_time(self._clock())
                rows: list[tuple[Any, ...]] = [
                    (
                        stream,
                        version + offset,
                        event_type,
                        data.decode(),
                        meta_json,
                        recorded_at,
                        ids[offset - 1] if decide is None and ids[offset - 1] else new_event_id(),
                        CURRENT_SCHEMA[event_type],
                    )
                    for offset, (event_type, data, _) in enumerate(chosen_payloads, start=1)
                ]
                rows = self._chained(rows, head, prev_link)
                writes = None
                if check is not None:
                    datas = pending_data(chosen_payloads,
                                         fresh=tries[0] == 1 or decide is not None)
                    pending = [
                        StoredEvent(head + i, stream, row[1], row[2], data, meta, recorded_at,
                                    row[6], row[7])
                        for i, (row, data) in enumerate(zip(rows, datas, strict=True), start=1)
                    ]
                    writes = check(head, pending, chosen)
                for sql, params in lookup_statements(stream, writes):
                    conn.executemany(sql, params)
                conn.executemany(
                    "INSERT INTO events (stream, version, type, data, meta, recorded_at,"
                    " event_id, schema_version, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def _chained(
        self, rows: list[tuple[Any, ...]], head: int, prev_link: str | None
    ) -> list[tuple[Any, ...]]:
        """`rows` (stream, version, type, data, meta, recorded_at, event_id, ...) with each
        one's chain link appended; the first links to the event at `head`."""
        return list(self._chained_rows(rows, head, prev_link))

    def _chained_rows(
        self, rows: Iterable[tuple[Any, ...]], head: int, prev_link: str | None
    ) -> Iterator[tuple[Any, ...]]:
        """`rows` with each one's chain link appended (eventstore.chain.link, inlined: this
        runs for every event appended), lazily, for rows streamed into executemany."""
        prev = prev_link or self._journal_id()
        seq = head
        for row in rows:
            seq += 1
            prev = _sha256(f"{prev}\x1f{seq}\x1f{row[0]}\x1f{row[1]}\x1f{row[2]}\x1f{row[3]}"
                           f"\x1f{row[6]}".encode()).hexdigest()
            yield (*row, prev)

    def append_staged(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        staged: StagedEvents,
        *,
        expected_version: int | None = None,
        correlation_id: str | None = None,
        revalidate: Callable[[int], None] | None = None,
        progress: Progress | None = None,
        extra_meta: Mapping[str, Any] | None = None,
    ) -> AppendResult:
        """Journal.append_staged without materializing the events: the transaction holds
        only the version check, `revalidate(head)` if the stream moved, and the insert,
        whose rows come from a generator; `progress(done, count)` counts rows."""
        stream, count = staged.stream, staged.count
        if not count:
            raise InvalidInputError(f"nothing to append to session {stream!r}")
        meta_json = orjson.dumps(self._meta(correlation_id, extra_meta)).decode()

        def attempt() -> AppendResult:
            with self._write() as conn:
                if staged.given_ids:
                    # One JSON array parameter: a million ids would pass SQLite's limit on
                    # bound variables as `IN (?, ?, ...)`.
                    found = conn.execute(
                        "SELECT seq, stream, version, event_id, type, data FROM events WHERE"
                        " event_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
                        (orjson.dumps(staged.given_ids).decode(),),
                    ).fetchall()
                    if found:  # a retry only if it repeats the very same events
                        payloads = [(event_type, data) for event_type, data, _, _ in staged]
                        original = duplicate_of(found, stream, staged.given_ids, payloads)
                        if original is not None:
                            return original
                version, head, prev_link = conn.execute(_HEAD_AND_LINK, (stream,)).fetchone()
                check_version(stream, version, expected_version)
                if revalidate is not None and version != staged.validated_version:
                    revalidate(head)  # the session moved on since: validate again, under the lock
                recorded_at = format_time(self._clock())
                schema_of = CURRENT_SCHEMA
                rows = self._chained_rows((
                    (stream, version + offset, event_type, data, meta_json, recorded_at,
                     event_id, schema_of[event_type])
                    for offset, (event_type, data, event_id, _) in enumerate(staged, start=1)
                ), head, prev_link)
                for sql, params in lookup_statements(stream, None):  # they are not kept
                    conn.executemany(sql, params)
                conn.executemany(
                    "INSERT INTO events (stream, version, type, data, meta, recorded_at,"
                    " event_id, schema_version, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows if progress is None else reporting(rows, progress, count),
                )
                return AppendResult(stream=stream, first_seq=head + 1, last_seq=head + count,
                                    last_version=version + count, count=count)

        result: AppendResult = self._with_busy_retry(attempt)
        return result

    @staticmethod
    def _existing(
        conn: sqlite3.Connection,
        stream: str,
        given: list[str],
        payloads: Sequence[tuple[Any, ...]],
    ) -> AppendResult | None:
        marks = ",".join("?" * len(given))
        found = conn.execute(
            "SELECT seq, stream, version, event_id, type, data FROM events WHERE event_id IN"  # noqa: S608 - only "?" marks
            f" ({marks}) ORDER BY seq",
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
        version, head = self._read(lambda: self._conn.execute(
            "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream = ?),"
            " (SELECT coalesce(max(seq), 0) FROM events)",
            (stream,),
        ).fetchone())
        # When this stream is most of what lies after `after` (a replay of a one-session
        # journal), reading the table in rowid order beats hopping through the index;
        # otherwise (many sessions, or a short catch-up) the (stream, seq) index wins.
        column = "+stream" if version * 2 >= head - after else "stream"
        sql = (
            "SELECT seq, version, type, data, recorded_at, schema_version FROM events WHERE"  # noqa: S608 - fixed spellings
            f" {column} = ? AND seq > ?"
        )
        params: list[Any] = [stream, after]
        if until is not None:
            sql += " AND seq <= ?"
            params.append(until)
        sql += " ORDER BY seq"
        rows = self._read(lambda: self._conn.execute(sql, params).fetchall())
        yield from decode_scan_rows(stream, rows)

    def change_token(self) -> tuple[int, ...]:
        """Changes whenever anything commits, without reading a table: `data_version`
        moves on another connection's commit, `total_changes` on this one's own."""
        with self._lock:
            (version,) = self._read(lambda: self._conn.execute("PRAGMA data_version").fetchone())
            return (int(version), self._conn.total_changes)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._read(lambda: self._conn.execute(sql, params).fetchall())

    def checkpoint(
        self, projection: str, stream: str, *, with_state: bool = True
    ) -> Checkpoint | None:
        # An older journal is read as it is until a write migrates it: before schema 2 it
        # has no checkpoints table (so no checkpoints), before 5 each checkpoint holds its
        # own state (folded to its seq), before 4 no event id.
        if self._found_version < _CHECKPOINTS_SINCE:
            return None
        if self._found_version >= _STATES_SINCE:
            return super().checkpoint(projection, stream, with_state=with_state)
        event_id = "event_id" if self._found_version >= _CHAIN_SINCE else "NULL"
        state = "state" if with_state else "NULL"
        sql = (f"SELECT projection, stream, seq, {state}, exported_sha256, exported_at, {event_id}"  # noqa: S608 - fixed words
               " FROM checkpoints WHERE projection = ? AND stream = ?")
        rows = self._query(sql, projection, stream)
        if not rows:
            return None
        row = rows[0]
        saved = bytes(row[3]) if row[3] is not None else None
        return Checkpoint(row[0], row[1], row[2], saved, row[4], row[5], row[6], state_seq=row[2])

    def _has_lookups(self) -> bool:
        return self._found_version >= _LOOKUPS_SINCE

    def export_digests(self, projection: str, stream: str) -> set[str]:
        if self._found_version < _CHAIN_SINCE:
            return set()  # schema 4 keeps them; an older journal remembers none yet
        return super().export_digests(projection, stream)

    # --- checkpoints ------------------------------------------------------------------

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Save several checkpoints in one transaction (one fsync)."""

        saved, digests, pruned, states = checkpoint_rows(checkpoints)

        def attempt() -> None:
            with self._write() as conn:
                conn.executemany(SAVE_CHECKPOINT, saved)
                conn.executemany(SAVE_STATE, states)
                conn.executemany(SAVE_DIGEST, digests)
                conn.executemany(PRUNE_DIGESTS, pruned)

        self._with_busy_retry(attempt)

    # --- inspection (sqlite-utils on the same connection) -----------------------------

    @staticmethod
    def export_dirs_of_file(path: Path) -> dict[str, str]:
        """Each session's latest export dir in the journal at `path`, someone else's, read
        without touching it; {} when it cannot be read (not a journal, locked, damaged):
        its own commands will say why."""
        # Without a -wal beside it the file alone holds every commit: read it as immutable,
        # which creates no -wal/-shm of someone else's journal. In use, it has both already.
        in_use = path.with_name(path.name + "-wal").exists()
        mode = "mode=ro" if in_use else "mode=ro&immutable=1"
        try:
            con = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=1.0)
        except sqlite3.Error:
            return {}
        try:
            rows = con.execute(
                f"SELECT stream, data FROM events WHERE {EXPORT_DIR_EVENTS} ORDER BY stream, seq"  # noqa: S608 - a constant
            ).fetchall()
            return {stream: export_dir_of_data(data) for stream, data in rows}
        except (sqlite3.Error, ValueError, KeyError, TypeError):
            return {}
        finally:
            con.close()

    @staticmethod
    def inspect_file(path: Path) -> JournalFile:
        """The file at `path` judged without opening it as a journal (which could migrate
        it): its header first, then its schema version and integrity through a connection
        that cannot write. FileNotFoundError when there is none."""
        defect = journal_file_defect(path, path.stat())
        if defect is not None:
            return JournalFile(defect[0], None, [], foreign=False)
        version, failures, foreign = inspect_sqlite(path)
        return JournalFile(None, version, failures, foreign)

    def integrity_check(self) -> list[str]:
        rows = self._read(lambda: self._conn.execute("PRAGMA integrity_check").fetchall())
        return [row[0] for row in rows if row[0] != "ok"]

    def table_counts(self) -> dict[str, int]:
        import sqlite_utils  # noqa: PLC0415 - inspection only; keeps the append path lean

        with self._lock:
            db = sqlite_utils.Database(self._conn)
            return {name: db[name].count for name in db.table_names()}


def _has_foreign_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchone()
    return bool(row[0])


_CHECKPOINTS_SINCE = 2  # the schema block that adds the checkpoints table
_CHAIN_SINCE = 4  # ... the hash chain, checkpoints' event ids and the export digests
_STATES_SINCE = 5  # ... checkpoint states apart from positions
_LOOKUPS_SINCE = 6  # ... lookup entries for validation
_DAMAGE_CHECKS = 8
_WAL_SIZE_LIMIT = 64 * 2**20  # bytes a checkpointed -wal is truncated to


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: the journal was busy, or a read failed in a way that may pass."""
    return isinstance(exc, (JournalBusyError, JournalReadError))


def _damaged(path: Path, damage: list[str]) -> str:
    more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
    return (f"journal {path} is damaged: its integrity check fails ({damage[0]}{more}): "
            "restore it from a backup")


def _on_read_only_fs(directory: Path) -> str:
    return " (read-only file system)" if on_read_only_file_system(directory) else ""
