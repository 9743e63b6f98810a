"""`evstore doctor`: what is wrong with a journal and its files, and the repairs that lose
nothing (docs/design.md §10).

    from projections.doctor import Doctor
    report = Doctor(".evstore/journal.db").check()      # reads only
    report = Doctor(".evstore/journal.db").fix()        # repairs what it can, then re-checks
    report.healthy, [p.code for p in report.problems]

Checks write nothing. A fix never destroys information: it migrates the journal, appends
events, re-exports files from the journal, or moves files aside (into lost+found, or next
to the file as `<name>.drift-<UTC time>`). It never deletes a file the user may want:
the only bytes replaced are projections the journal can render again.

Every time-dependent decision (a temp file older than a minute, a batch older than 24 h,
the drift copy's name) reads the injectable `clock`; owner liveness is the injectable
`alive`, so tests set file times and journal times instead of sleeping.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson

from eventstore import schema
from eventstore.atomic import drift_name, keep_copy, move_aside
from eventstore.chain import first_break
from eventstore.errors import (
    EvstoreError,
    InvalidInputError,
    JournalCorruptError,
    JournalError,
    JournalNotFoundError,
    JournalSchemaError,
)
from eventstore.events import (
    BacklogImported,
    BatchAbandoned,
    Event,
    ItemAdded,
    ItemRemoved,
    ItemStatusChanged,
    ItemUpdated,
)
from eventstore.journal import (
    Durability,
    SQLiteJournal,
    check_findings,
    read_failed_during_check,
    translate,
    utc_now,
)
from eventstore.journal_file import journal_file_defect, open_read_only
from eventstore.locate import STATE_DIR, find_project_root, is_url, redact_url
from eventstore.logs import get_logger
from eventstore.owner import is_alive, this_host
from eventstore.paths import refuse_protected, resolved
from eventstore.progress import span
from eventstore.runner import ERRORS_STREAM, LOCK_NAME, resume_point, sha256
from eventstore.store import Store
from projections import DEFAULT
from projections.backlog import BacklogState, TasksProjection
from projections.backlog_schema import backlog_problems
from projections.batch import Batch, BatchProgressProjection, BatchState
from projections.batch_runs import STALE_AFTER, parse_time
from projections.imports import ParsedBacklog, diff_backlogs, import_event, read_recovery_file

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from eventstore.journal import Checkpoint, StreamInfo
    from eventstore.progress import Progress
    from eventstore.projection import Projection

log = get_logger("evstore.doctor")
_T = TypeVar("_T")

JOURNAL_CORRUPT = "JOURNAL_CORRUPT"
JOURNAL_SCHEMA_OUTDATED = "JOURNAL_SCHEMA_OUTDATED"
PROJECTION_STALE = "PROJECTION_STALE"
PROJECTION_MISSING = "PROJECTION_MISSING"
PROJECTION_DRIFT = "PROJECTION_DRIFT"
BATCH_PROGRESS_CORRUPT = "BATCH_PROGRESS_CORRUPT"
STALE_BATCH_PROGRESS = "STALE_BATCH_PROGRESS"
ORPHAN_TEMP_FILE = "ORPHAN_TEMP_FILE"
LEGACY_RECOVERY_FILE = "LEGACY_RECOVERY_FILE"
BACKLOG_DEPENDENCY = "BACKLOG_DEPENDENCY"
JOURNAL_CHAIN_BROKEN = "JOURNAL_CHAIN_BROKEN"
EXPORT_DIR_SHARED = "EXPORT_DIR_SHARED"
BACKLOG_INVALID = "BACKLOG_INVALID"
CODES = (
    JOURNAL_CORRUPT, JOURNAL_SCHEMA_OUTDATED, PROJECTION_STALE, PROJECTION_MISSING,
    PROJECTION_DRIFT, BATCH_PROGRESS_CORRUPT, STALE_BATCH_PROGRESS, ORPHAN_TEMP_FILE,
    LEGACY_RECOVERY_FILE, BACKLOG_DEPENDENCY, JOURNAL_CHAIN_BROKEN, EXPORT_DIR_SHARED,
    BACKLOG_INVALID,
)
_LOST_EVENTS = ("stop every evstore process, set this journal aside and restore the one "
                "holding the lost events (a backup, or the -wal file that was removed); the "
                "files exported from them are kept as .drift- copies that `evstore import` "
                "can bring back")

ORPHAN_AGE = timedelta(minutes=1)
TEMP_FILE = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{16}\.tmp$")  # eventstore.atomic.temp_name
LEGACY_FILE = "tasks.json.failed"
LOST_AND_FOUND = "lost+found"
STALE_REASON = "doctor: stale"
_UNTRUSTED = "every other check: the journal cannot be trusted"
# Problems whose repair ends with an export of their session.
_EXPORTED = frozenset({PROJECTION_STALE, PROJECTION_MISSING, PROJECTION_DRIFT,
                       BATCH_PROGRESS_CORRUPT, STALE_BATCH_PROGRESS, LEGACY_RECOVERY_FILE})
# Problems whose repair moves or copies a file in an export directory (under its lock).
_MOVED = frozenset({ORPHAN_TEMP_FILE, BATCH_PROGRESS_CORRUPT, PROJECTION_DRIFT,
                    LEGACY_RECOVERY_FILE})


@dataclass
class Problem:
    """One finding. `remedy` is what `fix()` does when `fixable`, else what to do by hand;
    after `fix()`, `outcome` says what was done and `error` why it could not be."""

    code: str
    message: str
    fixable: bool
    remedy: str
    path: Path | None = None
    session: str | None = None
    fixed: bool = False
    outcome: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return self.code, self.session, str(self.path) if self.path is not None else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path is not None:
            out["path"] = str(self.path)
        if self.session is not None:
            out["session"] = self.session
        out |= {"fixable": self.fixable, "fixed": self.fixed, "remedy": self.remedy}
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class Report:
    """What `check()` found, or what `fix()` found, did and left. `remaining` is what a
    check after the repairs still finds (for `check()`, every problem)."""

    journal: Path
    root: Path
    fix: bool
    schema_version: int | None
    latest_schema_version: int
    sessions: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    remaining: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.remaining

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "fix": self.fix,
            "journal": str(self.journal),
            "schema_version": self.schema_version,
            "latest_schema_version": self.latest_schema_version,
            "sessions": list(self.sessions),
            "problems": [p.as_dict() for p in self.problems],
            "found": len(self.problems),
            "fixed": sum(p.fixed for p in self.problems),
            "remaining": len(self.remaining),
            "skipped": list(self.skipped),
        }

    def show(self, path: Path) -> str:
        """`path` relative to the project root when inside it (for people)."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)


class Doctor:
    """Checks one journal and the files of all its sessions; `fix()` repairs them."""

    def __init__(  # noqa: PLR0913 - every seam is keyword-only with a default
        self,
        db: str | os.PathLike[str],
        *,
        projections: Sequence[Projection] = DEFAULT,
        clock: Callable[[], datetime] = utc_now,
        alive: Callable[[int, int | None], bool] = is_alive,
        host: str | None = None,
        orphan_age: timedelta = ORPHAN_AGE,
        stale_after: timedelta = STALE_AFTER,
        durability: Durability = "full",
        tool: str = "evstore-doctor",
        lock_timeout_s: float = 10.0,
        progress: Progress | None = None,
    ) -> None:
        # A PostgreSQL URL: the journal checks are the server journal's own integrity
        # check; the file checks are the same, on this machine's export directories.
        self.url = str(db) if is_url(db) else None
        self.db = Path(redact_url(str(db))) if self.url else Path(db)
        self.projections = tuple(projections)
        self._clock = clock
        self._alive = alive
        self._host = host or this_host()
        self._orphan_age = orphan_age
        self._stale_after = stale_after
        self._durability = durability
        self._tool = tool
        self._lock_timeout_s = lock_timeout_s
        # progress(done, total): None while the journal's integrity is checked, then the
        # events of every session checked (three times over with fix(): check, repair,
        # check again).
        self._progress = progress

    # --- entry points -------------------------------------------------------------------------

    def check(self) -> Report:
        """Find every problem; write nothing."""
        return self._run(fix=False)

    def fix(self) -> Report:
        """Find every problem, repair the fixable ones, and check again."""
        return self._run(fix=True)

    def _run(self, *, fix: bool) -> Report:
        if self._progress is not None:
            self._progress(0, None)
        if self.url is not None:
            return self._run_on_server(fix=fix)
        journal_problems, version = self._inspect_journal()
        report = Report(journal=self.db, root=self._root(), fix=fix, schema_version=version,
                        latest_schema_version=schema.latest_version("sqlite"),
                        problems=list(journal_problems))
        report.remaining = report.problems
        if any(p.code == JOURNAL_CORRUPT for p in journal_problems):
            report.skipped.append(_UNTRUSTED)
            return report
        outdated = next((p for p in journal_problems if p.code == JOURNAL_SCHEMA_OUTDATED), None)
        if outdated is not None and not fix:
            report.skipped.append(
                "projections, batches, temp files and recovery files: checked once the "
                "journal is migrated (run with --fix)"
            )
            return report
        try:
            store = self._open(read_only=not fix)
        except JournalCorruptError as exc:  # an SQLite file, but not an evstore journal
            report.problems = report.remaining = [self._corrupt(str(exc))]
            report.skipped.append(_UNTRUSTED)
            return report
        if outdated is not None:
            try:
                # _open opens the SQLite file at self.db: only that backend migrates here.
                cast("SQLiteJournal", store.journal).migrate()
            except (JournalNotFoundError, JournalSchemaError):
                store.close()
                raise
            except JournalError as exc:
                store.close()
                outdated.error = str(exc)  # the migration itself failed
                return report
        with store:
            if outdated is not None:
                report.schema_version = store.journal.schema_version
                outdated.fixed = True
                outdated.outcome = f"migrated to schema version {report.schema_version}"
                log.info("doctor_fixed", code=outdated.code, outcome=outdated.outcome)
            self._examine(store, report)
        return report

    def _run_on_server(self, *, fix: bool) -> Report:
        """A PostgreSQL journal: opening it migrates an older schema (the server journal
        has no read-only open); its integrity check stands for SQLite's."""
        assert self.url is not None  # noqa: S101 - only called for a URL
        store = Store.open(self.url, projections=self.projections, durability=self._durability,
                           tool=self._tool)
        with store:
            failures = store.journal.integrity_check()
            report = Report(journal=self.db, root=self._root(), fix=fix,
                            schema_version=store.journal.schema_version,
                            latest_schema_version=schema.latest_version("postgresql"),
                            problems=[self._corrupt(f"journal {self.db}: {f}") for f in failures])
            report.remaining = report.problems
            if failures:
                report.skipped.append(_UNTRUSTED)
                return report
            self._examine(store, report)
        return report

    def _examine(self, store: Store, report: Report) -> None:
        """Scan the sessions; when fixing, repair, scan again and settle what is fixed."""
        report.sessions = store.sessions()
        phases = 3 if report.fix else 1
        found = self._scan(store, phase=(0, phases))
        report.problems = [*report.problems, *found]
        if not report.fix:
            report.remaining = report.problems
            return
        if any(p.code == JOURNAL_CHAIN_BROKEN for p in found):
            # Repairs export from the journal: from one known to have lost events they
            # would overwrite files that may hold the only copy of what it lost.
            report.skipped.append("repairs: the journal lost events (JOURNAL_CHAIN_BROKEN): "
                                  "restore it first")
            report.remaining = report.problems
            return
        self._repair(store, found, phase=(1, phases))
        remaining = self._scan(store, phase=(2, phases))
        keys = {p.key for p in remaining}
        for problem in found:
            problem.fixed = problem.fixable and problem.error is None and problem.key not in keys
            if problem.fixed:
                log.info("doctor_fixed", code=problem.code, path=str(problem.path),
                         session=problem.session, outcome=problem.outcome)
        known = {p.key for p in found}
        report.problems += [p for p in remaining if p.key not in known]  # arose meanwhile
        report.remaining = remaining

    # --- the journal ----------------------------------------------------------------------------

    def _root(self) -> Path:
        if self.url is not None:
            return find_project_root(Path.cwd())
        journal = self.db.resolve()
        return journal.parent.parent if journal.parent.name == STATE_DIR else journal.parent

    def lost_and_found(self) -> Path:
        """`<project root>/.evstore/lost+found/`: beside the journal (which, elsewhere than in
        .evstore/, gets a `lost+found/` of its own rather than a new `.evstore/` that would
        change where other commands find their journal)."""
        if self.url is not None:
            return self._root() / STATE_DIR / LOST_AND_FOUND
        return self.db.resolve().parent / LOST_AND_FOUND

    def _inspect_journal(self) -> tuple[list[Problem], int | None]:
        """Header, schema version and integrity, with a plain connection that writes
        nothing (SQLiteJournal would migrate an old journal on open)."""
        path, shown = self.db, self._shown(self.db)
        try:
            info = path.stat()
        except FileNotFoundError:
            raise JournalNotFoundError(
                f"no journal at {path}: run `evstore init` in the project root, or pass --db"
            ) from None
        defect = journal_file_defect(path, info)
        if defect is not None:  # empty, a FIFO, another format: never handed to SQLite
            return [self._corrupt(f"journal {shown} {defect[0]}")], None
        version, failures, foreign = _read_sqlite(path)
        latest = schema.latest_version("sqlite")
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            message = f"journal {shown} {failures[0]}{more}"
            return [self._corrupt(message)], version
        if foreign:
            message = f"{shown} is an SQLite database but not an evstore journal"
            return [self._corrupt(message)], version
        if version is not None and version < latest:
            return [Problem(
                JOURNAL_SCHEMA_OUTDATED,
                f"journal {shown} has schema version {version}; this evstore uses {latest}",
                fixable=True, path=path,
                remedy="migrate it (any write command does, or `evstore doctor --fix`; "
                "events are kept as they are; read-only commands leave it as it is)",
            )], version
        return [], version

    def _corrupt(self, message: str) -> Problem:
        return Problem(JOURNAL_CORRUPT, message, fixable=False, remedy=_restore_hint(self.db),
                       path=self.db)

    def _open(self, *, read_only: bool) -> Store:
        # The journal keeps the real clock: `clock` decides what is old, and must not
        # stamp events out of order with the ones around them.
        journal = SQLiteJournal(self.db, read_only=read_only, durability=self._durability,
                                tool=self._tool)
        return Store(journal, projections=self.projections)

    # --- scanning -------------------------------------------------------------------------------

    def _chain(self, store: Store) -> list[Problem]:
        """The journal's hash chain, from where it starts to the head: the first seq
        whose link does not follow from the events before it means events were lost or
        changed behind evstore's back. Only a restore can bring them back."""
        journal_id, chain_from = store.journal.identity()
        broken = first_break(journal_id, chain_from, store.journal.chain_rows(chain_from))
        if broken is None:
            return []
        return [Problem(
            JOURNAL_CHAIN_BROKEN,
            f"journal {self._shown_db()} is broken at seq {broken.seq}: {broken.why} (events "
            "lost or changed outside evstore: a deleted -wal file, a journal replaced by a "
            "copy, rows edited with the triggers off)",
            fixable=False, path=self._path_of_db(), remedy=_LOST_EVENTS,
            detail={"seq": broken.seq},
        )]

    def _lost_checkpoints(
        self, store: Store, session: str, export_dir: Path,
        checkpoints: dict[str, Checkpoint | None], trusted: dict[str, Checkpoint | None],
    ) -> list[Problem]:
        """Checkpoints naming an event the journal no longer holds at their seq: the journal
        went back in time under files already exported from its lost events."""
        problems = []
        head = store.journal.head()
        for name, checkpoint in checkpoints.items():
            if checkpoint is None or trusted[name] is not None:
                continue
            found = store.journal.event_id_at(checkpoint.seq)
            now = (f"the journal's head is seq {head}" if found is None
                   else f"seq {checkpoint.seq} is now event {found[:8]}")
            problems.append(Problem(
                JOURNAL_CHAIN_BROKEN,
                f"projection {name} of session {session} was exported at seq {checkpoint.seq} "
                f"(event {(checkpoint.event_id or '?')[:8]}), which the journal no longer "
                f"holds: {now}; acknowledged events were lost (the next export refolds it "
                "and keeps the file as a .drift- copy)",
                fixable=False, path=export_dir / self._file_of(name), session=session,
                remedy=_LOST_EVENTS, detail={"seq": checkpoint.seq},
            ))
        return problems

    def _file_of(self, name: str) -> str:
        return next(p.file_name for p in self.projections if p.name == name)

    def _shown_db(self) -> str:
        return redact_url(self.url) if self.url is not None else self._shown(self.db)

    def _path_of_db(self) -> Path | None:
        return None if self.url is not None else self.db

    def _scan(self, store: Store, *, phase: tuple[int, int] = (0, 1)) -> list[Problem]:
        problems: list[Problem] = self._chain(store)
        streams = store.journal.streams()
        heads = {s.stream: s.last_seq for s in streams}
        owners: dict[Path, list[str]] = {}
        dirs: dict[Path, Path] = {}
        for session in store.sessions():
            export_dir = store.export_dir(session)
            owners.setdefault(resolved(export_dir), []).append(session)
            dirs.setdefault(resolved(export_dir), export_dir)
        parts = self._parts(streams, [s for group in owners.values() for s in group], phase)
        for real_dir, sessions in owners.items():
            export_dir = dirs[real_dir]
            if len(sessions) > 1:
                # Whose file is which cannot be told: nothing in it is judged or touched.
                problems.append(self._shared(export_dir, sessions))
                problems += self._legacy_shared(export_dir, sessions)
            else:
                problems += self._session(store, sessions[0], export_dir, heads[sessions[0]],
                                          sessions, progress=parts.get(sessions[0]))
            problems += self._orphans(export_dir, sessions[0] if len(sessions) == 1 else None)
        return problems

    def _parts(
        self, streams: Sequence[StreamInfo], order: Sequence[str], phase: tuple[int, int]
    ) -> dict[str, Progress]:
        """Each session's share of `progress` in phase `index` of `count` (a phase counts
        every session's events), for sessions handled in `order` (none without progress)."""
        if self._progress is None:
            return {}
        sizes = {s.stream: s.events for s in streams if s.stream != ERRORS_STREAM}
        index, count = phase
        size = sum(sizes.values())
        done, total = index * size, count * size
        parts = {}
        for session in order:
            parts[session] = span(self._progress, done, sizes.get(session, 0), total)
            done += sizes.get(session, 0)
        return parts

    def _session(  # noqa: C901, PLR0912, PLR0913, PLR0915 - one branch per finding
        self, store: Store, session: str, export_dir: Path, head: int, sharing: list[str],
        *, progress: Progress | None = None,
    ) -> list[Problem]:
        checkpoints = {p.name: store.journal.checkpoint(p.name, session) for p in self.projections}
        trusted = store.runner.trusted_checkpoints(checkpoints)
        starts = [(p, *resume_point(p, trusted[p.name])) for p in self.projections]
        folded = store.runner.fold_many(session, starts, progress=progress)
        states = {r.projection.name: r.state for r in folded}
        problems = self._lost_checkpoints(store, session, export_dir, checkpoints, trusted)
        for rendered in folded:
            projection = rendered.projection
            path = export_dir / projection.file_name
            shown = self._shown(path)
            checkpoint = checkpoints[projection.name]
            want = projection.render(rendered.state)
            want_sha = sha256(want) if want is not None else None
            exported = checkpoint.exported_sha256 if checkpoint is not None else None
            at = checkpoint.seq if checkpoint is not None else 0
            try:
                data: bytes | None = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                data = None
            except IsADirectoryError:
                if want is not None or exported is not None:
                    # Nothing evstore may do about it: a directory could hold anyone's work.
                    problems.append(Problem(
                        PROJECTION_MISSING,
                        f"{shown} (session {session}) is a directory, not the file evstore exports",
                        fixable=False, path=path, session=session,
                        remedy=f"move the directory {shown} aside, then run `evstore project`",
                    ))
                continue
            on_disk = sha256(data) if data is not None else None
            if isinstance(projection, BatchProgressProjection) and data is not None:
                why = _batch_progress_defect(data)
                if why is not None:
                    problems.append(self._batch_corrupt(session, path, why, unfinished=bool(want)))
                    continue
            if store.runner.drifted(projection, session, checkpoint, trusted[projection.name],
                                    on_disk, want_sha):
                assert exported is not None  # noqa: S101 - drifted says so
                assert on_disk is not None  # noqa: S101 - drifted says so
                problems.append(Problem(
                    PROJECTION_DRIFT,
                    f"{shown} (session {session}) was changed outside evstore "
                    f"(sha256 {on_disk[:12]}, exported {exported[:12]})",
                    fixable=True, path=path, session=session,
                    remedy=f"keep the edited copy beside it as {path.name}.drift-<UTC time>, "
                    "then re-export from the journal",
                    detail={"sha256": on_disk},
                ))
            elif on_disk is None and want is not None:
                why = (f"last exported at seq {at}" if exported is not None
                       else f"never exported; events up to seq {rendered.seq} to render")
                problems.append(Problem(
                    PROJECTION_MISSING, f"{shown} (session {session}) is missing ({why})",
                    fixable=True, path=path, session=session, remedy="export it from the journal",
                ))
            elif on_disk != want_sha:  # a file where none belongs is stale too, whoever wrote it
                why = (f"checkpoint at seq {at}, session head at seq {head}" if at < head
                       else "its bytes differ from what the journal renders")
                if checkpoint is None:
                    why = f"never exported; session head at seq {head}"
                elif at >= head and on_disk in store.journal.export_digests(projection.name,
                                                                            session):
                    why = "it holds an earlier export (another host's, or an older run)"
                problems.append(Problem(
                    PROJECTION_STALE, f"{shown} (session {session}) is behind the journal ({why})",
                    fixable=True, path=path, session=session, remedy="export it from the journal",
                ))
        batch_state = states.get(BatchProgressProjection.name)
        if isinstance(batch_state, BatchState) and batch_state.batch is not None:
            problems += self._stale_batch(session, export_dir, batch_state.batch)
        tasks = states.get(TasksProjection.name)
        if isinstance(tasks, BacklogState):
            problems += _dependency_problems(
                session, export_dir / TasksProjection.file_name, tasks.doc
            )
        if len(sharing) == 1 and isinstance(tasks, BacklogState):
            problems += self._legacy(store, session, export_dir, tasks.doc)
        if isinstance(tasks, BacklogState):
            problems += _backlog_invalid(
                session, self._shown(export_dir / TasksProjection.file_name), tasks.doc
            )
        return problems

    def _batch_corrupt(self, session: str, path: Path, why: str, *, unfinished: bool) -> Problem:
        where = self.show_lost_and_found()
        remedy = (f"move it to {where} and re-export it from the journal (session {session} "
                  "has an unfinished batch)" if unfinished else
                  f"move it to {where} (the journal has no unfinished batch in session {session})")
        message = f"{self._shown(path)} (session {session}) is {why}"
        return Problem(BATCH_PROGRESS_CORRUPT, message, fixable=True, path=path, session=session,
                       remedy=remedy)

    def _stale_batch(self, session: str, export_dir: Path, batch: Batch) -> list[Problem]:
        age = self._clock() - parse_time(batch.last_activity)
        if age <= self._stale_after:
            return []
        hours = f"{age.total_seconds() / 3600:.0f} h"
        path = export_dir / BatchProgressProjection.file_name
        detail = {"batch_id": batch.batch_id}
        if batch.host != self._host:
            return [Problem(
                STALE_BATCH_PROGRESS,
                f"batch {batch.batch_id} of session {session} was last updated "
                f"{batch.last_activity} "
                f"({hours} ago) by pid {batch.pid} on host {batch.host}",
                fixable=False, path=path, session=session, detail=detail,
                remedy=f"this machine cannot tell whether its owner on {batch.host} is alive: run "
                "`evstore doctor --fix` there, or `evstore batch start --no-resume` to abandon it",
            )]
        if self._alive(batch.pid, batch.pid_start):
            return []  # a live process owns it, however long it has been quiet
        return [Problem(
            STALE_BATCH_PROGRESS,
            f"batch {batch.batch_id} of session {session} is stale: its owner (pid {batch.pid}) "
            f"is gone and its last update was {batch.last_activity} ({hours} ago)",
            fixable=True, path=path, session=session, detail=detail,
            remedy=f'append BatchAbandoned (reason "{STALE_REASON}") and re-export',
        )]

    def _legacy(
        self, store: Store, session: str, export_dir: Path, current: dict[str, Any] | None
    ) -> list[Problem]:
        path = export_dir / LEGACY_FILE
        if not path.is_file():
            return []
        try:
            parsed, written_at = _read_legacy(path)
            pending = self._pending(store, session, parsed, written_at, current, source=str(path))
        except InvalidInputError as exc:
            return [self._legacy_unreadable(path, session, str(exc))]
        except OSError as exc:
            why = f"cannot read it: {exc.strerror or exc}"
            return [self._legacy_unreadable(path, session, why)]
        what = f"{len(pending.events)} difference(s) from the journal to import"
        if pending.superseded:
            what += f", {pending.superseded} superseded by newer journal events"
        if pending.clock_skew:
            what += f"; {pending.clock_skew}"
        return [Problem(
            LEGACY_RECOVERY_FILE,
            f"{self._shown(path)} (session {session}) is a legacy recovery file with {what}",
            fixable=True, path=path, session=session,
            remedy="import its differences as events, then move it to "
            f"{self.show_lost_and_found()}",
        )]

    def _pending(  # noqa: PLR0913 - the file, where it goes, and the state it meets
        self, store: Store, session: str, parsed: ParsedBacklog, written_at: datetime | None,
        current: dict[str, Any] | None, *, source: str,
    ) -> Pending:
        return recovery_events(store, session, parsed, written_at, current, source=source)

    def _legacy_unreadable(self, path: Path, session: str, why: str) -> Problem:
        return Problem(
            LEGACY_RECOVERY_FILE, f"{self._shown(path)} (session {session}) is a legacy recovery "
            f"file that cannot be imported: {why}",
            fixable=False, path=path, session=session,
            remedy=f"inspect it; `evstore import {path} --session {session}` names the problem",
        )

    def _shared(self, export_dir: Path, sessions: list[str]) -> Problem:
        names = ", ".join(sessions)
        return Problem(
            EXPORT_DIR_SHARED,
            f"{self._shown(export_dir)} is the export dir of sessions {names} (once symlinks "
            "are resolved): each would write the others' files",
            fixable=False, path=export_dir,
            remedy=f"give all but one a directory of its own: `evstore session move "
            f"{sessions[-1]} DIR`, then `evstore project`",
            detail={"sessions": sessions},
        )

    def _legacy_shared(self, export_dir: Path, sessions: list[str]) -> list[Problem]:
        path = export_dir / LEGACY_FILE
        if not path.is_file():
            return []
        names = ", ".join(sessions)
        return [Problem(
            LEGACY_RECOVERY_FILE,
            f"{self._shown(path)} is a legacy recovery file in an export dir shared by "
            f"sessions {names}",
            fixable=False, path=path,
            remedy=f"import it into the right session: `evstore import {path} --session SESSION`",
        )]

    def _orphans(self, export_dir: Path, session: str | None) -> list[Problem]:
        """Temp files no exporter owns; `session` is the export dir's only session, if so."""
        found = list(self._old_temp_files(export_dir))
        if not found or self._lock_held(export_dir):
            return []  # a live exporter owns its temp files
        where = self.show_lost_and_found()
        return [Problem(
            ORPHAN_TEMP_FILE,
            f"{self._shown(path)} was left by an interrupted export "
            f"({age.total_seconds() / 60:.0f} min old, no exporter running)",
            fixable=True, path=path, session=session, remedy=f"move it to {where}",
        ) for path, age in found]

    def _old_temp_files(self, export_dir: Path) -> Iterator[tuple[Path, timedelta]]:
        try:
            entries = sorted(os.scandir(export_dir), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        now = self._clock()
        for entry in entries:
            if not TEMP_FILE.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                mtime = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
            except FileNotFoundError:
                continue  # its exporter finished meanwhile
            if now - mtime > self._orphan_age:
                yield Path(entry.path), now - mtime

    @staticmethod
    def _lock_held(export_dir: Path) -> bool:
        from filelock import FileLock, Timeout  # noqa: PLC0415 - only locks need it

        lock_path = export_dir / LOCK_NAME
        if not lock_path.exists():
            return False  # nobody ever locked it, and checking must not create it
        lock = FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return True
        lock.release()
        return False

    def show_lost_and_found(self) -> str:
        return f"{self._shown(self.lost_and_found())}/"

    # --- repairing ------------------------------------------------------------------------------

    def _repair(
        self, store: Store, found: list[Problem], *, phase: tuple[int, int] = (1, 3)
    ) -> None:
        fixable = [p for p in found if p.fixable]
        # 1. Appends: the journal first, so a file is moved only once what it held is recorded.
        for problem in fixable:
            try:
                if problem.code == LEGACY_RECOVERY_FILE:
                    self._import_legacy(store, problem)
                elif problem.code == STALE_BATCH_PROGRESS:
                    self._abandon(store, problem)
            except (EvstoreError, OSError) as exc:
                self._failed(problem, exc)
        # 2. Moves and copies, per export directory, holding its exporter lock.
        moved = [p for p in fixable if p.code in _MOVED and p.error is None and p.path is not None]
        if moved:
            protected = _protected(store)
            for export_dir, problems in _grouped(moved, lambda p: p.path.parent).items():  # type: ignore[union-attr]
                self._move_files(export_dir, problems, protected)
        # 3. Exports: every session with a file to bring back in line with the journal.
        exported = [p for p in fixable if p.code in _EXPORTED and p.session is not None]
        groups = _grouped(exported, lambda p: p.session)
        parts = self._parts(store.journal.streams(), list(groups), phase)
        for session, problems in groups.items():
            self._export(store, session, problems, progress=parts.get(session))

    def _export(
        self, store: Store, session: str, problems: list[Problem],
        *, progress: Progress | None = None,
    ) -> None:
        try:
            results = {r.path: r for r in store.project(session, progress=progress)}
        except (EvstoreError, OSError) as exc:
            for problem in problems:
                if problem.error is None:
                    self._failed(problem, exc)
            return
        for problem in problems:
            if problem.error is None and problem.code in (PROJECTION_STALE, PROJECTION_MISSING):
                result = results.get(problem.path) if problem.path is not None else None
                problem.outcome = (f"exported ({result.action}, seq {result.seq})" if result
                                   else "exported")

    def _failed(self, problem: Problem, exc: BaseException) -> None:
        problem.error = str(exc)
        log.warning("doctor_fix_failed", code=problem.code, path=str(problem.path),
                    session=problem.session, error=str(exc))

    def _import_legacy(self, store: Store, problem: Problem) -> None:
        path, session = problem.path, problem.session
        if path is None or session is None:
            return
        parsed, written_at = _read_legacy(path)

        def decide() -> tuple[list[Event], Pending]:
            current = store.state(session, TasksProjection.name).doc
            pending = self._pending(store, session, parsed, written_at, current, source=str(path))
            return list(pending.events), pending

        pending, appended = store.append_decided(session, decide)
        done = (f"imported {pending.count} event(s) (seq {appended.first_seq}..{appended.last_seq})"
                if appended is not None else "nothing to import")
        if pending.superseded:
            done += f", {pending.superseded} superseded difference(s) left as the journal has them"
        if pending.clock_skew:
            log.warning("legacy_timestamp_clamped", path=str(path), session=session,
                        reason=pending.clock_skew)
        problem.outcome = done

    def _abandon(self, store: Store, problem: Problem) -> None:
        session, batch_id = problem.session, problem.detail["batch_id"]
        if session is None:
            return

        def decide() -> tuple[list[Event], bool]:
            batch = store.state(session, BatchProgressProjection.name).batch
            if batch is None or batch.batch_id != batch_id:
                return [], False  # finished, abandoned or replaced meanwhile
            if self._clock() - parse_time(batch.last_activity) <= self._stale_after:
                return [], False  # its owner (or a new one) came back
            return [BatchAbandoned(batch_id=batch_id, reason=STALE_REASON)], True

        abandoned, appended = store.append_decided(session, decide)
        problem.outcome = (
            f'appended BatchAbandoned (reason "{STALE_REASON}", seq {appended.last_seq})'
            if abandoned and appended is not None
            else "left alone: the batch changed meanwhile"
        )

    def _move_files(
        self, export_dir: Path, problems: list[Problem], protected: Callable[[Path], None]
    ) -> None:
        """Moves in an export dir happen under its exporter lock: no export writes a temp
        file or replaces a projection while doctor decides what to set aside."""
        from filelock import FileLock, Timeout  # noqa: PLC0415 - only locks need it

        lock = FileLock(export_dir / LOCK_NAME, timeout=self._lock_timeout_s)
        try:
            lock.acquire()
        except Timeout:
            for problem in problems:
                problem.error = (
                    f"export directory {export_dir} is locked by an exporter for over "
                    f"{self._lock_timeout_s:.0f}s: run doctor again when it is done"
                )
            return
        try:
            for problem in problems:
                try:
                    self._move_one(problem, protected)
                except (OSError, InvalidInputError) as exc:
                    self._failed(problem, exc)
        finally:
            lock.release()

    def _move_one(  # noqa: C901 - one branch per code
        self, problem: Problem, protected: Callable[[Path], None]
    ) -> None:
        path = problem.path
        if path is None:
            return
        lost = self.lost_and_found()
        if problem.code != PROJECTION_DRIFT:
            self._check_lost_and_found(lost)
        if problem.code == ORPHAN_TEMP_FILE:
            if not any(p == path for p, _ in self._old_temp_files(path.parent)):
                problem.outcome = "gone or renewed meanwhile: left alone"
                return
            moved = move_aside(path, lost, refuse=protected)
            problem.outcome = f"moved to {self._shown(moved)}"
        elif problem.code == BATCH_PROGRESS_CORRUPT:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                problem.outcome = "gone meanwhile"
                return
            if _batch_progress_defect(data) is None:
                problem.outcome = "valid again meanwhile: left alone"
                return
            moved = move_aside(path, lost, refuse=protected)
            problem.outcome = f"moved to {self._shown(moved)}"
        elif problem.code == PROJECTION_DRIFT:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                problem.outcome = "gone meanwhile"
                return
            copy = keep_copy(path, path.parent, drift_name(path, self._clock()), refuse=protected)
            if sha256(data) != problem.detail.get("sha256"):
                log.warning("doctor_drift_changed", path=str(path))  # edited again: keep that
            problem.outcome = f"kept the edited copy as {copy.name}; re-exported"
        elif problem.code == LEGACY_RECOVERY_FILE:
            moved = move_aside(path, lost, refuse=protected)
            problem.outcome = f"{problem.outcome or 'imported'}; moved to {self._shown(moved)}"

    def _check_lost_and_found(self, lost: Path) -> None:
        """Files go into a real directory beside the journal, never through a symlink:
        one planted there would carry an export dir's files out of the project."""
        if lost.is_symlink() or (lost.exists() and resolved(lost).parent != resolved(lost.parent)):
            raise InvalidInputError(
                f"{self._shown(lost.parent)}/{lost.name} is a symlink (to "
                f"{lost.readlink() if lost.is_symlink() else resolved(lost)}): doctor moves "
                f"files only into a real directory: remove the symlink and run `evstore doctor "
                f"--fix` again"
            )

    def _shown(self, path: Path) -> str:
        """`path` relative to the project root when inside it: what people read."""
        try:
            return str(path.resolve().relative_to(self._root()))
        except ValueError:
            return str(path)


# --- helpers ------------------------------------------------------------------------------------


def _dependency_problems(session: str, path: Path, doc: dict[str, Any] | None) -> list[Problem]:
    """Dependencies naming no item, and dependency cycles: one problem per session (work
    selection still runs: a missing id does not block, a cycle blocks its members)."""
    from eventstore.selection import dependency_problems  # noqa: PLC0415

    found = dependency_problems(doc)
    if not found:
        return []
    return [Problem(
        BACKLOG_DEPENDENCY, f"session {session}'s backlog has broken dependencies: "
                            f"{'; '.join(found)}",
        fixable=False, path=path, session=session,
        remedy="correct the dependencies in the pipeline's plan and `evstore import` the file; "
        "`evstore blocked` shows what they hold back",
    )]


def _backlog_invalid(session: str, shown: str, doc: dict[str, Any] | None) -> list[Problem]:
    """The backlog breaks the pipeline's schema (as imported from a real file: kept, since
    it is a record of what happened). Nothing to fix automatically: only a person knows
    what the item should have said."""
    found = backlog_problems(doc) if doc is not None else []
    if not found:
        return []
    listed = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
    return [Problem(
        BACKLOG_INVALID,
        f"{shown} (session {session}) breaks the pipeline's backlog schema "
        f"({len(found)} problem(s): {listed})",
        fixable=False,
        remedy=f"correct the items in a copy of {shown}, then `evstore import` it into "
        f"session {session} (the changes become events)",
        session=session,
        detail={"problems": found},
    )]


def _grouped(problems: list[Problem], key: Callable[[Problem], Any]) -> dict[Any, list[Problem]]:
    groups: dict[Any, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(key(problem), []).append(problem)
    return groups


@dataclass(frozen=True)
class Pending:
    """What a legacy recovery file brings: the events to append, and how many of its
    differences the journal has superseded since it was written."""

    events: list[Event]
    superseded: int
    clock_skew: str | None = None  # why the file's timestamp was not believed, when it was not

    @property
    def count(self) -> int:
        return len(self.events)


def recovery_events(  # noqa: PLR0913 - the file, where it goes, and the state it meets
    store: Store, session: str, parsed: ParsedBacklog, written_at: datetime | None,
    current: dict[str, Any] | None, *, source: str,
) -> Pending:
    """The events that bring a legacy file's pending updates into the journal.

    The file's `pendingUpdates` is the whole backlog as the old pipeline held it when
    it gave up. Its differences from the journal's current state would also undo every
    update the journal recorded after the file was written, so only what the file
    changed relative to the state it was written against (the journal at the file's
    `timestamp`, or right after the session's first import when that is later) is
    applied; a field the journal changed since is newer and kept as the journal has it.
    Used by `doctor --fix` and by `evstore import FILE.failed`.
    """
    seed = import_event(parsed, source=source)
    if current is None:
        return Pending([seed], 0)
    events = diff_backlogs(current, parsed.doc, fallback=seed)
    skew = _clock_skew(store, written_at)
    base = _recovery_base(store, session, None if skew else written_at)
    if base is None or not events:
        return Pending(list(events), 0, skew)
    kept, superseded = _not_superseded(events, base, current)
    if kept == [seed] and _differs(base, current):
        raise InvalidInputError(
            "its differences can only be imported as a whole backlog, which would undo "
            "updates the journal recorded since it was written"
        )
    return Pending(kept, superseded, skew)


def _clock_skew(store: Store, written_at: datetime | None) -> str | None:
    """Why a file's timestamp cannot place it in the journal's order, or None.

    A time later than the journal's last event claims the file saw every acknowledged
    update, so all of them would be undone. Only a machine whose clock ran ahead writes
    that (a pipeline gives up before evstore imports its session), so the time is clamped
    to the journal's head and the file is taken as written when the time is unknown:
    against the session's first import, every later journal update kept."""
    if written_at is None:
        return None
    head = store.journal.head()
    last = next(iter(store.journal.read(after=head - 1, until=head)), None)
    if last is None:
        return None
    head_time = parse_time(last.recorded_at)
    if written_at <= head_time:
        return None
    return (f"its timestamp {written_at.isoformat()} is later than the journal's head "
            f"(seq {head}, {last.recorded_at}): the writing machine's clock was ahead, so it "
            "was clamped to the head and every update the journal recorded after the "
            "session's first import is kept")


def _recovery_base(
    store: Store, session: str, written_at: datetime | None
) -> dict[str, Any] | None:
    """The backlog a legacy file was written against (see `recovery_events`)."""
    first = next(iter(store.journal.read(session, types=["BacklogImported"], limit=1)), None)
    if first is None:
        return None
    until = first.seq
    if written_at is not None:
        until = max(until, store.journal.seq_at(written_at))
    tasks = next((p for p in store.projections if p.name == TasksProjection.name), None)
    if tasks is None:
        return None
    state, _, _ = store.runner.fold(tasks, session, until=until)
    doc: dict[str, Any] | None = state.doc
    return doc


def read_legacy(data: bytes, *, source: str) -> tuple[ParsedBacklog, datetime | None] | None:
    """A tasks.json.failed's pending backlog and when it was written (None if unknown);
    None when the bytes are not a recovery file."""
    recovery = read_recovery_file(data, source=source)
    if recovery is None:
        return None
    stamp = orjson.loads(data).get("timestamp")
    try:
        written_at = parse_time(stamp) if isinstance(stamp, str) else None
    except ValueError:
        written_at = None
    return recovery[0], written_at


def _read_legacy(path: Path) -> tuple[ParsedBacklog, datetime | None]:
    """A tasks.json.failed's pending backlog and when it was written (None if unknown)."""
    data = path.read_bytes()
    recovery = read_recovery_file(data, source=str(path))
    if recovery is None:
        raise InvalidInputError("no pendingUpdates in it")
    stamp = orjson.loads(data).get("timestamp")
    try:
        written_at = parse_time(stamp) if isinstance(stamp, str) else None
    except ValueError:
        written_at = None
    return recovery[0], written_at


_MISSING = object()


def _field(index: dict[str, Any], item_id: str, key: str) -> Any:
    found = index.get(item_id)
    return found[0].get(key, _MISSING) if found is not None else _MISSING


def _differs(a: Any, b: Any) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is not b
    return orjson.dumps(a) != orjson.dumps(b)  # as JSON: Python says 1 == True


def _not_superseded(  # noqa: C901 - one branch per event type
    events: Sequence[Event], base: dict[str, Any], current: dict[str, Any]
) -> tuple[list[Event], int]:
    """`events` (current → the file's backlog) less every change to something the journal
    changed after `base` (the state the file was written against): (kept, dropped)."""
    before, now = BacklogState(base).index, BacklogState(current).index

    def changed(item_id: str, key: str) -> bool:
        return _differs(_field(before, item_id, key), _field(now, item_id, key))

    def subtree_changed(item_id: str) -> bool:
        if item_id not in before:
            return True
        return _differs(before[item_id][0], now[item_id][0]) if item_id in now else True

    kept: list[Event] = []
    dropped = 0
    for event in events:
        if isinstance(event, ItemStatusChanged):
            if changed(event.item_id, "status"):
                dropped += 1
                continue
        elif isinstance(event, ItemUpdated):
            changes = {k: v for k, v in event.changes.items() if not changed(event.item_id, k)}
            removed = [k for k in event.removed if not changed(event.item_id, k)]
            dropped += len(event.changes) - len(changes) + len(event.removed) - len(removed)
            if not changes and not removed:
                continue
            event = ItemUpdated(item_id=event.item_id, changes=changes, removed=removed)  # noqa: PLW2901
        elif isinstance(event, ItemAdded):
            if event.item.get("id") in before:  # the journal removed it since
                dropped += 1
                continue
        elif isinstance(event, ItemRemoved):
            if subtree_changed(event.item_id):  # added or updated by the journal since
                dropped += 1
                continue
        elif isinstance(event, BacklogImported):
            pass  # judged by the caller: only a whole re-import reproduces the file
        kept.append(event)
    return kept, dropped


def _restore_hint(path: Path) -> str:
    return (f"restore {path} from a backup, keeping the damaged file aside (sqlite3's "
            "`.recover` or `.dump` may salvage rows from it); then `evstore replay` rewrites "
            "the files from it")


def _read_sqlite(path: Path) -> tuple[int | None, list[str], bool]:
    """(user_version, integrity failures, whether it is another application's database),
    read without writing; a journal from a newer evstore is refused (JournalSchemaError)."""
    latest = schema.latest_version("sqlite")
    try:
        conn, _ = open_read_only(path)
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    try:
        return _retry_reads(lambda: _examine_sqlite(conn, path, latest))
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not name.startswith("SQLITE_CORRUPT"):
            raise translate(exc, path) from exc  # an I/O error every time: exit 5
        # Malformed on every attempt: the check itself cannot get through the file.
        return None, [f"fails its integrity check: {exc}"], False
    finally:
        conn.close()


class _ReadFailedDuringCheck(sqlite3.DatabaseError):
    """The integrity check could not read some pages: no verdict on the file."""

    sqlite_errorname = "SQLITE_IOERR_READ"


def _retry_reads(read: Callable[[], _T], attempts: int = 9) -> _T:
    """`read()` again, briefly later, while SQLite fails to read a page in a way that may
    pass (an I/O error, or a malformed page met mid-read): on the same connection, which
    keeps the pages it did read, so each attempt gets further. The last error stands."""
    for attempt in range(attempts):
        try:
            return read()
        except sqlite3.DatabaseError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if attempt == attempts - 1 or not name.startswith(("SQLITE_IOERR", "SQLITE_CORRUPT")):
                raise
            time.sleep(min(0.2, 0.01 * 2 ** attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def _examine_sqlite(
    conn: sqlite3.Connection, path: Path, latest: int
) -> tuple[int | None, list[str], bool]:
    version = None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > latest:
            raise JournalSchemaError(
                f"journal {path} has schema version {version}, newer than this evstore "
                f"supports ({latest}): upgrade evstore"
            )
        findings = check_findings(conn.execute("PRAGMA integrity_check").fetchall())
        if read_failed_during_check(findings):
            raise _ReadFailedDuringCheck(findings[0])
        failures = [f"fails its integrity check: {line}" for line in findings]
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master"
            " WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_IOERR")):
            raise  # for _retry_reads: it may pass
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")):
            raise translate(exc, path) from exc
        step = "cannot be read" if version is None else "fails its integrity check"
        return version, [f"{step}: {exc}"], False
    return version, failures, version == 0 and tables > 0


def _batch_progress_defect(data: bytes) -> str | None:
    """Why `data` is not a schema v1 batch-progress.json, or None when it is one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(doc, dict):
        return f"not a schema v1 batch progress document (a JSON {type(doc).__name__})"
    version = doc.get("schema_version")
    if version != 1 or isinstance(version, bool):
        return f"not a schema v1 batch progress document (schema_version {version!r})"
    if not isinstance(doc.get("session_id"), str) or not isinstance(doc.get("queued_items"), list):
        return "not a schema v1 batch progress document (session_id or queued_items missing)"
    for name in ("completed", "failed", "skipped"):
        if name in doc and not isinstance(doc[name], list):
            return f"not a schema v1 batch progress document ({name} is not a list)"
    return None


def _protected(store: Store) -> Callable[[Path], None]:
    """Raises for a copy's target that is the journal or a file a session projects to."""
    from eventstore.paths import protected_files  # noqa: PLC0415

    owners = protected_files(store)

    def refuse(target: Path) -> None:
        refuse_protected(store, [target], what="doctor --fix", protected=owners)

    return refuse

