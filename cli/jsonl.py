"""`append --jsonl`: one event per line, validated before anything is appended."""

from __future__ import annotations

from typing import Any

import orjson

from eventstore.errors import InvalidInputError
from eventstore.events import (
    BacklogImported,
    Event,
    ItemUpdated,
    SessionCreated,
    parse_event,
    validate_status,
)
from eventstore.jsonerrors import json_problem
from eventstore.progress import Progress, reporting

# Keys of `evstore log --json` lines that describe where an event was, not what it is.
_ENVELOPE = ("seq", "stream", "version", "meta", "recorded_at", "schema_version")


def read_jsonl(
    data: bytes, *, source: str, progress: Progress | None = None
) -> tuple[list[Event], list[str | None]]:
    """The events and ids of every line; `progress(lines read, lines)` every thousand."""
    events: list[Event] = []
    ids: list[str | None] = []
    lines = data.splitlines()
    numbered = enumerate(lines if progress is None else reporting(lines, progress, len(lines)),
                         start=1)
    for number, raw in numbered:
        if not raw.strip():
            continue
        where = f"{source}:{number}"
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
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
            raise InvalidInputError(f"{where}: SessionCreated is not accepted here: create sessions with `evstore import`")
        if isinstance(event, BacklogImported):
            # A whole document replaces the session's backlog: `evstore import` checks it
            # against the schema, names what it changes and keeps the history readable.
            raise InvalidInputError(f"{where}: BacklogImported is not accepted here: import a "
                                    "backlog with `evstore import FILE --session S`")
        if isinstance(event, ItemUpdated) and "status" in event.changes:
            _checked_status(event.changes["status"], where)
        events.append(event)
        ids.append(event_id)
    if not events:
        raise InvalidInputError(f"{source}: no events (only blank lines)")
    return events, ids


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
