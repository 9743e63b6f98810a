"""`doctor --fix`'s repairs (docs/design.md §10): each loses nothing. Appends first, so a
file is moved only once what it held is recorded; then moves and copies, per export
directory under its exporter lock; then one export per session."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventstore.atomic import drift_name, keep_copy, move_aside
from eventstore.errors import EvstoreError, InvalidInputError
from eventstore.events import BatchAbandoned
from eventstore.logs import get_logger
from eventstore.paths import refuse_protected, resolved
from eventstore.runner import LOCK_NAME, sha256
from projections.backlog import TasksProjection
from projections.batch import BatchProgressProjection, batch_progress_defect
from projections.batch_runs import parse_time
from projections.doctor_files import STALE_REASON, old_temp_files
from projections.legacy import read_legacy_file, recovery_events
from projections.problems import (
    BATCH_PROGRESS_CORRUPT,
    LEGACY_RECOVERY_FILE,
    ORPHAN_TEMP_FILE,
    PROJECTION_DRIFT,
    PROJECTION_MISSING,
    PROJECTION_STALE,
    STALE_BATCH_PROGRESS,
    Problem,
    grouped,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from eventstore.events import Event
    from eventstore.progress import Progress
    from eventstore.store import Store
    from projections.doctor_context import DoctorContext
    from projections.legacy import Pending

log = get_logger("evstore.doctor")

# Problems whose repair ends with an export of their session.
_EXPORTED = frozenset({PROJECTION_STALE, PROJECTION_MISSING, PROJECTION_DRIFT,
                       BATCH_PROGRESS_CORRUPT, STALE_BATCH_PROGRESS, LEGACY_RECOVERY_FILE})
# Problems whose repair moves or copies a file in an export directory (under its lock).
_MOVED = frozenset({ORPHAN_TEMP_FILE, BATCH_PROGRESS_CORRUPT, PROJECTION_DRIFT,
                    LEGACY_RECOVERY_FILE})


class Repairs:
    """Repairs the fixable problems one scan found, recording on each what was done
    (`outcome`) or why it could not be (`error`)."""

    def __init__(self, context: DoctorContext) -> None:
        self._ctx = context

    def run(
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
                _failed(problem, exc)
        # 2. Moves and copies, per export directory, holding its exporter lock.
        moved = [p for p in fixable if p.code in _MOVED and p.error is None and p.path is not None]
        if moved:
            protected = _protected(store)
            for export_dir, problems in grouped(moved, lambda p: p.path.parent).items():  # type: ignore[union-attr]
                self._move_files(export_dir, problems, protected)
        # 3. Exports: every session with a file to bring back in line with the journal.
        exported = [p for p in fixable if p.code in _EXPORTED and p.session is not None]
        groups = grouped(exported, lambda p: p.session)
        parts = self._ctx.parts(store.journal.streams(), list(groups), phase)
        for session, problems in groups.items():
            _export(store, session, problems, progress=parts.get(session))

    def _import_legacy(self, store: Store, problem: Problem) -> None:
        path, session = problem.path, problem.session
        if path is None or session is None:
            return
        parsed, written_at = read_legacy_file(path)

        def decide() -> tuple[list[Event], Pending]:
            current = store.state(session, TasksProjection.name).doc
            pending = recovery_events(store, session, parsed, written_at, current,
                                      source=str(path))
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
            if self._ctx.clock() - parse_time(batch.last_activity) <= self._ctx.stale_after:
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

        timeout_s = self._ctx.lock_timeout_s
        lock = FileLock(export_dir / LOCK_NAME, timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout:
            for problem in problems:
                problem.error = (
                    f"export directory {export_dir} is locked by an exporter for over "
                    f"{timeout_s:.0f}s: run doctor again when it is done"
                )
            return
        try:
            for problem in problems:
                try:
                    self._move_one(problem, protected)
                except (OSError, InvalidInputError) as exc:
                    _failed(problem, exc)
        finally:
            lock.release()

    def _move_one(  # noqa: C901 - one branch per code
        self, problem: Problem, protected: Callable[[Path], None]
    ) -> None:
        path = problem.path
        if path is None:
            return
        lost = self._ctx.lost_and_found
        shown = self._ctx.shown
        if problem.code != PROJECTION_DRIFT:
            self._check_lost_and_found(lost)
        if problem.code == ORPHAN_TEMP_FILE:
            if not any(p == path for p, _ in old_temp_files(path.parent, self._ctx)):
                problem.outcome = "gone or renewed meanwhile: left alone"
                return
            moved = move_aside(path, lost, refuse=protected)
            problem.outcome = f"moved to {shown(moved)}"
        elif problem.code == BATCH_PROGRESS_CORRUPT:
            data = _bytes_still_there(path, problem)
            if data is None:
                return
            if batch_progress_defect(data) is None:
                problem.outcome = "valid again meanwhile: left alone"
                return
            moved = move_aside(path, lost, refuse=protected)
            problem.outcome = f"moved to {shown(moved)}"
        elif problem.code == PROJECTION_DRIFT:
            data = _bytes_still_there(path, problem)
            if data is None:
                return
            name = drift_name(path, self._ctx.clock())
            copy = keep_copy(path, path.parent, name, refuse=protected)
            if sha256(data) != problem.detail.get("sha256"):
                log.warning("doctor_drift_changed", path=str(path))  # edited again: keep that
            problem.outcome = f"kept the edited copy as {copy.name}; re-exported"
        elif problem.code == LEGACY_RECOVERY_FILE:
            moved = move_aside(path, lost, refuse=protected)
            problem.outcome = f"{problem.outcome or 'imported'}; moved to {shown(moved)}"

    def _check_lost_and_found(self, lost: Path) -> None:
        """Files go into a real directory beside the journal, never through a symlink:
        one planted there would carry an export dir's files out of the project."""
        if lost.is_symlink() or (lost.exists() and resolved(lost).parent != resolved(lost.parent)):
            raise InvalidInputError(
                f"{self._ctx.shown(lost.parent)}/{lost.name} is a symlink (to "
                f"{lost.readlink() if lost.is_symlink() else resolved(lost)}): doctor moves "
                f"files only into a real directory: remove the symlink and run `evstore doctor "
                f"--fix` again"
            )


def _export(
    store: Store, session: str, problems: list[Problem], *, progress: Progress | None = None
) -> None:
    try:
        results = {r.path: r for r in store.project(session, progress=progress)}
    except (EvstoreError, OSError) as exc:
        for problem in problems:
            if problem.error is None:
                _failed(problem, exc)
        return
    for problem in problems:
        if problem.error is None and problem.code in (PROJECTION_STALE, PROJECTION_MISSING):
            result = results.get(problem.path) if problem.path is not None else None
            problem.outcome = (f"exported ({result.action}, seq {result.seq})" if result
                               else "exported")


def _failed(problem: Problem, exc: BaseException) -> None:
    problem.error = str(exc)
    log.warning("doctor_fix_failed", code=problem.code, path=str(problem.path),
                session=problem.session, error=str(exc))


def _protected(store: Store) -> Callable[[Path], None]:
    """Raises for a copy's target that is the journal or a file a session projects to."""
    from eventstore.paths import protected_files  # noqa: PLC0415

    owners = protected_files(store)

    def refuse(target: Path) -> None:
        refuse_protected(store, [target], what="doctor --fix", protected=owners)

    return refuse


def _bytes_still_there(path: Path, problem: Problem) -> bytes | None:
    """The file's bytes now; None, with the outcome said, when it went meanwhile."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        problem.outcome = "gone meanwhile"
        return None
