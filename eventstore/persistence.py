"""The journal contract both backends implement (docs/design.md §3), and what they share.

`Journal` is the interface the store, the runner, the doctor and the folds are written
against: an append-only log of events with a gap-free global `seq`, per-stream versions,
idempotent event ids and checkpoints. `eventstore.sqlite` and `eventstore.postgres`
implement it; they import from here and never from each other, and nothing outside them
imports a database driver (tests/test_layering.py). Shared here, so the backends cannot
drift apart: the records (`StoredEvent`, `AppendResult`, `Checkpoint`, `StreamInfo`), the
reads (one SQL text, in SQLite's `?` style), the preparation of an append (event ids, the
NUL rule, duplicate detection, the event meta) and the recording of a failure that
retries overcame.
"""

from __future__ import annotations

import getpass
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeAlias

import orjson

from eventstore import schema
from eventstore.errors import ConcurrencyError, InvalidInputError
from eventstore.events import EVENT_TYPES, Event, parse_event, upcast
from eventstore.logs import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

    from eventstore.progress import Progress
    from eventstore.staging import StagedEvents

log = get_logger("evstore.journal")

Durability = Literal["full", "normal"]
ERRORS_STREAM = "_errors"  # cannot collide: session ids start with a letter or digit
CURRENT_SCHEMA = {name: cls.schema_version for name, cls in EVENT_TYPES.items()}
_NO_META: dict[str, Any] = {}
# The predicate of schema.sql's partial index events_export_dir, verbatim: SQLite uses a
# partial index only for a query that repeats its WHERE term.
EXPORT_DIR_EVENTS = "type IN ('SessionCreated', 'SessionMoved')"
# The lookup entry that holds the stream version the others are current at: a
# projection's own keys are never empty.
MARK_KEY = ""


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

    def __init__(  # noqa: PLR0913, PLR0917 - one argument per journal column, in its order
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
        if isinstance(self._meta, dict):
            return self._meta
        decoded: dict[str, Any] = orjson.loads(self._meta)
        self._meta = decoded
        return decoded

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
    """Where a projection's file stands (`seq`, what was exported) and its folded state.

    `state` is folded up to `state_seq`, which may lag `seq`: a snapshot is saved only
    every so many events (the runner's SNAPSHOT_EVERY), and a run folds on from it. On
    save, a `state` of None keeps the snapshot the journal has."""

    projection: str
    stream: str
    seq: int
    state: bytes | None
    exported_sha256: str | None
    exported_at: str | None
    event_id: str | None = None  # the event at `seq`, as the journal held it when saved
    state_seq: int | None = None  # the seq `state` is folded to (None: `seq`)
    exported_stat: str | None = None  # the exported file's size:mtime_ns:inode

    @property
    def state_at(self) -> int:
        return self.seq if self.state_seq is None else self.state_seq


@dataclass(frozen=True)
class Lookup:
    """A projection's lookup entries of one stream (see Journal.lookup): `version` is the
    stream version they are current at (None: there are none), `entries` those asked for
    that exist."""

    version: int | None
    entries: dict[str, Any]


@dataclass(frozen=True)
class LookupWrite:
    """How an append changes a projection's lookup entries of its stream, written in the
    append's transaction: each key's new entry (None deletes it; keys are never empty),
    all others dropped first when `replace`; `version` is the stream version they are then
    current at (None: drop them all, so the next append rebuilds them)."""

    projection: str
    stream: str
    version: int | None
    changes: Mapping[str, Any]
    replace: bool = False


if TYPE_CHECKING:
    # What an append's `check` is: (head seq before the append, the events as they will be
    # stored, the events given) -> the lookup writes to make with them, if any.
    AppendCheck: TypeAlias = Callable[
        [int, list[StoredEvent], Sequence[Event]], Sequence[LookupWrite] | None
    ]


@dataclass(frozen=True)
class StreamInfo:
    stream: str
    events: int
    version: int
    last_seq: int
    last_recorded_at: str


def checked_event_ids(
    event_ids: Sequence[str | None] | None, count: int
) -> tuple[list[str | None], list[str]]:
    """(one id or None per event, the ids given): the checks both backends share, so an
    id one of them refuses is refused by the other as well."""
    ids: list[str | None] = list(event_ids) if event_ids is not None else [None] * count
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


def check_version(stream: str, version: int, expected: int | None) -> None:
    """Optimistic concurrency: the stream must be where the caller last saw it."""
    if expected is not None and version != expected:
        raise ConcurrencyError(
            f"session {stream!r} is at version {version}, expected {expected}: re-read and retry"
        )


def duplicate_of(
    found: list[tuple[Any, ...]],
    stream: str,
    given: Sequence[str],
    payloads: Sequence[tuple[Any, ...]],
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
        event_type, data = wanted[row[3]][:2]
        if row[4] != event_type or canonical(row[5]) != canonical(data):
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


def canonical(data: str | bytes | Any) -> bytes:
    # Compare JSON values, not their spelling: PostgreSQL may hand `json` back parsed.
    value = orjson.loads(data) if isinstance(data, (str, bytes)) else data
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)

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
        return _export_dir(rows[0][0]) if rows else None

    def export_dirs(self) -> dict[str, str]:
        """Every session's export dir as last given, by session id. Ordered as the partial
        index is: SQLite scans it (not the whole table) only for that order."""
        rows = self._query(
            f"SELECT stream, data FROM events WHERE {EXPORT_DIR_EVENTS} ORDER BY stream, seq"  # noqa: S608 - a constant
        )
        return {stream: _export_dir(data) for stream, data in rows}  # the latest wins

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
        """The version and the entries of `keys` of a projection's lookup (schema 6): one
        read of a few rows on the primary key, however big the stream's state."""
        if not self._has_lookups():
            return Lookup(None, {})
        wanted = [MARK_KEY, *dict.fromkeys(keys)]
        rows = self._query(
            "SELECT key, entry FROM lookups WHERE projection = ? AND stream = ? AND key IN"  # noqa: S608 - only "?" marks
            f" ({','.join('?' * len(wanted))})",
            projection, stream, *wanted,
        )
        entries = {key: orjson.loads(entry) for key, entry in rows}
        version = entries.pop(MARK_KEY, None)
        if version is None:
            return Lookup(None, {})
        return Lookup(int(version), entries)

    def _has_lookups(self) -> bool:
        """Whether the journal has the lookup tables (a backend reading an older schema
        as it is says no)."""
        return True

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.save_checkpoints([checkpoint])



# Both journals' upsert of checkpoints, in SQLite's `?` style.
SAVE_CHECKPOINT = (
    "INSERT INTO checkpoints (projection, stream, seq, state, exported_sha256, exported_at,"
    " event_id, exported_stat) VALUES (?, ?, ?, '', ?, ?, ?, ?) ON CONFLICT (projection, stream)"
    " DO UPDATE SET seq = excluded.seq, exported_sha256 = excluded.exported_sha256,"
    " exported_at = excluded.exported_at, event_id = excluded.event_id,"
    " exported_stat = excluded.exported_stat"
)
# A snapshot of a checkpoint's state, written only when one is due.
SAVE_STATE = (
    "INSERT INTO checkpoint_states (projection, stream, seq, state) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (projection, stream) DO UPDATE SET seq = excluded.seq, state = excluded.state"
)
# Renderings remembered per projection: enough for hosts a few exports apart.
KEEP_DIGESTS = 16
SAVE_DIGEST = (
    "INSERT INTO export_digests (projection, stream, sha256, seq, exported_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (projection, stream, sha256) DO UPDATE SET"
    " seq = excluded.seq, exported_at = excluded.exported_at"
)
PRUNE_DIGESTS = (
    "DELETE FROM export_digests WHERE projection = ? AND stream = ? AND sha256 NOT IN"
    " (SELECT sha256 FROM export_digests WHERE projection = ? AND stream = ?"
    " ORDER BY exported_at DESC, seq DESC LIMIT ?)"
)


_DROP_LOOKUPS = "DELETE FROM lookups WHERE projection = ? AND stream = ?"
_DELETE_LOOKUP = "DELETE FROM lookups WHERE projection = ? AND stream = ? AND key = ?"
_SAVE_LOOKUP = (
    "INSERT INTO lookups (projection, stream, key, entry) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (projection, stream, key) DO UPDATE SET entry = excluded.entry"
)


def lookup_statements(writes: Sequence[LookupWrite]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """(SQL in SQLite's `?` style, its parameter rows) that make `writes`, in order: the
    usual update is one statement, its entries and the version together."""
    statements: list[tuple[str, list[tuple[Any, ...]]]] = []
    dumps = orjson.dumps
    for write in writes:
        where = (write.projection, write.stream)
        if write.replace or write.version is None:
            statements.append((_DROP_LOOKUPS, [where]))
        if write.version is None:
            continue
        deletes = [(*where, key) for key, entry in write.changes.items() if entry is None]
        if deletes and not write.replace:
            statements.append((_DELETE_LOOKUP, deletes))
        upserts = [(*where, MARK_KEY, str(write.version))]
        upserts += [(*where, key, dumps(entry).decode())
                    for key, entry in write.changes.items() if entry is not None]
        statements.append((_SAVE_LOOKUP, upserts))
    return statements


def checkpoint_rows(checkpoints: Sequence[Checkpoint]) -> tuple[list[tuple[Any, ...]], ...]:
    """The parameters of SAVE_CHECKPOINT, SAVE_DIGEST, PRUNE_DIGESTS and SAVE_STATE for
    `checkpoints` (a state of None keeps the snapshot the journal has)."""
    saved = [(c.projection, c.stream, c.seq, c.exported_sha256, c.exported_at, c.event_id,
              c.exported_stat) for c in checkpoints]
    states = [
        (c.projection, c.stream, c.state_at, c.state) for c in checkpoints if c.state is not None
    ]
    digests = [(c.projection, c.stream, c.exported_sha256, c.seq, c.exported_at or "")
               for c in checkpoints if c.exported_sha256 is not None]
    pruned = [(c.projection, c.stream, c.projection, c.stream, KEEP_DIGESTS)
              for c in checkpoints if c.exported_sha256 is not None]
    return saved, digests, pruned, states


def _export_dir(data: str | bytes | dict[str, Any]) -> str:
    # SQLite returns the json column as text; psycopg decodes it unless cast to text.
    return str((data if isinstance(data, dict) else orjson.loads(data))["export_dir"])



def decode_rows(rows: Iterable[tuple[Any, ...]]) -> Iterator[StoredEvent]:
    """Rows of (seq, stream, version, type, data, meta, recorded_at, event_id,
    schema_version), data as JSON text, into events upcast to the current schema."""
    loads, current = orjson.loads, CURRENT_SCHEMA
    for seq, stream, version, type_, data, meta, recorded_at, event_id, sv in rows:
        payload = loads(data)
        if sv < current.get(type_, sv):
            payload = upcast(type_, sv, payload)
        yield StoredEvent(seq, stream, version, type_, payload, meta, recorded_at, event_id, sv)



def decode_scan_rows(stream: str, rows: Iterable[tuple[Any, ...]]) -> Iterator[StoredEvent]:
    """The lean rows of `scan` (seq, version, type, data, recorded_at, schema_version):
    what folds need, without meta or event id. This is the replay loop: keep it tight."""
    loads, current, make = orjson.loads, CURRENT_SCHEMA, StoredEvent
    for seq, version, type_, data, recorded_at, sv in rows:
        payload = loads(data)
        if sv < current.get(type_, sv):
            payload = upcast(type_, sv, payload)
        yield make(seq, stream, version, type_, payload, _NO_META, recorded_at, "", sv)



def pending_data(
    payloads: Sequence[tuple[str, bytes, dict[str, Any]]], *, fresh: bool
) -> list[dict[str, Any]]:
    """The data of each payload for a check inside an append: the dicts serialization
    made while they are `fresh`; parsed from the bytes again on a retried attempt, since
    the check's folds may have changed the dicts of the one before."""
    if fresh:
        return [data for _, _, data in payloads]
    return [orjson.loads(raw) for _, raw, _ in payloads]


def serialized(events: Iterable[Event]) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(type, data as JSON, data) of each event: the data as the journal will hold it,
    and as a check inside the append reads it, without parsing the bytes back (on a
    backlog import, a hundred megabytes)."""
    out = []
    for event in events:
        data = event.model_dump(mode="json")  # fresh containers: the model is not shared
        out.append((event.type, orjson.dumps(data), data))
    return out



def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())



def outdated_note(found: int) -> str:
    """What a read-only command says of a journal with an older schema it leaves as is."""
    return f"schema {found}, run any write command or `evstore doctor --fix` to migrate"
