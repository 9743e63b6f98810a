"""`evstore import`: read a file, decide what it is, append what it changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli.progress import NullBar
from eventstore.errors import InvalidInputError
from eventstore.events import SessionCreated
from eventstore.store import Store
from projections.imports import (
    diff_backlogs,
    import_event,
    parse_backlog,
    read_recovery_file,
)


def import_file(
    store: Store, path: Path, session: str, export_dir: str | None, *, bar: NullBar | None = None
) -> dict[str, Any]:
    """Import `path` into `session`; `bar` (a progress bar) is told each step."""
    bar = bar or NullBar()
    bar.stage(f"reading {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    source = str(path)
    bar.stage(f"parsing {path}")
    recovery = read_recovery_file(data, source=source)
    if recovery is not None:
        parsed, session_path = recovery
        default_dir = path.parent
        if session_path and export_dir is None and not store.has_session(session):
            default_dir = store.confined(session_path, source=f"sessionPath in {path}")
    else:
        parsed = parse_backlog(data, source=source)
        default_dir = path.parent
    warnings = [
        f"{source}: item {item_id} has status {status!r}, outside the vocabulary; kept as is"
        for item_id, status in parsed.unknown_statuses.items()
    ]
    seed = import_event(parsed, source=source)

    if store.has_session(session):
        bar.stage(f"comparing {path} with session {session}")
        version = store.journal.stream_version(session)
        current = store.state(session, "tasks").doc
        if recovery is not None:
            # A recovery file was written against an older state: apply what it changed,
            # never undo what the journal recorded since (as `doctor --fix` does).
            from projections.doctor import read_legacy, recovery_events  # noqa: PLC0415

            legacy = read_legacy(data, source=source)
            written_at = legacy[1] if legacy else None
            pending = recovery_events(store, session, parsed, written_at, current, source=source)
            events = pending.events
            if pending.superseded:
                warnings.append(f"{source}: {pending.superseded} difference(s) left as the journal "
                                "has them: it recorded newer updates since the file was written")
        else:
            events = [seed] if current is None else diff_backlogs(current, parsed.doc, fallback=seed)
        if export_dir is not None:
            warnings.append(f"--export-dir ignored: session {session} already exports to "
                            f"{store.export_dir(session)}")
        if not events:
            return _outcome(store, session, None, 0, warnings)
        bar.stage(f"appending {len(events):,} event(s) to session {session}")
        result = store.append(session, events, expected_version=version, progress=bar.callback)
    else:
        created = SessionCreated(export_dir=store.normalize_export_dir(export_dir or default_dir))
        bar.stage(f"appending {path} to new session {session}")
        result = store.append(session, [created, seed], expected_version=0, progress=bar.callback)
    return _outcome(store, session, result, result.count, warnings)


def import_batch_progress(store: Store, path: Path, session: str, export_dir: str | None) -> dict[str, Any]:
    """A legacy batch-progress.json as the session's unfinished batch (a new session
    exports beside the file, as the orchestrator expects to find it)."""
    import orjson  # noqa: PLC0415

    from eventstore.jsonerrors import json_problem  # noqa: PLC0415
    from eventstore.jsonfmt import loads  # noqa: PLC0415
    from eventstore.owner import is_alive, start_ticks, this_host  # noqa: PLC0415
    from projections.batch_runs import legacy_events  # noqa: PLC0415

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        progress = loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: {json_problem(exc, data)}") from None
    pid = progress.get("pid") if isinstance(progress, dict) else None
    alive = isinstance(pid, int) and not isinstance(pid, bool) and is_alive(pid)
    pid_start = (start_ticks(pid) if alive else -1) if isinstance(pid, int) else None
    events = legacy_events(progress, source=str(path), host=this_host(), pid_start=pid_start)
    if store.has_session(session):
        result = store.append(session, events, expected_version=store.journal.stream_version(session))
    else:
        created = SessionCreated(export_dir=store.normalize_export_dir(export_dir or path.parent))
        result = store.append(session, [created, *events], expected_version=0)
    return _outcome(store, session, result, result.count, [])


def _outcome(store: Store, session: str, result: Any, count: int, warnings: list[str]) -> dict[str, Any]:
    return {
        "session": session,
        "events": count,
        "first_seq": result.first_seq if result else None,
        "last_seq": result.last_seq if result else None,
        "version": result.last_version if result else store.journal.stream_version(session),
        "export_dir": str(store.export_dir(session)),
        "warnings": warnings,
    }
