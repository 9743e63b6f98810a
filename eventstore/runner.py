"""Runs projections over a session's events and exports their files (DESIGN §5, §6).

Incremental: each (projection, session) keeps a checkpoint holding the last applied
`seq` and the state folded up to it, so a run folds only newer events. The checkpoint
moves only after its file is safely on disk, so a failed export is simply redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from eventstore.atomic import fsync_directory, remove_atomic, write_atomic
from eventstore.classify import classify
from eventstore.errnos import errno_name, is_retryable
from eventstore.errors import ExportError
from eventstore.events import ErrorRecorded
from eventstore.journal import Checkpoint, SQLiteJournal, StoredEvent
from eventstore.logs import get_logger
from eventstore.progress import Progress, reporting
from eventstore.projection import Projection
from eventstore.retry import RetryPolicy

log = get_logger("evstore.export")

ERRORS_STREAM = "_errors"  # cannot collide: session ids start with a letter or digit
LOCK_NAME = ".evstore.lock"

Action = Literal["written", "unchanged", "removed", "absent"]


@dataclass(frozen=True)
class ExportResult:
    session: str
    projection: str
    path: Path
    seq: int
    action: Action
    events_applied: int
    bytes: int


@dataclass
class _Rendered:
    projection: Projection
    state: Any
    seq: int
    data: bytes | None
    applied: int


def resume_point(projection: Projection, checkpoint: Checkpoint | None) -> tuple[int, Any]:
    """(seq, state) to fold on from. A checkpoint is a cache of the journal: one this
    version cannot read (written by another evstore, or damaged) is set aside and the
    projection folded from the start, never trusted half-way."""
    if checkpoint is None:
        return 0, None
    try:
        return checkpoint.seq, projection.load_state(checkpoint.state)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("checkpoint_discarded", projection=projection.name, session=checkpoint.stream,
                    seq=checkpoint.seq, error=f"{type(exc).__name__}: {exc}")
        return 0, None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str | None:
    try:
        return sha256(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError):
        return None


class ProjectionRunner:
    """Folds and exports; `write_file`/`remove_file` are the one seam for fault injection."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        journal: SQLiteJournal,
        projections: Sequence[Projection],
        *,
        policy: RetryPolicy | None = None,
        write_file: Callable[[Path, bytes], None] = write_atomic,
        remove_file: Callable[[Path], bool] = remove_atomic,
        lock_timeout_s: float = 120.0,
    ) -> None:
        self.journal = journal
        self.projections = tuple(projections)
        self.policy = policy or RetryPolicy()
        self._write_file = write_file
        self._remove_file = remove_file
        self._lock_timeout_s = lock_timeout_s

    # --- folding ------------------------------------------------------------------------

    def fold(
        self,
        projection: Projection,
        stream: str,
        *,
        state: Any = None,
        after: int = 0,
        until: int | None = None,
    ) -> tuple[Any, int, int]:
        """Fold `stream`'s events after `after` into `state`: (state, last seq, count)."""
        (folded,) = self.fold_many(stream, [(projection, after, state)], until=until)
        return folded.state, folded.seq, folded.applied

    def fold_many(
        self,
        stream: str,
        starts: Sequence[tuple[Projection, int, Any]],
        *,
        until: int | None = None,
        progress: Progress | None = None,
    ) -> list[_Rendered]:
        """Fold several projections in one pass over the journal, each from its own
        position and state (None: its initial state). `progress(events folded, events to
        fold)` is called every thousand events and at the end."""
        states = [state if state is not None else p.initial() for p, _, state in starts]
        applied = [0] * len(starts)
        first = min(position for _, position, _ in starts)
        last = first
        events: Iterable[StoredEvent] = self.journal.scan(stream, after=first, until=until)
        if progress is not None:
            total = self.journal.count(stream, after=first, until=until)
            events = reporting(events, progress, total)
        if all(position == first for _, position, _ in starts):
            # Every projection starts at the same place (a rebuild, a single projection):
            # no per-event position checks. This is the replay loop.
            folds = [projection.fold for projection, _, _ in starts]
            count = 0
            if len(folds) == 1:
                fold, state = folds[0], states[0]
                for event in events:
                    state = fold(state, event)
                    count += 1
                    last = event.seq
                states[0] = state
            else:
                for event in events:
                    for index, fold in enumerate(folds):
                        states[index] = fold(states[index], event)
                    count += 1
                    last = event.seq
            applied = [count] * len(starts)
        else:
            for event in events:
                for index, (projection, position, _) in enumerate(starts):
                    if event.seq > position:
                        states[index] = projection.fold(states[index], event)
                        applied[index] += 1
                last = event.seq
        return [
            _Rendered(projection, states[index], max(last, position), None, applied[index])
            for index, (projection, position, _) in enumerate(starts)
        ]

    def rendered_since(
        self, projection: Projection, stream: str, checkpoint: Checkpoint | None, sha: str
    ) -> bool:
        """Whether the projection rendered bytes with this `sha` at some seq after the
        checkpoint: the trace of an export killed after its rename and before its
        checkpoint was saved. Rare, so it refolds event by event rather than record the
        sha of every export before its rename."""
        position, state = resume_point(projection, checkpoint)
        if state is None:
            state = projection.initial()
        for event in self.journal.scan(stream, after=position):
            state = projection.fold(state, event)
            data = projection.render(state)
            if data is not None and sha256(data) == sha:
                return True
        return False

    # --- incremental export -------------------------------------------------------------

    def export(
        self, stream: str, export_dir: Path, *, progress: Progress | None = None
    ) -> list[ExportResult]:
        """Bring every projection file of `stream` in `export_dir` up to the journal head.

        Checkpoints of the files written are saved together at the end, in one
        transaction, even when a later file fails: each moves only once its file is on disk.
        `progress` follows the fold (see `fold_many`).
        """
        with self._exclusive(export_dir):
            checkpoints = {p.name: self.journal.checkpoint(p.name, stream) for p in self.projections}
            starts = [(p, *resume_point(p, checkpoints[p.name])) for p in self.projections]
            results: list[ExportResult] = []
            to_save: list[Checkpoint] = []
            try:
                for rendered in self.fold_many(stream, starts, progress=progress):
                    rendered.data = rendered.projection.render(rendered.state)
                    result, checkpoint = self._export_one(rendered, checkpoints[rendered.projection.name], stream, export_dir)
                    results.append(result)
                    if checkpoint is not None:
                        to_save.append(checkpoint)
            finally:
                if to_save:
                    self.journal.save_checkpoints(to_save)
            return results

    def _export_one(
        self, rendered: _Rendered, checkpoint: Checkpoint | None, stream: str, export_dir: Path
    ) -> tuple[ExportResult, Checkpoint | None]:
        projection = rendered.projection
        path = export_dir / projection.file_name
        last_sha = checkpoint.exported_sha256 if checkpoint else None
        try:
            on_disk = file_sha256(path)
        except OSError as exc:  # EACCES, EIO, EMFILE reading what is there: fail as a write would
            self._fail(exc, path, attempts=1, pending=rendered.applied)

        if rendered.data is None:
            action: Action = "absent"
            # The file at a projection's path in the session's export dir is the
            # projection's, whoever wrote it (a batch imported from the orchestrator's own
            # file, say): left there, a tool would act on what the journal has closed.
            if on_disk is not None:
                self._with_retry(lambda: self._remove_file(path), path, rendered.applied)
                action = "removed"
            new_sha, size = None, 0
        else:
            new_sha, size = sha256(rendered.data), len(rendered.data)
            if on_disk == new_sha:  # already holds exactly these bytes: leave it be
                action = "unchanged"
            else:
                if (on_disk is not None and last_sha is not None and on_disk not in (last_sha, new_sha)
                        and not self.rendered_since(projection, stream, checkpoint, on_disk)):
                    log.warning("projection_drift_overwritten", path=str(path), projection=projection.name)
                data = rendered.data
                self._with_retry(lambda: self._write_file(path, data), path, rendered.applied)
                action = "written"

        save = None
        if checkpoint is None or rendered.applied or action != "unchanged" or checkpoint.exported_sha256 != new_sha:
            save = Checkpoint(
                projection=projection.name,
                stream=stream,
                seq=rendered.seq,
                state=projection.dump_state(rendered.state),
                exported_sha256=new_sha,
                exported_at=self.journal.now(),
            )
        log.info(
            "projection_exported",
            session=stream,
            projection=projection.name,
            path=str(path),
            action=action,
            seq=rendered.seq,
            events_applied=rendered.applied,
        )
        return ExportResult(stream, projection.name, path, rendered.seq, action, rendered.applied, size), save

    # --- full rebuild ---------------------------------------------------------------------

    def rebuild(
        self,
        stream: str,
        target_dir: Path,
        *,
        until: int | None = None,
        save_checkpoints: bool = False,
        progress: Progress | None = None,
    ) -> list[ExportResult]:
        """Fold from nothing (one pass for all projections) and write every file; nothing
        is written unless all render. `progress` follows the fold (see `fold_many`).

        A target that does not exist yet is built in a sibling temp directory and renamed
        into place; an existing one (it may hold other files) gets each file atomically.
        """
        rendered = self.fold_many(stream, [(p, 0, None) for p in self.projections], until=until,
                                  progress=progress)
        for r in rendered:
            r.data = r.projection.render(r.state)
        if not target_dir.exists():
            self._build_and_swap(target_dir, rendered)
            results = [self._result(stream, target_dir, r, "written" if r.data is not None else "absent") for r in rendered]
        else:
            with self._exclusive(target_dir):
                results = [self._write_rendered(stream, target_dir, r) for r in rendered]
        if save_checkpoints:
            self.journal.save_checkpoints([
                Checkpoint(
                    projection=r.projection.name,
                    stream=stream,
                    seq=r.seq,
                    state=r.projection.dump_state(r.state),
                    exported_sha256=sha256(r.data) if r.data is not None else None,
                    exported_at=self.journal.now(),
                )
                for r in rendered
            ])
        return results

    def _write_rendered(self, stream: str, target_dir: Path, r: _Rendered) -> ExportResult:
        path = target_dir / r.projection.file_name
        if r.data is None:
            if path.exists():
                self._with_retry(lambda: self._remove_file(path), path, r.applied)
                return self._result(stream, target_dir, r, "removed")
            return self._result(stream, target_dir, r, "absent")
        data = r.data
        self._with_retry(lambda: self._write_file(path, data), path, r.applied)
        return self._result(stream, target_dir, r, "written")

    def _build_and_swap(self, target_dir: Path, rendered: Iterable[_Rendered]) -> None:
        target_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = target_dir.with_name(f".{target_dir.name}.{secrets.token_hex(8)}.tmp")
        staging.mkdir()
        try:
            for r in rendered:
                if r.data is not None:
                    data = r.data
                    path = staging / r.projection.file_name
                    self._with_retry(lambda: self._write_file(path, data), path, r.applied)  # noqa: B023 - called at once
            os.rename(staging, target_dir)
            fsync_directory(target_dir.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def _result(stream: str, target_dir: Path, r: _Rendered, action: Action) -> ExportResult:
        size = len(r.data) if r.data is not None else 0
        return ExportResult(stream, r.projection.name, target_dir / r.projection.file_name, r.seq, action, r.applied, size)

    # --- locking and retry ----------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self, export_dir: Path) -> Any:
        """One exporter per directory, across processes: the second waits, then finds the
        checkpoint already moved and has nothing to write."""
        from filelock import FileLock, Timeout  # noqa: PLC0415 - only exports need it

        try:
            export_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(export_dir / LOCK_NAME, timeout=self._lock_timeout_s)
            lock.acquire()
        except Timeout:
            raise ExportError(
                f"export directory {export_dir} is locked by another exporter for over "
                f"{self._lock_timeout_s:.0f}s: wait for it, or check for a hung evstore",
                path=str(export_dir), errno_code=None, attempts=0,
            ) from None
        except OSError as exc:
            self._fail(exc, export_dir, attempts=1, pending=0)
        try:
            yield
        finally:
            lock.release()

    def _with_retry(self, operation: Callable[[], object], path: Path, pending: int) -> None:
        started = time.monotonic()
        retries: list[BaseException] = []

        def on_retry(attempt: int, delay_s: float, exc: BaseException) -> None:
            retries.append(exc)
            log.warning(
                "export_retry",
                attempt=attempt,
                max_attempts=self.policy.max_attempts,
                delay_ms=round(delay_s * 1000, 1),
                errno=errno_name(exc),
                error=str(exc),
                path=str(path),
                pending_events=pending,
            )

        try:
            self.policy.call(operation, retryable=is_retryable, on_retry=on_retry)
        except OSError as exc:
            self._fail(exc, path, attempts=len(retries) + 1, pending=pending, started=started)
        if retries:
            self._record(retries[-1], path, len(retries), success=True, started=started)

    def _fail(
        self, exc: OSError, path: Path, *, attempts: int, pending: int, started: float | None = None
    ) -> None:
        name = errno_name(exc)
        log.error(
            "export_failed",
            attempts=attempts,
            errno=name,
            error=str(exc),
            path=str(path),
            pending_events=pending,
        )
        self._record(exc, path, attempts - 1, success=False, started=started)
        reason = exc.strerror or str(exc)
        raise ExportError(
            f"cannot write {path}: {reason} ({name}) after {attempts} attempt"
            f"{'s' if attempts != 1 else ''}; the journal is intact: fix the cause and run"
            " `evstore project` again",
            path=str(path), errno_code=exc.errno, attempts=attempts,
        ) from exc

    def _record(
        self, exc: BaseException, path: Path, retry_count: int, *, success: bool, started: float | None
    ) -> None:
        # Best effort: the journal may sit on the very disk that just failed, and a
        # failure to record must never hide the failure being recorded.
        elapsed = (time.monotonic() - started) * 1000 if started is not None else None
        try:
            self.journal.append(
                ERRORS_STREAM,
                [
                    ErrorRecorded(
                        component="exporter",
                        operation="write" if path.suffix else "lock",
                        message=f"{path}: {exc}",
                        retry_count=retry_count,
                        recovery_strategy="retry" if retry_count else "fail_fast",
                        recovery_success=success,
                        resolution_time_ms=round(elapsed, 1) if elapsed is not None else None,
                        **classify(exc).fields(),  # type: ignore[arg-type]
                    )
                ],
            )
        except Exception as record_exc:  # noqa: BLE001 - see above
            log.warning("error_not_recorded", error=str(record_exc))
