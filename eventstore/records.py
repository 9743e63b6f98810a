"""What a journal stores and hands back (docs/design.md §3): the records both backends
share (`StoredEvent`, `AppendResult`, `Checkpoint`, `StreamInfo`, `Lookup`, `LookupWrite`),
event rows decoded into them (upcast to the current schema), and the journal's clock and
event ids. No I/O: the interface that reads and writes them is `eventstore.persistence`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from eventstore.events import EVENT_TYPES, Event, parse_event, upcast

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

CURRENT_SCHEMA = {name: cls.schema_version for name, cls in EVENT_TYPES.items()}
_NO_META: dict[str, Any] = {}


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
    exported_stat: str | None = None  # the exported file's size:mtime_ns:inode:ctime_ns

    @property
    def state_at(self) -> int:
        return self.seq if self.state_seq is None else self.state_seq


@dataclass(frozen=True)
class Lookup:
    """A projection's lookup entries of one stream (see Journal.lookup): whether they are
    `current` (every append since they were built kept them), and of the keys asked for,
    those that exist."""

    current: bool
    entries: dict[str, Any]


@dataclass(frozen=True)
class LookupWrite:
    """How an append keeps a projection's lookup entries of its stream, written in the
    append's transaction: each key's new entry (None deletes it; keys are never empty), all
    others dropped first when `replace` (a rebuild, which also marks them current). No
    changes is a write too: it says the append kept them (a status update changes none).
    `drop` removes them all, so the next append rebuilds them."""

    projection: str
    stream: str
    changes: Mapping[str, Any]
    replace: bool = False
    drop: bool = False


@dataclass(frozen=True)
class JournalFile:
    """What lies at a journal file's path, read without writing anything (`evstore doctor`
    judges a journal before opening it, which could migrate it): `defect` when it is no
    database at all (empty, a FIFO, another format), else its schema version, what its
    integrity check finds, and whether it is another application's database."""

    defect: str | None
    version: int | None
    failures: list[str]
    foreign: bool


@dataclass(frozen=True)
class StreamInfo:
    stream: str
    events: int
    version: int
    last_seq: int
    last_recorded_at: str


def export_dir_of_data(data: str | bytes | dict[str, Any]) -> str:
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
