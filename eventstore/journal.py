"""The SQLite journal (docs/design.md §3): append-only events with a gap-free global `seq`.

The hot path is the standard `sqlite3` module on one connection in autocommit mode, with
explicit `BEGIN IMMEDIATE` transactions: an append takes the write lock before it reads
the stream's version, so the version check and the insert cannot interleave with
another writer's, in this process or another.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import orjson

from eventstore import schema
from eventstore.atomic import fsync_directory, write_atomic
from eventstore.detach import close_without_checkpoint
from eventstore.errors import (
    ConcurrencyError,
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
    JournalError,
    JournalReadError,
    JournalSchemaError,
    JournalWriteError,
)
from eventstore.events import EVENT_TYPES, Event, parse_event, upcast
from eventstore.journal_file import (
    check_journal_file,
    on_read_only_file_system,
    open_read_only,
)
from eventstore.logs import get_logger
from eventstore.progress import Progress, reporting
from eventstore.retry import RetryPolicy
from eventstore.staging import StagedEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

log = get_logger("evstore.journal")

Durability = Literal["full", "normal"]
_CURRENT_SCHEMA = {name: cls.schema_version for name, cls in EVENT_TYPES.items()}
_NO_META: dict[str, Any] = {}
# The predicate of schema.sql's partial index events_export_dir, verbatim: SQLite uses a
# partial index only for a query that repeats its WHERE term.
_EXPORT_DIR_EVENTS = "type IN ('SessionCreated', 'SessionMoved')"
_BUSY_NAMES = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_SNAPSHOT"})
_CORRUPT_NAMES = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})
_sha256 = hashlib.sha256
# The append's one read: the stream's version, the head, and the head's chain link (the
# last two are the rowid's last entry: no extra page beyond what the head read touches).
_HEAD_AND_LINK = (
    "SELECT (SELECT coalesce(max(version), 0) FROM events WHERE stream = ?),"
    " (SELECT coalesce(max(seq), 0) FROM events),"
    " (SELECT chain FROM events ORDER BY seq DESC LIMIT 1)"
)
# Errors of reading a page that say nothing about the file's contents.
_READ_ERROR_NAMES = frozenset({
    "SQLITE_IOERR", "SQLITE_IOERR_READ", "SQLITE_IOERR_SHORT_READ", "SQLITE_IOERR_CORRUPTFS",
    "SQLITE_IOERR_SHMREAD", "SQLITE_IOERR_SHMMAP", "SQLITE_IOERR_NOMEM",
})
T = TypeVar("T")


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
class StreamInfo:
    stream: str
    events: int
    version: int
    last_seq: int
    last_recorded_at: str


def translate(exc: sqlite3.Error, path: Path) -> JournalError:  # noqa: PLR0911 - one per result-code family
    """Map an sqlite3 error to evstore's tree by SQLite's result code, never its message."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in _BUSY_NAMES or (not name and "locked" in str(exc)):
        return JournalBusyError(f"journal {path} is busy: another writer holds it ({exc})")
    if name in _CORRUPT_NAMES or name.startswith("SQLITE_CORRUPT"):
        # A malformed page can be a read that failed on its way from the disk: damage is
        # only said (with a restore to advise) once an integrity check finds it.
        return JournalReadError(
            f"journal {path} could not be read ({name}: {exc}): no integrity check confirms "
            "damage, so this may be a passing read error: run the command again; if it "
            "persists, run `evstore doctor`",
            suspect_damage=True,
        )
    if name in _READ_ERROR_NAMES:
        return JournalReadError(
            f"journal {path} could not be read ({name}: {exc}): an I/O error that may pass: "
            "run the command again; if it persists, check the disk (dmesg)"
        )
    if name == "SQLITE_IOERR_FSYNC":
        # The commit's frames may be in the WAL already: after a crash SQLite can recover
        # them. Saying "not written" would invite a duplicate append.
        return JournalWriteError(
            f"journal {path}: the commit could not be made durable ({name}: {exc}); its "
            "outcome is unknown: check `evstore log` before appending again, or retry with "
            "the same --event-id"
        )
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")) and on_read_only_file_system(path):
        return JournalWriteError(
            f"journal {path} is on a read-only file system ({name}): commands that write "
            "need it writable; the read-only ones (status, log, show, history, report, "
            "errors, doctor without --fix, replay --out) work as it is"
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


def _check_version(stream: str, version: int, expected: int | None) -> None:
    """Optimistic concurrency: the stream must be where the caller last saw it."""
    if expected is not None and version != expected:
        raise ConcurrencyError(
            f"session {stream!r} is at version {version}, expected {expected}: re-read and retry"
        )


def duplicate_of(
    found: list[tuple[Any, ...]],
    stream: str,
    given: Sequence[str],
    payloads: Sequence[tuple[str, bytes | str]],
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
        sql = f"SELECT data FROM events WHERE seq = (SELECT max(seq) FROM events WHERE stream = ? AND {_EXPORT_DIR_EVENTS})"  # noqa: S608, E501 - a constant predicate
        rows = self._query(sql, stream)
        return _export_dir(rows[0][0]) if rows else None

    def export_dirs(self) -> dict[str, str]:
        """Every session's export dir as last given, by session id. Ordered as the partial
        index is: SQLite scans it (not the whole table) only for that order."""
        rows = self._query(
            f"SELECT stream, data FROM events WHERE {_EXPORT_DIR_EVENTS} ORDER BY stream, seq"  # noqa: S608 - a constant
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

    def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self.save_checkpoints([checkpoint])

    def save_checkpoints(self, checkpoints: Sequence[Checkpoint]) -> None:
        raise NotImplementedError


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


class SQLiteJournal(JournalReads):
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
        self.durability = durability
        self.read_only = read_only
        self._clock = clock
        self._busy_retry = busy_retry or RetryPolicy(retries=5)
        # Short waits, more attempts: a flaky read is usually gone the next instant, and
        # SQLite keeps the pages it did read, so each attempt gets further.
        self._read_retry = read_retry or RetryPolicy(retries=8, base_s=0.01, cap_s=0.2)
        self._lock = threading.RLock()
        self._recording = False
        self._id: str | None = None
        self._meta_base = {"host": socket.gethostname(), "user": _user(), "tool": tool}
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

    @property
    def latest_schema_version(self) -> int:
        return schema.latest_version(self.backend)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
                **classify(exc).fields(),
            )])
        except Exception as record_exc:  # noqa: BLE001 - never mask what was recorded
            log.warning("error_not_recorded", error=str(record_exc))
        finally:
            self._recording = False

    # --- append -----------------------------------------------------------------------

    def append(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        stream: str,
        events: Sequence[Event] | StagedEvents,
        *,
        expected_version: int | None = None,
        event_ids: Sequence[str | None] | None = None,
        correlation_id: str | None = None,
        extra_meta: Mapping[str, Any] | None = None,
        check: Callable[[int, list[StoredEvent], Sequence[Event]], None] | None = None,
        decide: Callable[[], Sequence[Event]] | None = None,
        revalidate: Callable[[int], None] | None = None,
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

        `events` may be StagedEvents (serialized and validated beforehand, outside the
        lock, against the stream at `events.validated_version`): then the transaction
        holds only the version check, `revalidate(head)` when the stream has moved since
        (appends to other streams cannot change its validity), and the insert, whose rows
        come from a generator; `progress(done, count)` counts rows.
        """
        if isinstance(events, StagedEvents):
            return self._append_staged(events, expected_version=expected_version,
                                       correlation_id=correlation_id, revalidate=revalidate,
                                       progress=progress, extra_meta=extra_meta)
        if decide is None and not events:
            raise InvalidInputError(f"nothing to append to session {stream!r}")
        ids, given = checked_event_ids(event_ids, len(events))
        twice = 2 * len(events)
        payloads = _payloads(events if progress is None else reporting(events, progress, twice))
        meta = self._meta(correlation_id, extra_meta)
        meta_json = orjson.dumps(meta).decode()

        def attempt() -> AppendResult:
            with self._write() as conn:
                if given:
                    original = self._existing(conn, stream, given, payloads)
                    if original is not None:
                        return original
                version, head, prev_link = conn.execute(_HEAD_AND_LINK, (stream,)).fetchone()
                _check_version(stream, version, expected_version)
                chosen, chosen_payloads = events, payloads
                if decide is not None:
                    chosen = list(decide())
                    if not chosen:
                        return AppendResult(stream, head + 1, head, version, 0)
                    chosen_payloads = _payloads(chosen)
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
                        _CURRENT_SCHEMA[event_type],
                    )
                    for offset, (event_type, data) in enumerate(chosen_payloads, start=1)
                ]
                rows = self._chained(rows, head, prev_link)
                if check is not None:
                    pending = [
                        StoredEvent(head + i, stream, row[1], row[2], orjson.loads(row[3]),
                                    meta, recorded_at, row[6], row[7])
                        for i, row in enumerate(rows, start=1)
                    ]
                    check(head, pending, chosen)
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

    def _journal_id(self) -> str:
        if self._id is None:
            self._id = self.identity()[0]
        return self._id

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

    def _append_staged(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        staged: StagedEvents,
        *,
        expected_version: int | None,
        correlation_id: str | None,
        revalidate: Callable[[int], None] | None,
        progress: Progress | None,
        extra_meta: Mapping[str, Any] | None = None,
    ) -> AppendResult:
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
                _check_version(stream, version, expected_version)
                if revalidate is not None and version != staged.validated_version:
                    revalidate(head)  # the session moved on since: validate again, under the lock
                recorded_at = format_time(self._clock())
                schema_of = _CURRENT_SCHEMA
                rows = self._chained_rows((
                    (stream, version + offset, event_type, data, meta_json, recorded_at,
                     event_id, schema_of[event_type])
                    for offset, (event_type, data, event_id, _) in enumerate(staged, start=1)
                ), head, prev_link)
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
        payloads: Sequence[tuple[str, bytes]],
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

    def now(self) -> str:
        return format_time(self._clock())

    # --- inspection (sqlite-utils on the same connection) -----------------------------

    def integrity_check(self) -> list[str]:
        rows = self._read(lambda: self._conn.execute("PRAGMA integrity_check").fetchall())
        return [row[0] for row in rows if row[0] != "ok"]

    def table_counts(self) -> dict[str, int]:
        import sqlite_utils  # noqa: PLC0415 - inspection only; keeps the append path lean

        with self._lock:
            db = sqlite_utils.Database(self._conn)
            return {name: db[name].count for name in db.table_names()}


def _export_dir(data: str | bytes | dict[str, Any]) -> str:
    # SQLite returns the json column as text; psycopg decodes it unless cast to text.
    return str((data if isinstance(data, dict) else orjson.loads(data))["export_dir"])


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
    return [(event.type, orjson.dumps(event.model_dump(mode="json"))) for event in events]


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


_CHECKPOINTS_SINCE = 2  # the schema block that adds the checkpoints table
_CHAIN_SINCE = 4  # ... the hash chain, checkpoints' event ids and the export digests
_STATES_SINCE = 5  # ... checkpoint states apart from positions
_DAMAGE_CHECKS = 8
_UNREAD_PAGE = "failed to get page"
_UNREAD_PAGE_TOO = "unable to get the page"


def check_findings(rows: Iterable[tuple[Any, ...]]) -> list[str]:
    """The lines of an integrity_check or quick_check result that report something."""
    return [line for (row, *_) in rows for line in str(row).splitlines()
            if line not in ("ok", "*** in database main ***")]


def read_failed_during_check(findings: Sequence[str]) -> bool:
    """Whether the check could not read some pages ("failed to get page 35", "unable to
    get the page. error code=266"): then its other findings (pages "never used") follow
    from that, and say nothing about the file."""
    return any(_UNREAD_PAGE in line or _UNREAD_PAGE_TOO in line for line in findings)


def outdated_note(found: int) -> str:
    """What a read-only command says of a journal with an older schema it leaves as is."""
    return f"schema {found}, run any write command or `evstore doctor --fix` to migrate"


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: the journal was busy, or a read failed in a way that may pass."""
    return isinstance(exc, (JournalBusyError, JournalReadError))


def _damaged(path: Path, damage: list[str]) -> str:
    more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
    return (f"journal {path} is damaged: its integrity check fails ({damage[0]}{more}): "
            "restore it from a backup")


def _on_read_only_fs(directory: Path) -> str:
    return " (read-only file system)" if on_read_only_file_system(directory) else ""
