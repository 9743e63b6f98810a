"""The PostgreSQL backend of the journal (docs/design.md §12): `Journal` on a server.

The same contract and guarantees as the SQLite backend, for pipelines on several machines:

- **Gap-free, commit-ordered `seq`.** Every append takes one transaction-scoped advisory
  lock (`pg_advisory_xact_lock(APPEND_LOCK)`) before it reads anything, then assigns
  `seq = max(seq) + 1`. Appenders therefore run one at a time and each commits before
  the next can read the head, so `seq` order is commit order and a rolled-back append
  leaves no hole: a projection reading `seq > checkpoint` can never skip an event that
  commits later with a lower number (which a sequence or identity column allows).
  The lock is taken in its own statement: under READ COMMITTED each later statement
  takes a fresh snapshot, so the head read after it includes every earlier commit.
- **Lock waits are SQLite's busy timeout.** `lock_timeout` is `busy_timeout_ms`; a wait
  beyond it, a serialization failure or a deadlock is `JournalBusyError`, retried with
  the same backoff as SQLITE_BUSY. A lost connection is reconnected and retried too; an
  append whose COMMIT was in flight when the connection died is retried only when it is
  idempotent (its event ids, generated before the first attempt, tell whether it landed).
- **Key order kept.** `data`/`meta` are `json` columns (text as written, validated),
  never `jsonb` (which reorders keys); they are read back as text and decoded by orjson.
- **Durability.** `full` keeps `synchronous_commit = on` (an acknowledged append is on
  the server's disk); `normal` sets it to `off` for this connection (the server may
  lose the last few acknowledged appends if *it* crashes, never corrupting anything).

One connection per journal object, behind a lock (thread-safe, as every Journal).
The tables live in the first schema of the connection's `search_path` (`public`, or
`?options=-csearch_path%3Dname` in the URL).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson
import psycopg

from eventstore import schema
from eventstore.chain import link
from eventstore.errors import (
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
    JournalError,
    JournalNotFoundError,
    JournalSchemaError,
    JournalUnavailableError,
    JournalWriteError,
)
from eventstore.locate import redact_url
from eventstore.logs import get_logger
from eventstore.persistence import Durability, Journal
from eventstore.progress import Progress, reporting
from eventstore.records import (
    CURRENT_SCHEMA,
    AppendResult,
    Checkpoint,
    StoredEvent,
    decode_scan_rows,
    format_time,
    new_event_id,
    utc_now,
)
from eventstore.retry import RetryPolicy
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
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from datetime import datetime

    from eventstore.events import Event
    from eventstore.persistence import AppendCheck

log = get_logger("evstore.journal")

# Keys of the two transaction-scoped advisory locks ("evstore!" and "evstore?" as
# big-endian int64). Advisory locks are per database, so every journal in one database
# shares them: appends to it are serialized, which is the point.
APPEND_LOCK = int.from_bytes(b"evstore!", "big")
MIGRATE_LOCK = int.from_bytes(b"evstore?", "big")

# json columns read as text (psycopg's C text loader) and decoded by orjson in the loop:
# faster than a Python-level json loader per cell, and `meta` stays undecoded until used.
_COLUMNS = (
    "seq, stream, version, type, data::text, meta::text, recorded_at, event_id, schema_version"
)
_INSERT_ONE = (
    "INSERT INTO events (seq, stream, version, type, data, meta, recorded_at, event_id,"
    " schema_version, chain) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_MANY = (
    "INSERT INTO events (seq, stream, version, type, data, meta, recorded_at, event_id,"
    " schema_version, chain) SELECT s, %s, v, t, d::json, %s::json, %s, i, sv, c"
    " FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::text[], %s::int[],"
    " %s::text[]) AS r(s, v, t, d, i, sv, c)"
)
_EXISTING = (
    "SELECT seq, stream, version, event_id, type, data::text FROM events"
    " WHERE event_id = ANY(%s) ORDER BY seq"
)
_HEAD = (
    "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream = %s),"
    " (SELECT coalesce(max(seq), 0) FROM events),"
    " (SELECT chain FROM events ORDER BY seq DESC LIMIT 1)"
)
# SQLSTATEs that mean "another writer is in the way; try again" (SQLite's BUSY).
_BUSY_STATES = frozenset({"55P03", "40001", "40P01", "57014"})
# The server is going away or cannot take us now: reconnect and try again.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300", "08000", "08003", "08006",
                                 "08001", "08004", "08007", "08P01"})
_WRITE_STATES = frozenset({"53100", "53200", "25006", "42501", "58030"})
_CORRUPT_STATES = frozenset({"XX001", "XX002"})
_SPACES = re.compile(r"\s+")


class PostgresJournal(Journal):
    """The journal in a PostgreSQL database. Thread-safe: one connection behind a lock."""

    placeholder = "%s"
    event_columns = _COLUMNS
    backend = "postgresql"

    def __init__(  # noqa: PLR0913 - every knob is keyword-only and has a default
        self,
        url: str,
        *,
        create: bool = False,
        durability: Durability = "full",
        busy_timeout_ms: int = 5000,
        busy_retry: RetryPolicy | None = None,
        connect_retry: RetryPolicy | None = None,
        connect_timeout_s: int = 5,
        clock: Callable[[], datetime] = utc_now,
        tool: str = "evstore-lib",
    ) -> None:
        self._url = url
        self.location = redact_url(url)
        self.durability = durability
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        self._tool = tool
        self._busy_retry = busy_retry or RetryPolicy(retries=5)
        self._connect_retry = connect_retry or RetryPolicy(retries=3)
        self._lock = threading.RLock()
        self._in_tx = False
        self._pipelined: bool | None = None
        self._id: str | None = None
        self._meta_base = {"host": socket.gethostname(), "user": current_user(), "tool": tool}
        self._pg: psycopg.Connection[Any] | None = None
        self._closed = False
        self._password: str | None = None
        self._conninfo = self._check_url(url)
        self._open(create=create)

    # --- opening ----------------------------------------------------------------------

    def _check_url(self, url: str) -> str:
        try:
            params = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise InvalidInputError(
                f"invalid PostgreSQL URL {self.location}: {self._clean(exc)}: expected "
                "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ) from None
        except UnicodeDecodeError:
            # libpq decoded a `%xx` escape into bytes that are not UTF-8 (a password
            # holding a literal `%`): say so, never the password.
            raise InvalidInputError(
                f"invalid PostgreSQL URL {self.location}: a %-escape in it decodes to bytes "
                "that are not UTF-8: write a literal % as %25 (percent-encode the user "
                "name and password)"
            ) from None
        self._password = str(params["password"]) if params.get("password") else None
        extra: dict[str, Any] = {"application_name": f"evstore ({self._tool})"[:63]}
        if "connect_timeout" not in params:
            extra["connect_timeout"] = self._connect_timeout_s
        return psycopg.conninfo.make_conninfo(url, **extra)

    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection with the session settings; connection failures translated."""
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from exc
        try:
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false),"
                " set_config('synchronous_commit', %s, false)",
                (f"{self._busy_timeout_ms}ms", "on" if self.durability == "full" else "off"),
            )
        except psycopg.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        return conn

    def _connection(self) -> psycopg.Connection[Any]:
        """The connection, reconnected if it was lost (never after close())."""
        if self._closed:
            raise JournalError(f"journal {self.location} is closed")
        if self._pg is None or self._pg.closed:
            self._pg = self._connect()
        return self._pg

    def _open(self, *, create: bool) -> None:
        with self._lock:
            self._with_retry(self._connection, operation="connect")
            # Read the version before anything that could write: a journal from a newer
            # evstore must be refused untouched.
            found, foreign = self._found_version()
            latest = schema.latest_version(self.backend)
            if found > latest:
                self.close()
                raise JournalSchemaError(
                    f"journal {self.location} has schema version {found}, newer than this "
                    f"evstore supports ({latest}): upgrade evstore"
                )
            if found == 0 and foreign:
                self.close()
                raise JournalCorruptError(
                    f"database {self.location} holds a table named {foreign} that evstore did not "
                    "create: give evstore its own database (or schema, with "
                    "?options=-csearch_path%3Dname in the URL)"
                )
            if found == 0 and not create:
                self.close()
                raise JournalNotFoundError(
                    f"no evstore journal in database {self.location}: run "
                    "`evstore init` with this --db (or EVSTORE_DB) once to create it, or pass "
                    "the right --db"
                )
            if found < latest:
                try:
                    self._with_retry(self._migrate, operation="migrate")
                except BaseException:
                    self.close()
                    raise

    def _found_version(self, conn: psycopg.Connection[Any] | None = None) -> tuple[int, str | None]:
        """(schema version, name of a foreign `events`/`checkpoints` table or None)."""
        conn = conn or self._connection()
        try:
            # pg_class read with this statement's snapshot, not to_regclass(): the name
            # cache is not refreshed by an advisory lock wait, so a migrator that waited
            # for another one would not see the tables it just created.
            present = {name for (name,) in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = "
                "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
                " AND relname IN ('evstore_schema', 'events', 'checkpoints')"
            ).fetchall()}
            if "evstore_schema" not in present:
                foreign = "events" if "events" in present else "checkpoints" if present else None
                return 0, foreign
            row = conn.execute("SELECT version FROM evstore_schema").fetchone()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        return (int(row[0]) if row else 0), None

    def _migrate(self) -> None:
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            # Another process may have migrated while we waited for the lock.
            found, _ = self._found_version(conn)
            if found > schema.latest_version(self.backend):
                raise JournalSchemaError(
                    f"journal {self.location} was just migrated to schema version {found} by a "
                    "newer evstore: upgrade evstore"
                )
            for version, statements in schema.migrations(self.backend):
                if version <= found:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO evstore_schema (singleton, version) VALUES (true, %s)"
                    " ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
                    (version,),
                )
                log.info("journal_migrated", path=str(self.location), to_version=version)

    @property
    def schema_version(self) -> int:
        return int(self._scalar("SELECT version FROM evstore_schema"))

    def migrate(self) -> int:
        """A PostgreSQL journal is migrated when it is opened (under the migration lock,
        so one process does it): nothing is left to do."""
        return self.schema_version

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._pg is not None:
                self._pg.close()
                self._pg = None

    # --- errors -----------------------------------------------------------------------

    def _clean(self, exc: BaseException) -> str:
        """An error's first line (libpq adds hints on further lines), the password
        scrubbed if libpq ever echoed it."""
        text = _SPACES.sub(" ", str(exc).strip().split("\n", 1)[0]).strip()
        text = text.replace(self._url, str(self.location))
        if self._password:
            text = text.replace(self._password, "***")
        return text.removeprefix("connection failed: ").removeprefix("connection is bad: ")

    def _connect_error(self, exc: psycopg.Error) -> JournalError:
        # libpq reports failures to connect without a SQLSTATE: the server's FATAL text
        # is all there is. Recognize the two that no retry can fix; anything else (down,
        # starting, refusing, unreachable) is "unavailable" and retried.
        text = self._clean(exc)
        if "does not exist" in text and 'database "' in text:
            return JournalNotFoundError(
                f"journal {self.location}: {text}: create the database first "
                "(createdb, or CREATE DATABASE), then run `evstore init` with this --db"
            )
        if any(word in text for word in ("authentication failed", "pg_hba.conf", 'role "',
                                         "password", "permission denied")):
            return JournalError(
                f"journal {self.location}: cannot log in: {text}: check the user and password "
                "in the URL (or ~/.pgpass) and the server's pg_hba.conf"
            )
        return JournalUnavailableError(
            f"journal {self.location} is unavailable ({text}): start the PostgreSQL server or fix "
            "the URL (--db or EVSTORE_DB), then run the command again"
        )

    def _translate(self, exc: psycopg.Error) -> JournalError:
        """Map a psycopg error to evstore's tree by SQLSTATE, never its message."""
        state = getattr(exc, "sqlstate", None) or ""
        text = self._clean(exc)
        if state in _BUSY_STATES:
            return JournalBusyError(
                f"journal {self.location} is busy: another writer holds it ({state}: {text})"
            )
        broken = self._pg is not None and self._pg.broken
        if state in _UNAVAILABLE_STATES or state.startswith("08") or (
            not state and (broken or isinstance(exc, psycopg.OperationalError))
        ):
            return JournalUnavailableError(
                f"journal {self.location} is unavailable ({text or 'connection lost'}): start the "
                "PostgreSQL server or fix the URL (--db or EVSTORE_DB), then run the command again"
            )
        if state in _WRITE_STATES:
            return JournalWriteError(
                f"journal {self.location} cannot be written ({state}: {text}): free space on the "
                "server, or grant this user write access"
            )
        if state in _CORRUPT_STATES or state == "42P01":
            return JournalCorruptError(
                f"journal {self.location} is damaged ({state}: {text}): restore it from a backup"
            )
        if state == "3D000":
            return JournalNotFoundError(
                f"journal {self.location}: {text}: create the database first"
            )
        return JournalError(f"journal {self.location}: {state or type(exc).__name__}: {text}")

    @staticmethod
    def _retryable(exc: BaseException) -> bool:
        return isinstance(exc, (JournalBusyError, JournalUnavailableError))

    def _with_retry(self, fn: Callable[[], Any], *, operation: str = "append",
                    record: bool = False) -> Any:
        """Run `fn`, retrying busy and connection failures with backoff (SQLite's busy)."""
        failures: list[BaseException] = []
        started = time.monotonic()
        policy = self._connect_retry if operation == "connect" else self._busy_retry

        def on_retry(attempt: int, delay_s: float, exc: BaseException) -> None:
            failures.append(exc)
            cause = exc.__cause__
            busy = isinstance(exc, JournalBusyError)
            log.warning(
                "journal_busy_retry" if busy else "journal_unavailable_retry",
                attempt=attempt,
                max_attempts=policy.max_attempts,
                delay_ms=round(delay_s * 1000, 1),
                errno=getattr(cause, "sqlstate", None) or type(cause or exc).__name__,
                error=str(exc),
                path=str(self.location),
                operation=operation,
            )

        result = policy.call(fn, retryable=self._retryable, on_retry=on_retry)
        if failures and record:
            self._record_recovered(failures[-1], len(failures), started, operation)
        return result

    # --- transactions -----------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """BEGIN ... COMMIT on the one connection; ROLLBACK on any failure."""
        with self._lock:
            conn = self._connection()
            self._in_tx = True
            try:
                conn.execute("BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._abort(conn, exc)
                raise
            finally:
                self._in_tx = False

    def _pipeline(self, conn: psycopg.Connection[Any]) -> contextlib.AbstractContextManager[Any]:
        """Statements sent together, answered in one round trip (libpq >= 14); plain
        one-by-one execution where pipelines are not supported."""
        if self._pipelined is None:
            self._pipelined = psycopg.Pipeline.is_supported()
        return conn.pipeline() if self._pipelined else contextlib.nullcontext()

    def _finish(self, conn: psycopg.Connection[Any], command: str) -> None:
        conn.execute(command)

    def _abort(self, conn: psycopg.Connection[Any], exc: BaseException) -> None:
        """Roll back after `exc`; raise it translated when it is psycopg's."""
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()  # broken: the next use reconnects
        if isinstance(exc, psycopg.Error):
            raise self._translate(exc) from exc

    # --- append -----------------------------------------------------------------------

    def append(  # noqa: PLR0913, PLR0915, C901 - keyword-only options of one operation
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
        """Append `events` to `stream` in one transaction: all of them or none.

        As Journal.append (see there): expected_version, idempotent
        event_ids, `check` inside the transaction, `decide` under the append lock,
        `progress` out of 2 * len(events) (the rows go in one statement: their half is
        reported once they are committed).
        """
        if decide is None and not events:
            raise InvalidInputError(f"nothing to append to session {stream!r}")
        ids, given = checked_event_ids(event_ids, len(events))
        twice = 2 * len(events)
        payloads = serialized(events if progress is None else reporting(events, progress, twice))
        meta = self._meta(correlation_id, extra_meta)
        meta_json = orjson.dumps(meta).decode()
        # Ids fixed before the first attempt: when the connection dies while COMMIT is
        # in flight, the retry looks for the ids that attempt wrote to learn whether it
        # landed (and then answers as if it had not been interrupted).
        own_ids = [event_id or new_event_id() for event_id in ids]
        tracking: dict[str, Any] = {"committing": False, "written": None, "result": None,
                                    "tries": 0}

        def attempt() -> AppendResult:  # noqa: PLR0915 - one transaction, step by step
            tracking["tries"] += 1
            unsure = tracking["committing"]
            tracking["committing"] = False
            with self._lock:
                conn = self._connection()
                self._in_tx = True
                try:
                    # One round trip: BEGIN, the lock, then (each its own statement, so each
                    # sees every commit made before the lock was granted) what to check.
                    with self._pipeline(conn):
                        conn.execute("BEGIN")
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
                        landed = conn.execute(
                            "SELECT count(*) FROM events WHERE event_id = ANY(%s)",
                            (tracking["written"],),
                        ) if unsure and tracking["written"] else None
                        present = conn.execute(_EXISTING, (given,)) if given else None
                        head_row = conn.execute(_HEAD, (stream,))
                    if landed is not None and (landed.fetchone() or (0,))[0]:
                        self._finish(conn, "ROLLBACK")
                        return tracking["result"]  # type: ignore[no-any-return]
                    if present is not None:
                        original = duplicate_of(present.fetchall(), stream, given, payloads)
                        if original is not None:
                            self._finish(conn, "ROLLBACK")
                            return original
                    version, head, prev_link = head_row.fetchone()  # type: ignore[misc]
                    check_version(stream, version, expected_version)
                    chosen, chosen_payloads = events, payloads
                    if decide is not None:
                        chosen = list(decide())
                        if not chosen:
                            self._finish(conn, "ROLLBACK")
                            return AppendResult(stream, head + 1, head, version, 0)
                        chosen_payloads = serialized(chosen)
                    recorded_at = format_time(self._clock())
                    rows = [
                        (
                            head + offset,
                            version + offset,
                            event_type,
                            data.decode(),
                            own_ids[offset - 1] if decide is None else new_event_id(),
                            CURRENT_SCHEMA[event_type],
                        )
                        for offset, (event_type, data, _) in enumerate(chosen_payloads, start=1)
                    ]
                    rows = self._chained(rows, stream, prev_link)
                    writes = None
                    if check is not None:
                        datas = pending_data(chosen_payloads,
                                             fresh=tracking["tries"] == 1 or decide is not None)
                        pending = [
                            StoredEvent(row[0], stream, row[1], row[2], data, meta, recorded_at,
                                        row[4], row[5])
                            for row, data in zip(rows, datas, strict=True)
                        ]
                        writes = check(head, pending, chosen)
                    with conn.cursor() as cur:
                        for sql, params in lookup_statements(stream, writes):
                            cur.executemany(sql.replace("?", "%s"), params)
                    tracking["written"] = [row[4] for row in rows]
                    tracking["result"] = AppendResult(
                        stream=stream,
                        first_seq=head + 1,
                        last_seq=head + len(rows),
                        last_version=version + len(rows),
                        count=len(rows),
                    )
                    # One more round trip: the rows and COMMIT together.
                    with self._pipeline(conn):
                        self._insert(conn, stream, rows, meta_json, recorded_at)
                        tracking["committing"] = True
                        conn.execute("COMMIT")
                    if progress is not None and decide is None:
                        progress(twice, twice)
                    return tracking["result"]  # type: ignore[no-any-return]
                except BaseException as exc:
                    self._abort(conn, exc)
                    raise
                finally:
                    self._in_tx = False

        # No log line here: this is the hot path, and callers log the operation it serves.
        appended: AppendResult = self._with_retry(attempt, record=True)
        return appended

    def _chained(
        self, rows: list[tuple[Any, ...]], stream: str, prev_link: str | None
    ) -> list[tuple[Any, ...]]:
        """`rows` (seq, version, type, data, event_id, schema_version) with each one's
        chain link appended (eventstore/chain.py), the first linked to the head's."""
        prev = prev_link or self._journal_id()
        chained = []
        for row in rows:
            prev = link(prev, row[0], stream, row[1], row[2], row[3], row[4])
            chained.append((*row, prev))
        return chained

    @staticmethod
    def _insert(conn: psycopg.Connection[Any], stream: str, rows: list[tuple[Any, ...]],
                meta_json: str, recorded_at: str) -> None:
        if len(rows) == 1:
            seq, version, type_, data, event_id, sv, chain = rows[0]
            conn.execute(_INSERT_ONE, (seq, stream, version, type_, data, meta_json,
                                       recorded_at, event_id, sv, chain))
            return
        # One statement whatever the size: the columns as arrays, unnested server-side.
        columns = list(zip(*rows, strict=True))
        conn.execute(_INSERT_MANY, (stream, meta_json, recorded_at, *map(list, columns)))


    # --- reading ----------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of a query. Outside a transaction a lost connection or a busy server
        is retried (reads are idempotent); inside one the error is the append's."""

        def run() -> list[tuple[Any, ...]]:
            with self._lock:
                conn = self._connection()
                try:
                    return conn.execute(sql, params).fetchall()
                except psycopg.Error as exc:
                    raise self._translate(exc) from exc

        with self._lock:
            if self._in_tx:
                return run()
            result: list[tuple[Any, ...]] = self._with_retry(run, operation="read")
            return result

    def _scalar(self, sql: str, *params: Any) -> Any:
        rows = self._rows(sql, params)
        return rows[0][0] if rows else None

    def scan(
        self, stream: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[StoredEvent]:
        """What folds need of one stream's events, in `seq` order (see Journal.scan):
        `meta` and `event_id` are not loaded (they read as {} and "")."""
        sql = (
            "SELECT seq, version, type, data::text, recorded_at, schema_version FROM events"
            " WHERE stream = %s AND seq > %s"
        )
        params: list[Any] = [stream, after]
        if until is not None:
            sql += " AND seq <= %s"
            params.append(until)
        sql += " ORDER BY seq"
        yield from decode_scan_rows(stream, self._rows(sql, params))

    def change_token(self) -> tuple[int, ...]:
        """Changes whenever events commit (what `evstore watch` polls): the head seq, one
        backward step on the primary key. Unlike SQLite's data_version it does not move
        on a checkpoint, which watch ignores anyway."""
        return (self.head(),)

    # --- checkpoints ------------------------------------------------------------------

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Save several checkpoints in one transaction (one commit)."""

        def attempt() -> None:
            saved, digests, pruned, states = checkpoint_rows(checkpoints)
            states = [(*row[:3], bytes(row[3])) for row in states]
            with self._transaction() as conn, conn.cursor() as cur:
                cur.executemany(SAVE_CHECKPOINT.replace("?", "%s"), saved)
                if states:
                    cur.executemany(SAVE_STATE.replace("?", "%s"), states)
                if digests:
                    cur.executemany(SAVE_DIGEST.replace("?", "%s"), digests)
                    cur.executemany(PRUNE_DIGESTS.replace("?", "%s"), pruned)

        if checkpoints:
            self._with_retry(attempt, operation="checkpoint")

    # --- inspection -------------------------------------------------------------------

    def integrity_check(self) -> list[str]:
        """What is wrong with the journal's invariants ([] when nothing): the append-only
        trigger present and enabled, indexes valid, `seq` gap-free from 1, each stream's
        versions 1..n. Reads every row: meant for `evstore doctor`, not a hot path."""
        problems: list[str] = []
        trigger = self._rows(
            "SELECT tgenabled FROM pg_trigger WHERE tgrelid = 'events'::regclass"
            " AND tgname = 'events_append_only'"
        )
        if not trigger:
            problems.append("the append-only trigger events_append_only is missing")
        elif trigger[0][0] == "D":
            problems.append("the append-only trigger events_append_only is disabled")
        problems += [
            f"index {name} is invalid: REINDEX it"
            for (name,) in self._rows(
                "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid"
                " AND indrelid IN ('events'::regclass, 'checkpoints'::regclass)"
            )
        ]
        count, low, high = self._rows(
            "SELECT count(*), coalesce(min(seq), 1), coalesce(max(seq), 0) FROM events"
        )[0]
        if count != high or low != 1:
            problems.append(f"seq is not gap-free: {count} events with seq {low}..{high}")
        problems += [
            f"session {stream!r}: {n} events but versions {lo}..{hi}"
            for stream, n, lo, hi in self._rows(
                "SELECT stream, count(*), min(version), max(version) FROM events"
                " GROUP BY stream HAVING count(*) <> max(version) OR min(version) <> 1"
                " ORDER BY stream"
            )
        ]
        return problems

    def table_counts(self) -> dict[str, int]:
        events, checkpoints = self._rows(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM checkpoints)"
        )[0]
        return {"events": int(events), "checkpoints": int(checkpoints)}
