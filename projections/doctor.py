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

This module judges the journal (what lies at its path, schema, integrity, hash chain) and
runs a check or a fix; the problem model is `problems.py`, the export directories' checks
`doctor_files.py`, the repairs `doctor_repairs.py`, legacy recovery files `legacy.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eventstore import schema
from eventstore.backends import inspect_journal_file, open_journal
from eventstore.chain import first_break
from eventstore.errors import (
    JournalCorruptError,
    JournalError,
    JournalNotFoundError,
    JournalSchemaError,
)
from eventstore.locate import STATE_DIR, find_project_root, is_url, redact_url
from eventstore.logs import get_logger
from eventstore.owner import is_alive, this_host
from eventstore.records import utc_now
from eventstore.store import Store
from projections import DEFAULT
from projections.batch_runs import STALE_AFTER
from projections.doctor_context import DoctorContext
from projections.doctor_files import ORPHAN_AGE, FileChecks
from projections.doctor_repairs import Repairs
from projections.problems import (
    BACKLOG_DEPENDENCY,
    BACKLOG_INVALID,
    BATCH_PROGRESS_CORRUPT,
    CODES,
    EXPORT_DIR_SHARED,
    JOURNAL_CHAIN_BROKEN,
    JOURNAL_CORRUPT,
    JOURNAL_SCHEMA_OUTDATED,
    LEGACY_RECOVERY_FILE,
    LOST_EVENTS,
    ORPHAN_TEMP_FILE,
    PROJECTION_DRIFT,
    PROJECTION_MISSING,
    PROJECTION_STALE,
    STALE_BATCH_PROGRESS,
    Problem,
    Report,
    shown,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Sequence
    from datetime import datetime, timedelta

    from eventstore.persistence import Durability
    from eventstore.progress import Progress
    from eventstore.projection import Projection

# What a caller needs to run a check and read its report, from one import.
__all__ = [
    "BACKLOG_DEPENDENCY",
    "BACKLOG_INVALID",
    "BATCH_PROGRESS_CORRUPT",
    "CODES",
    "EXPORT_DIR_SHARED",
    "JOURNAL_CHAIN_BROKEN",
    "JOURNAL_CORRUPT",
    "JOURNAL_SCHEMA_OUTDATED",
    "LEGACY_RECOVERY_FILE",
    "LOST_AND_FOUND",
    "ORPHAN_TEMP_FILE",
    "PROJECTION_DRIFT",
    "PROJECTION_MISSING",
    "PROJECTION_STALE",
    "STALE_BATCH_PROGRESS",
    "Doctor",
    "Problem",
    "Report",
]

log = get_logger("evstore.doctor")

LOST_AND_FOUND = "lost+found"
_UNTRUSTED = "every other check: the journal cannot be trusted"


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
                store.journal.migrate()
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
        context = self._context()
        files = FileChecks(context)
        report.sessions = store.sessions()
        phases = 3 if report.fix else 1
        found = [*self._chain(store), *files.scan(store, phase=(0, phases))]
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
        Repairs(context).run(store, found, phase=(1, phases))
        remaining = [*self._chain(store), *files.scan(store, phase=(2, phases))]
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
        nothing (opening the journal would migrate an old one)."""
        path, where = self.db, self._shown(self.db)
        try:
            found = inspect_journal_file(path)
        except FileNotFoundError:
            raise JournalNotFoundError(
                f"no journal at {path}: run `evstore init` in the project root, or pass --db"
            ) from None
        if found.defect is not None:  # empty, a FIFO, another format: never opened
            return [self._corrupt(f"journal {where} {found.defect}")], None
        version, failures, foreign = found.version, found.failures, found.foreign
        latest = schema.latest_version("sqlite")
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            message = f"journal {where} {failures[0]}{more}"
            return [self._corrupt(message)], version
        if foreign:
            message = f"{where} is an SQLite database but not an evstore journal"
            return [self._corrupt(message)], version
        if version is not None and version < latest:
            return [Problem(
                JOURNAL_SCHEMA_OUTDATED,
                f"journal {where} has schema version {version}; this evstore uses {latest}",
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
        journal = open_journal(self.db, read_only=read_only, durability=self._durability,
                               tool=self._tool)
        return Store(journal, projections=self.projections)

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
            fixable=False, path=self._path_of_db(), remedy=LOST_EVENTS,
            detail={"seq": broken.seq},
        )]

    # --- where things are, for people -----------------------------------------------------------

    def _context(self) -> DoctorContext:
        return DoctorContext(
            projections=self.projections, root=self._root(), lost_and_found=self.lost_and_found(),
            clock=self._clock, alive=self._alive, host=self._host, orphan_age=self._orphan_age,
            stale_after=self._stale_after, lock_timeout_s=self._lock_timeout_s,
            progress=self._progress,
        )

    def show_lost_and_found(self) -> str:
        return f"{self._shown(self.lost_and_found())}/"

    def _shown_db(self) -> str:
        return redact_url(self.url) if self.url is not None else self._shown(self.db)

    def _path_of_db(self) -> Path | None:
        return None if self.url is not None else self.db

    def _shown(self, path: Path) -> str:
        """`path` relative to the project root when inside it: what people read."""
        return shown(path, self._root())


def _restore_hint(path: Path) -> str:
    return (f"restore {path} from a backup, keeping the damaged file aside (sqlite3's "
            "`.recover` or `.dump` may salvage rows from it); then `evstore replay` rewrites "
            "the files from it")

