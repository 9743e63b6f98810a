"""Events written one JSON object per line (what `evstore append --jsonl` reads): each line
parsed and validated before anything is appended, read as a stream so that memory does not
grow with the number of lines.

A line is an event with a "type" (fields at the top level, or under "data" as
`evstore log --json` prints them), or the shorthand {"item_id": ..., "status": ...}; an
optional "event_id" is the event's idempotency key. Events that create, seed or move a
session are refused: they have commands of their own."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

import orjson

from eventstore.errors import InvalidInputError
from eventstore.events import (
    BacklogImported,
    Event,
    ItemUpdated,
    SessionCreated,
    SessionMoved,
    parse_event,
    validate_status,
)
from eventstore.jsonerrors import json_problem
from eventstore.progress import Progress, reporting

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from eventstore.records import AppendResult
    from eventstore.store import Store

# Keys of `evstore log --json` lines that describe where an event was, not what it is.
_ENVELOPE = ("seq", "stream", "version", "meta", "recorded_at", "schema_version")


def read_jsonl(
    data: bytes, *, source: str, progress: Progress | None = None
) -> tuple[list[Event], list[str | None]]:
    """The events and ids of every line; `progress(lines read, lines)` every thousand."""
    lines = data.splitlines()
    numbered = lines if progress is None else reporting(lines, progress, len(lines))
    events: list[Event] = []
    ids: list[str | None] = []
    for event, event_id in iter_jsonl(numbered, source=source):
        events.append(event)
        ids.append(event_id)
    return events, ids


def iter_jsonl(lines: Iterable[bytes], *, source: str) -> Iterator[tuple[Event, str | None]]:
    """(event, event id or None) of each line as it is read: one line in memory at a time.
    Raises InvalidInputError naming the first bad line, or when there was no event."""
    found = False
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            found = True
            yield _line(raw, f"{source}:{number}")
    if not found:
        raise InvalidInputError(f"{source}: no events (only blank lines)")


def append_jsonl(  # noqa: PLR0913 - keyword-only knobs of one append
    store: Store,
    session: str,
    lines: Iterable[bytes],
    *,
    source: str,
    expected_version: int | None = None,
    lines_total: int | None = None,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
) -> tuple[AppendResult, int]:
    """Append the events of `lines` to `session` in one transaction, all or nothing:
    (the append's result, the number of events). The lines are parsed and validated
    without the write lock, one in memory at a time (Store.stage), then inserted under it.

    `progress(done, total)` follows the lines read (out of `lines_total`, when the caller
    could count them: count_lines) and then the rows inserted; `stage(description)` is
    told when the second step begins."""
    parsing = None if progress is None else _out_of(progress, lines_total)
    with store.stage(session, iter_jsonl(lines, source=source), progress=parsing) as staged:
        if stage is not None:
            stage(f"appending {staged.count:,} event(s) to {session}")
        result = store.append_staged(staged, expected_version=expected_version, progress=progress)
    return result, staged.count


def _out_of(progress: Progress, total: int | None) -> Progress:
    """`progress` with the total the library cannot know while it reads (the lines)."""

    def report(done: int, _unknown: int | None) -> None:
        progress(done, total)

    return report


def count_lines(handle: IO[bytes]) -> int | None:
    """How many lines a seekable file has, counted in blocks (a second or so for a
    gigabyte) and rewound; None for a pipe, whose lines cannot be read twice."""
    try:
        start = handle.tell()
        if not handle.seekable():
            return None
    except (OSError, ValueError):
        return None
    lines, last = 0, b"\n"
    while block := handle.read(1 << 20):
        lines += block.count(b"\n")
        last = block[-1:]
    handle.seek(start)
    return lines + (last != b"\n")


def _line(raw: bytes, where: str) -> tuple[Event, str | None]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("Not enough memory"):
            # orjson reports a failed allocation as a decode error: it is not bad input.
            raise MemoryError(f"reading {where}") from None
        raise InvalidInputError(f"{where}: {json_problem(exc, raw)}") from None
    if not isinstance(obj, dict):
        raise InvalidInputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    event_id = obj.pop("event_id", None)
    if event_id is not None and not isinstance(event_id, str):
        raise InvalidInputError(f"{where}: event_id must be a string")
    event = parse_event(_payload(obj, where), where=where)
    if isinstance(event, SessionCreated):
        # A line of data must not choose where files get written: sessions (and
        # their export directories) are created by `evstore import`.
        raise InvalidInputError(
            f"{where}: SessionCreated is not accepted here: create sessions with `evstore import`"
        )
    if isinstance(event, BacklogImported):
        # A whole document replaces the session's backlog: `evstore import` checks it
        # against the schema, names what it changes and keeps the history readable.
        raise InvalidInputError(f"{where}: BacklogImported is not accepted here: import a "
                                "backlog with `evstore import FILE --session S`")
    if isinstance(event, SessionMoved):
        raise InvalidInputError(
            f"{where}: SessionMoved is not accepted here: move sessions with `evstore session move`"
        )
    if isinstance(event, ItemUpdated) and "status" in event.changes:
        _checked_status(event.changes["status"], where)
    return event, event_id


def _payload(obj: dict[str, Any], where: str) -> dict[str, Any]:
    if "type" in obj:
        if isinstance(obj.get("data"), dict):
            return {"type": obj["type"], **obj["data"]}
        return {k: v for k, v in obj.items() if k not in _ENVELOPE}
    if "item_id" in obj and "status" in obj:
        _checked_status(obj["status"], where)
        return {"type": "ItemStatusChanged", **obj}
    raise InvalidInputError(
        f'{where}: needs a "type", or "item_id" and "status" for a status change'
    )


def _checked_status(status: Any, where: str) -> None:
    try:
        validate_status(status)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None
