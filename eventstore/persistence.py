"""The journal contract both backends implement (docs/design.md §3), and what they share.

`Journal` is the interface the store, the runner, the doctor and the folds are written
against: an append-only log of events with a gap-free global `seq`, per-stream versions,
idempotent event ids and checkpoints. `eventstore.sqlite` and `eventstore.postgres`
implement it; they import from here and never from each other, and nothing outside them
imports a database driver (tests/test_layering.py). Written here once, so the backends
cannot drift apart: the reads (one SQL text, in SQLite's `?` style), the event meta and
the recording of a failure that retries overcame. The records the interface speaks in are
`eventstore.records`; what both backends write, and how, is `eventstore.writes`.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeAlias

import orjson

from eventstore import schema
from eventstore.events import Event, parse_event
from eventstore.logs import get_logger
from eventstore.records import (
    Checkpoint,
    Lookup,
    StreamInfo,
    decode_rows,
    export_dir_of_data,
    format_time,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from datetime import datetime
    from pathlib import Path

    from eventstore.progress import Progress
    from eventstore.records import AppendResult, LookupWrite, StoredEvent
    from eventstore.staging import StagedEvents

log = get_logger("evstore.journal")

Durability = Literal["full", "normal"]
ERRORS_STREAM = "_errors"  # cannot collide: session ids start with a letter or digit
# The predicate of schema.sql's partial index events_export_dir, verbatim: SQLite uses a
# partial index only for a query that repeats its WHERE term.
EXPORT_DIR_EVENTS = "type IN ('SessionCreated', 'SessionMoved')"
# The lookup entry whose presence says the others are current (every append since they
# were built kept them; any other append removes it): a projection's own keys are never
# empty.
MARK_KEY = ""


if TYPE_CHECKING:
    # What an append's `check` is: (head seq before the append, the events as they will be
    # stored, the events given) -> the lookup writes to make with them, if any.
    AppendCheck: TypeAlias = Callable[
        [int, list[StoredEvent], Sequence[Event]], Sequence[LookupWrite] | None
    ]


class Journal(ABC):
    """An evstore journal (docs/design.md §3). Thread-safe; use one per process and thread
    pool, and close it (or use `with`).

    A backend supplies the primitives marked abstract; the reads are written once here,
    over `_rows(sql, params)` in SQLite's `?` style (a backend names its placeholder and
    how it selects an event's columns: PostgreSQL casts its json columns to text, so their
    bytes are decoded as stored).
    """

    backend: ClassVar[str]
    placeholder: ClassVar[str] = "?"
    event_columns: ClassVar[str] = (
        "seq, stream, version, type, data, meta, recorded_at, event_id, schema_version"
    )
    durability: Durability
    #: What messages and logs show for this journal: its file, or its URL without password.
    location: str
    #: The journal's file, for a backend that keeps one (None: a server holds it).
    file: Path | None = None
    _clock: Callable[[], datetime]
    _meta_base: dict[str, Any]
    _recording: bool = False
    _id: str | None = None

    # --- what a backend supplies ---------------------------------------------------------

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of a read, retried as the backend retries reads."""

    @abstractmethod
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
        """Append `events` to `stream` in one transaction: all of them or none.

        `expected_version` is the stream's version the caller last saw (0: new stream);
        a mismatch raises ConcurrencyError. `event_ids` are idempotency keys: an append
        whose ids are all present already, with the same events, returns the original
        result and writes nothing (different events under a known id: ConcurrencyError).
        `check(head_seq, pending, events)` runs inside the transaction, after the version
        check, and may refuse the events by raising; the lookup writes it returns are
        made in the same transaction.

        With `decide`, the events are not given but decided inside the transaction,
        under the write lock, from state read there: no other writer can act between
        the decision and its append. An empty decision appends nothing (count 0).

        `progress(done, total)` (for `events`, not decided ones) counts each event twice
        out of `total = 2 * len(events)`: once serialized, once written.
        """

    @abstractmethod
    def scan(
        self, stream: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[StoredEvent]:
        """What folds need of one stream's events, in `seq` order, and nothing more:
        seq, stream, version, type, data (upcast) and recorded_at. `meta` and `event_id`
        are not loaded (they read as {} and ""); replay is this loop, so it stays lean."""

    @abstractmethod
    def change_token(self) -> tuple[int, ...]:
        """A value that changes whenever events commit (what `evstore watch` polls)."""

    @abstractmethod
    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Save several checkpoints in one transaction (one commit)."""

    @property
    @abstractmethod
    def schema_version(self) -> int:
        """The schema version the journal is at."""

    @abstractmethod
    def migrate(self) -> int:
        """Bring an older journal to this evstore's schema now; the schema version."""

    @abstractmethod
    def integrity_check(self) -> list[str]:
        """What is wrong with the journal's storage or invariants ([] when nothing)."""

    @abstractmethod
    def table_counts(self) -> dict[str, int]:
        """Rows per table, for `evstore status`."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; the journal cannot be used afterwards."""

    # --- what a backend may refine --------------------------------------------------------

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
        """Append events serialized and validated beforehand (outside the lock) against
        the stream at `staged.validated_version`: all of them or none. `revalidate(head)`
        runs under the lock when the stream has moved since (appends to other streams
        cannot change their validity). This version materializes the events; a backend
        that can insert the staged rows as they are read overrides it."""
        events = [parse_event({"type": event_type, **orjson.loads(data)})
                  for event_type, data, _, _ in staged]
        ids = [event_id if given else None for _, _, event_id, given in staged]

        def check(head: int, pending: list[StoredEvent], _: Sequence[Event]) -> None:
            if revalidate is not None and pending[0].version - 1 != staged.validated_version:
                revalidate(head)

        return self.append(staged.stream, events, expected_version=expected_version,
                           event_ids=ids, correlation_id=correlation_id, extra_meta=extra_meta,
                           check=check, progress=progress)

    def file_identity(self) -> tuple[tuple[int, int] | None, ...] | None:
        """For a journal kept in files: the (device, inode) of each, to notice one
        replaced under an open connection. None: nothing local to compare."""
        return None

    def reopen(self) -> Path | None:
        """Connect again after the journal was replaced under this connection; the file
        keeping events only the old connection saw, if any. Nothing to do for a server."""
        return None

    @property
    def latest_schema_version(self) -> int:
        return schema.latest_version(self.backend)

    def now(self) -> str:
        return format_time(self._clock())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the append preparation both backends share -------------------------------------

    def _meta(
        self, correlation_id: str | None, extra_meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {"pid": os.getpid(), **self._meta_base}
        if correlation_id is not None:
            meta["correlation_id"] = correlation_id
        if extra_meta:
            # The caller's identity (a claim's owner, an MCP client) beside ours; ours wins
            # so an event always says which process wrote it.
            meta = {**extra_meta, **meta}
        return meta

    def _journal_id(self) -> str:
        if self._id is None:
            self._id = self.identity()[0]
        return self._id

    def _record_recovered(self, exc: BaseException, retries: int, started: float,
                          operation: str = "append") -> None:
        """A failure that came free after retries is a handled failure worth counting
        (`evstore errors`); best effort, and never recursively."""
        if self._recording:
            return
        from eventstore.classify import classify  # noqa: PLC0415 - only after a retry
        from eventstore.events import ErrorRecorded  # noqa: PLC0415

        self._recording = True
        try:
            self.append(ERRORS_STREAM, [ErrorRecorded(
                component="journal", operation=operation, message=str(exc), retry_count=retries,
                recovery_strategy="retry", recovery_success=True,
                resolution_time_ms=round((time.monotonic() - started) * 1000, 1),
                **classify(exc).fields(),
            )])
        except Exception as record_exc:  # noqa: BLE001 - never mask what was recorded
            log.warning("error_not_recorded", error=str(record_exc))
        finally:
            self._recording = False

    # --- reads, written once ----------------------------------------------------------

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._rows(
            sql if self.placeholder == "?" else sql.replace("?", self.placeholder), params
        )

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
            "SELECT stream FROM events WHERE seq > ? AND seq <= ?"
            " GROUP BY stream ORDER BY min(seq)",
            after,
            until,
        )
        return [row[0] for row in rows]

    def head(self) -> int:
        return int(self._value("SELECT coalesce(max(seq), 0) FROM events"))

    def stream_version(self, stream: str) -> int:
        return int(
            self._value("SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", stream)
        )

    def count(self, stream: str, *, after: int = 0, until: int | None = None) -> int:
        """How many events of `stream` have `after < seq <= until` (a projection's lag)."""
        if until is not None:
            return int(
                self._value(
                    "SELECT count(*) FROM events WHERE stream = ? AND seq > ? AND seq <= ?",
                    stream,
                    after,
                    until,
                )
            )
        return int(
            self._value("SELECT count(*) FROM events WHERE stream = ? AND seq > ?", stream, after)
        )

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
        seq = self._value(
            "SELECT seq FROM events WHERE stream = ? AND version = ?", stream, version
        )
        if seq is None:
            return None
        return next(self.read(after=seq - 1, until=seq))

    def export_dir_of(self, stream: str) -> str | None:
        """The export dir `stream` was last given (SessionCreated, then each SessionMoved),
        or None for a stream that is no session: a read of the partial index."""
        sql = f"SELECT data FROM events WHERE seq = (SELECT max(seq) FROM events WHERE stream = ? AND {EXPORT_DIR_EVENTS})"  # noqa: S608, E501 - a constant predicate
        rows = self._query(sql, stream)
        return export_dir_of_data(rows[0][0]) if rows else None

    def export_dirs(self) -> dict[str, str]:
        """Every session's export dir as last given, by session id. Ordered as the partial
        index is: SQLite scans it (not the whole table) only for that order."""
        rows = self._query(
            f"SELECT stream, data FROM events WHERE {EXPORT_DIR_EVENTS} ORDER BY stream, seq"  # noqa: S608 - a constant
        )
        return {stream: export_dir_of_data(data) for stream, data in rows}  # the latest wins

    def checkpoint(
        self, projection: str, stream: str, *, with_state: bool = True
    ) -> Checkpoint | None:
        """The checkpoint, with its saved state unless `with_state` is false (then `state`
        is None and `state_seq` still says whether and where a snapshot exists): on a big
        backlog the state is the whole document, not worth reading to learn a position."""
        state_column = "s.state" if with_state else "NULL"
        rows = self._query(
            f"SELECT c.projection, c.stream, c.seq, {state_column}, c.exported_sha256,"  # noqa: S608 - one of two spellings
            " c.exported_at, c.event_id, s.seq, c.exported_stat FROM checkpoints c"
            " LEFT JOIN checkpoint_states s ON s.projection = c.projection AND s.stream = c.stream"
            " WHERE c.projection = ? AND c.stream = ?",
            projection, stream,
        )
        if not rows:
            return None
        row = rows[0]
        state = bytes(row[3]) if row[3] is not None else None
        return Checkpoint(
            row[0], row[1], row[2], state, row[4], row[5], row[6],
            state_seq=row[7], exported_stat=row[8],
        )

    def event_id_at(self, seq: int) -> str | None:
        """The id of the event at `seq` (None: no such event)."""
        found = self._value("SELECT event_id FROM events WHERE seq = ?", seq)
        return str(found) if found is not None else None

    def identity(self) -> tuple[str, int]:
        """(journal_id, chain_from): who this journal is, and where its chain starts."""
        row = self._query("SELECT journal_id, chain_from FROM journal_meta")[0]
        return str(row[0]), int(row[1])

    def chain_rows(self, after: int) -> list[tuple[Any, ...]]:
        """(seq, stream, version, type, data text, event_id, chain) after `after`, in seq
        order: what `eventstore.chain.first_break` checks."""
        data = "data" if self.placeholder == "?" else "data::text"
        return self._query(
            f"SELECT seq, stream, version, type, {data}, event_id, chain FROM events"  # noqa: S608
            " WHERE seq > ? ORDER BY seq", after,
        )

    def export_digests(self, projection: str, stream: str) -> set[str]:
        """The sha256 of the last renderings exported (KEEP_DIGESTS at most)."""
        rows = self._query(
            "SELECT sha256 FROM export_digests WHERE projection = ? AND stream = ?",
            projection, stream,
        )
        return {row[0] for row in rows}

    def lookup(self, projection: str, stream: str, keys: Sequence[str] = ()) -> Lookup:
        """Whether a projection's lookup entries of `stream` are current, and those of
        `keys` (schema 6): one read of a few rows on the primary key, however big the
        stream's state."""
        if not self._has_lookups():
            return Lookup(current=False, entries={})
        wanted = [MARK_KEY, *dict.fromkeys(keys)]
        rows = self._query(
            "SELECT key, entry FROM lookups WHERE projection = ? AND stream = ? AND key IN"  # noqa: S608 - only "?" marks
            f" ({','.join('?' * len(wanted))})",
            projection, stream, *wanted,
        )
        entries = {key: orjson.loads(entry) for key, entry in rows}
        if entries.pop(MARK_KEY, None) is None:
            return Lookup(current=False, entries={})
        return Lookup(current=True, entries=entries)

    def _has_lookups(self) -> bool:
        """Whether the journal has the lookup tables (a backend reading an older schema
        as it is says no)."""
        return True

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.save_checkpoints([checkpoint])



def outdated_note(found: int) -> str:
    """What a read-only command says of a journal with an older schema it leaves as is."""
    return f"schema {found}, run any write command or `evstore doctor --fix` to migrate"
