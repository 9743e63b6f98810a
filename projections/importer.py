"""Importing a file into a session (`evstore import`): read it, decide what it is, append
what it changes.

A tasks.json seeds a new session whole, and into an existing session brings only its
differences. A legacy tasks.json.failed brings the updates the journal has not superseded
since it was written. A legacy batch-progress.json becomes the session's unfinished batch.

    outcome = import_file(store, Path("plan/001/tasks.json"), "001")
    outcome.events, outcome.first_seq, outcome.warnings
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventstore.errors import ConcurrencyError, InvalidInputError
from eventstore.events import BacklogImported, Event, SessionCreated
from projections.backlog_schema import backlog_problems
from projections.imports import (
    ParsedBacklog,
    backlog_of,
    diff_backlogs,
    import_event,
    parse_json,
    recovery_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from pathlib import Path

    from eventstore.progress import Progress
    from eventstore.records import AppendResult
    from eventstore.store import Store


@dataclass(frozen=True)
class ImportOutcome:
    """What an import appended (`events` 0: the file changed nothing) and where the session
    stands after it; `warnings` name what was kept as is or left as the journal has it."""

    session: str
    events: int
    first_seq: int | None  # None when nothing was appended
    last_seq: int | None
    version: int
    export_dir: Path
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """What `evstore import --json` prints."""
        return {
            "session": self.session,
            "events": self.events,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "version": self.version,
            "export_dir": str(self.export_dir),
            "warnings": list(self.warnings),
        }


def _no_stage(_description: str) -> None:
    """A caller that shows no steps."""


def import_file(  # noqa: C901, PLR0913, PLR0915 - the file, where it goes, and how
    store: Store,
    path: Path,
    session: str,
    export_dir: str | None = None,
    *,
    strict: bool = False,
    progress: Progress | None = None,
    stage: Callable[[str], None] | None = None,
) -> ImportOutcome:
    """Import `path` into `session`. A new session exports to `export_dir` (default: the
    file's directory). With `strict`, a file that breaks the pipeline's backlog schema is
    refused (InvalidInputError). `stage(description)` is told each step of the work and
    `progress` follows the append (eventstore.progress); neither is needed."""
    stage = stage or _no_stage
    stage(f"reading {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    source = str(path)
    stage(f"parsing {path}")
    doc = parse_json(data, source=source)  # once: a big backlog takes a while to parse
    recovery = recovery_of(doc, source=source)
    if recovery is not None:
        parsed, session_path = recovery
        default_dir = path.parent
        if session_path and export_dir is None and not store.has_session(session):
            default_dir = store.confined(session_path, source=f"sessionPath in {path}")
    else:
        parsed = backlog_of(doc, data, source=source)
        default_dir = path.parent
    if strict:
        _refuse_schema_problems(parsed, source)
    warnings = [
        f"{source}: item {item_id} has status {status!r}, outside the vocabulary; kept as is"
        for item_id, status in parsed.unknown_statuses.items()
    ]
    # A real file is a record of what the pipeline held: kept, with each problem named.
    warnings += [f"{source}: {problem}; kept as is"
                 for problem in backlog_problems(parsed.doc, statuses=False)]
    seed = import_event(parsed, source=source)

    if export_dir is not None and store.has_session(session):
        warnings.append(f"--export-dir ignored: session {session} already exports to "
                        f"{store.export_dir(session)}")
    legacy_written_at = None
    if recovery is not None:
        from projections.legacy import read_legacy  # noqa: PLC0415

        legacy = read_legacy(data, source=source)
        legacy_written_at = legacy[1] if legacy else None
    created = SessionCreated(export_dir=store.normalize_export_dir(export_dir or default_dir))
    decided: dict[str, Any] = {"version": None}

    def decide() -> tuple[list[Event], int]:
        """The events this file means against the session as it is now (cached per
        version: nothing to redo when no other append came in between)."""
        version = store.journal.stream_version(session)
        if decided["version"] != version:
            decided["version"] = version
            decided["events"], decided["superseded"], decided["notes"] = _events_for(
                store, session, created, seed, parsed, recovery is not None,
                legacy_written_at, source=source,
            )
        return decided["events"], decided["superseded"]

    if store.has_session(session):
        stage(f"comparing {path} with session {session}")
        events, superseded = decide()
        if not events:
            warnings += decided["notes"]
            return _outcome(store, session, None, 0, _superseded(warnings, superseded, source))
        stage(f"appending {len(events):,} event(s) to session {session}")
    else:
        stage(f"appending {path} to new session {session}")
        events, superseded = decide()
    appended: AppendResult | None
    try:
        appended = store.append(session, events, expected_version=decided["version"],
                                progress=progress)
    except ConcurrencyError:
        # Another writer appended since the comparison. The import asked for no version,
        # so this is not a conflict: compare again inside the write transaction, where
        # nothing can move (a steady stream of appends cannot starve it either).
        superseded, appended = store.append_decided(session, decide)
    warnings = _superseded([*warnings, *decided["notes"]], superseded, source)
    if appended is None:
        return _outcome(store, session, None, 0, warnings)
    return _outcome(store, session, appended, appended.count, warnings)


def import_batch_progress(
    store: Store, path: Path, session: str, export_dir: str | None = None
) -> ImportOutcome:
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
        result = store.append(
            session, events, expected_version=store.journal.stream_version(session)
        )
    else:
        created = SessionCreated(export_dir=store.normalize_export_dir(export_dir or path.parent))
        result = store.append(session, [created, *events], expected_version=0)
    return _outcome(store, session, result, result.count, [])


def _refuse_schema_problems(parsed: ParsedBacklog, source: str) -> None:
    problems = backlog_problems(parsed.doc)
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise InvalidInputError(
            f"{source} breaks the pipeline's backlog schema ({len(problems)} problem(s): "
            f"{shown}): fix the file, or import it without --strict to keep it as it is"
        )


def _superseded(warnings: list[str], superseded: int, source: str) -> list[str]:
    if not superseded:
        return warnings
    return [*warnings, (f"{source}: {superseded} difference(s) left as the journal has them: "
                        "it recorded newer updates since the file was written")]


def _events_for(  # noqa: PLR0913, PLR0917 - the file as parsed, and the session it meets
    store: Store,
    session: str,
    created: SessionCreated,
    seed: BacklogImported,
    parsed: ParsedBacklog,
    is_recovery: bool,  # noqa: FBT001
    written_at: datetime | None,
    *,
    source: str,
) -> tuple[list[Event], int, list[str]]:
    """(events, differences superseded by newer journal updates, warnings) for the
    session's state."""
    if not store.has_session(session):
        return [created, seed], 0, []
    current = store.state(session, "tasks").doc
    if is_recovery:
        # A recovery file was written against an older state: apply what it changed,
        # never undo what the journal recorded since (as `doctor --fix` does).
        from projections.legacy import recovery_events  # noqa: PLC0415

        pending = recovery_events(store, session, parsed, written_at, current, source=source)
        notes = [f"{source}: {pending.clock_skew}"] if pending.clock_skew else []
        return list(pending.events), pending.superseded, notes
    if current is None:
        return [seed], 0, []
    events = diff_backlogs(current, parsed.doc, fallback=seed)
    if events == [seed]:
        return events, 0, [(
            f"{source}: items moved, changed level or reused ids, so the changes cannot be "
            "told item by item: imported as a whole new snapshot (evstore history shows "
            "no per-item steps for this import)"
        )]
    return events, 0, []


def _outcome(
    store: Store, session: str, result: AppendResult | None, count: int, warnings: list[str]
) -> ImportOutcome:
    return ImportOutcome(
        session=session,
        events=count,
        first_seq=result.first_seq if result else None,
        last_seq=result.last_seq if result else None,
        version=result.last_version if result else store.journal.stream_version(session),
        export_dir=store.export_dir(session),
        warnings=tuple(warnings),
    )
