"""`doctor`'s checks of every export directory and the files in it (docs/design.md §10):
projections against what the journal renders, checkpoints the journal no longer backs,
the batch, the backlog, legacy recovery files and temp files no exporter owns.

Checks write nothing. Directories are grouped by their resolved path: one that two sessions
share is reported once and nothing in it is judged (whose file is which cannot be told).
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventstore.errors import InvalidInputError
from eventstore.paths import resolved
from eventstore.runner import LOCK_NAME, resume_point, sha256
from projections.backlog import BacklogState, TasksProjection
from projections.backlog_schema import backlog_problems
from projections.batch import Batch, BatchProgressProjection, BatchState, batch_progress_defect
from projections.batch_runs import parse_time
from projections.legacy import LEGACY_FILE, read_legacy_file, recovery_events
from projections.problems import (
    BACKLOG_DEPENDENCY,
    BACKLOG_INVALID,
    BATCH_PROGRESS_CORRUPT,
    EXPORT_DIR_SHARED,
    JOURNAL_CHAIN_BROKEN,
    LEGACY_RECOVERY_FILE,
    LOST_EVENTS,
    ORPHAN_TEMP_FILE,
    PROJECTION_DRIFT,
    PROJECTION_MISSING,
    PROJECTION_STALE,
    STALE_BATCH_PROGRESS,
    Problem,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore.progress import Progress
    from eventstore.records import Checkpoint
    from eventstore.store import Store
    from projections.doctor_context import DoctorContext

ORPHAN_AGE = timedelta(minutes=1)
TEMP_FILE = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{16}\.tmp$")  # eventstore.atomic.temp_name
STALE_REASON = "doctor: stale"


class FileChecks:
    """The export directories of one journal's sessions, as one doctor run sees them."""

    def __init__(self, context: DoctorContext) -> None:
        self._ctx = context

    def scan(self, store: Store, *, phase: tuple[int, int] = (0, 1)) -> list[Problem]:
        streams = store.journal.streams()
        heads = {s.stream: s.last_seq for s in streams}
        owners: dict[Path, list[str]] = {}
        dirs: dict[Path, Path] = {}
        for session in store.sessions():
            export_dir = store.export_dir(session)
            owners.setdefault(resolved(export_dir), []).append(session)
            dirs.setdefault(resolved(export_dir), export_dir)
        order = [s for group in owners.values() for s in group]
        parts = self._ctx.parts(streams, order, phase)
        problems: list[Problem] = []
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
                fixable=False, path=export_dir / self._ctx.file_of(name), session=session,
                remedy=LOST_EVENTS, detail={"seq": checkpoint.seq},
            ))
        return problems

    def _session(  # noqa: C901, PLR0912, PLR0913, PLR0915 - one branch per finding
        self, store: Store, session: str, export_dir: Path, head: int, sharing: list[str],
        *, progress: Progress | None = None,
    ) -> list[Problem]:
        projections = self._ctx.projections
        checkpoints = {p.name: store.journal.checkpoint(p.name, session) for p in projections}
        trusted = store.runner.trusted_checkpoints(checkpoints)
        starts = [(p, *resume_point(p, trusted[p.name])) for p in projections]
        folded = store.runner.fold_many(session, starts, progress=progress)
        states = {r.projection.name: r.state for r in folded}
        problems = self._lost_checkpoints(store, session, export_dir, checkpoints, trusted)
        for rendered in folded:
            projection = rendered.projection
            path = export_dir / projection.file_name
            shown = self._ctx.shown(path)
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
                why = batch_progress_defect(data)
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
                session, self._ctx.shown(export_dir / TasksProjection.file_name), tasks.doc
            )
        return problems

    def _batch_corrupt(self, session: str, path: Path, why: str, *, unfinished: bool) -> Problem:
        where = self._ctx.show_lost_and_found()
        remedy = (f"move it to {where} and re-export it from the journal (session {session} "
                  "has an unfinished batch)" if unfinished else
                  f"move it to {where} (the journal has no unfinished batch in session {session})")
        message = f"{self._ctx.shown(path)} (session {session}) is {why}"
        return Problem(BATCH_PROGRESS_CORRUPT, message, fixable=True, path=path, session=session,
                       remedy=remedy)

    def _stale_batch(self, session: str, export_dir: Path, batch: Batch) -> list[Problem]:
        age = self._ctx.clock() - parse_time(batch.last_activity)
        if age <= self._ctx.stale_after:
            return []
        hours = f"{age.total_seconds() / 3600:.0f} h"
        path = export_dir / BatchProgressProjection.file_name
        detail = {"batch_id": batch.batch_id}
        if batch.host != self._ctx.host:
            return [Problem(
                STALE_BATCH_PROGRESS,
                f"batch {batch.batch_id} of session {session} was last updated "
                f"{batch.last_activity} "
                f"({hours} ago) by pid {batch.pid} on host {batch.host}",
                fixable=False, path=path, session=session, detail=detail,
                remedy=f"this machine cannot tell whether its owner on {batch.host} is alive: run "
                "`evstore doctor --fix` there, or `evstore batch start --no-resume` to abandon it",
            )]
        if self._ctx.alive(batch.pid, batch.pid_start):
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
            parsed, written_at = read_legacy_file(path)
            pending = recovery_events(store, session, parsed, written_at, current,
                                      source=str(path))
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
            f"{self._ctx.shown(path)} (session {session}) is a legacy recovery file with {what}",
            fixable=True, path=path, session=session,
            remedy="import its differences as events, then move it to "
            f"{self._ctx.show_lost_and_found()}",
        )]

    def _legacy_unreadable(self, path: Path, session: str, why: str) -> Problem:
        return Problem(
            LEGACY_RECOVERY_FILE, f"{self._ctx.shown(path)} (session {session}) is a legacy "
            f"recovery file that cannot be imported: {why}",
            fixable=False, path=path, session=session,
            remedy=f"inspect it; `evstore import {path} --session {session}` names the problem",
        )

    def _shared(self, export_dir: Path, sessions: list[str]) -> Problem:
        names = ", ".join(sessions)
        return Problem(
            EXPORT_DIR_SHARED,
            f"{self._ctx.shown(export_dir)} is the export dir of sessions {names} (once "
            "symlinks are resolved): each would write the others' files",
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
            f"{self._ctx.shown(path)} is a legacy recovery file in an export dir shared by "
            f"sessions {names}",
            fixable=False, path=path,
            remedy=f"import it into the right session: `evstore import {path} --session SESSION`",
        )]

    def _orphans(self, export_dir: Path, session: str | None) -> list[Problem]:
        """Temp files no exporter owns; `session` is the export dir's only session, if so."""
        found = list(old_temp_files(export_dir, self._ctx))
        if not found or lock_held(export_dir):
            return []  # a live exporter owns its temp files
        where = self._ctx.show_lost_and_found()
        return [Problem(
            ORPHAN_TEMP_FILE,
            f"{self._ctx.shown(path)} was left by an interrupted export "
            f"({age.total_seconds() / 60:.0f} min old, no exporter running)",
            fixable=True, path=path, session=session, remedy=f"move it to {where}",
        ) for path, age in found]


def old_temp_files(export_dir: Path, context: DoctorContext) -> Iterator[tuple[Path, timedelta]]:
    """Our temp files in `export_dir` older than the orphan age, with their ages."""
    try:
        entries = sorted(os.scandir(export_dir), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    now = context.clock()
    for entry in entries:
        if not TEMP_FILE.match(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            mtime = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
        except FileNotFoundError:
            continue  # its exporter finished meanwhile
        if now - mtime > context.orphan_age:
            yield Path(entry.path), now - mtime


def lock_held(export_dir: Path) -> bool:
    """Whether an exporter holds `export_dir`'s lock now (never creating the lock file)."""
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
