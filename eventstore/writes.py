"""What both journal backends write, and how, written once (docs/design.md §3): the
preparation of an append (event ids one per event, unique and without NUL; a retried id
is a duplicate only with the same events; the events serialized, and the data a check
inside the append reads) and the SQL of checkpoint and lookup writes, in SQLite's `?`
style (PostgreSQL's backend swaps the placeholder). Only the backends import this module.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Any

import orjson

from eventstore.errors import ConcurrencyError, InvalidInputError
from eventstore.persistence import MARK_KEY
from eventstore.records import AppendResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from eventstore.events import Event
    from eventstore.records import Checkpoint, LookupWrite


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
    " ON CONFLICT (stream, key, projection) DO UPDATE SET entry = excluded.entry"
)
_UNMARK = "DELETE FROM lookups WHERE stream = ? AND key = ?"


def lookup_statements(
    stream: str, writes: Sequence[LookupWrite] | None
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """(SQL in SQLite's `?` style, its parameter rows) that make `writes` in an append to
    `stream`, in order, and take the mark off every projection's entries the append did
    not keep (all of them for an append without a check: `writes` None). A status update
    that changes no entry costs one statement that changes nothing, hence writes no page."""
    statements: list[tuple[str, list[tuple[Any, ...]]]] = []
    dumps = orjson.dumps
    kept = []
    for write in writes or ():
        where = (write.projection, write.stream)
        if write.drop:
            statements.append((_DROP_LOOKUPS, [where]))
            continue
        kept.append(write.projection)
        if write.replace:
            statements.append((_DROP_LOOKUPS, [where]))
        deletes = [(*where, key) for key, entry in write.changes.items() if entry is None]
        if deletes and not write.replace:
            statements.append((_DELETE_LOOKUP, deletes))
        upserts = [(*where, key, dumps(entry).decode())
                   for key, entry in write.changes.items() if entry is not None]
        if write.replace:
            upserts.append((*where, MARK_KEY, "1"))
        if upserts:
            statements.append((_SAVE_LOOKUP, upserts))
    # Every other projection's entries are behind now: unmarked, they are rebuilt on use.
    unmark = _UNMARK
    params: tuple[Any, ...] = (stream, MARK_KEY)
    if kept:
        unmark += f" AND projection NOT IN ({','.join('?' * len(kept))})"
        params += tuple(kept)
    statements.append((unmark, [params]))
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
