"""Runs projections over a session's events and exports their files (docs/design.md §5, §6).

Incremental: each (projection, session) keeps a checkpoint holding the last applied
`seq` and the state folded up to it, so a run folds only newer events. The checkpoint
moves only after its file is safely on disk, so a failed export is simply redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import stat as stat_mode
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from eventstore.atomic import drift_name, fsync_directory, keep_copy, remove_atomic, write_atomic
from eventstore.classify import classify
from eventstore.errnos import errno_name, is_retryable
from eventstore.errors import ExportError
from eventstore.events import ErrorRecorded
from eventstore.logs import get_logger
from eventstore.persistence import ERRORS_STREAM, Journal
from eventstore.progress import Progress, reporting
from eventstore.projection import PatchingProjection, Projection, edited
from eventstore.records import Checkpoint, StoredEvent
from eventstore.retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path

    from eventstore.atomic import Content
    from eventstore.projection import Edit
log = get_logger("evstore.export")

LOCK_NAME = ".evstore.lock"

Action = Literal["written", "unchanged", "removed", "absent"]
# A checkpoint's state is saved again once this many events were folded onto it: in
# between, an export saves only its position, and the next run folds the few events
# since the snapshot (cheap) instead of rewriting the whole state (a big backlog's whole
# document) on every export.
SNAPSHOT_EVERY = 1000
# At most this many new events are patched into the last export (PatchingProjection).
PATCH_AT_MOST = 50
# From this size on a patched file is hashed on another thread while it is written; below
# it, starting and joining the thread costs more than the hash (a 100 kB file: 50 µs).
HASH_ASIDE_FROM = 4 << 20


@dataclass(frozen=True)
class ExportResult:
    session: str
    projection: str
    path: Path
    seq: int
    action: Action
    events_applied: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        """As `project --json` prints it."""
        return {"session": self.session, "projection": self.projection, "path": str(self.path),
                "seq": self.seq, "action": self.action, "events_applied": self.events_applied,
                "bytes": self.bytes}


@dataclass(frozen=True)
class _Patch:
    """The new file as the last export (`previous`, as read while its stat vouched for it)
    with `edits` applied; `previous` is not read at all when there are none."""

    previous: bytes
    edits: Sequence[Edit]
    size: int  # of the new file
    exported_sha256: str  # of the last export, which the file on disk still is
    exported_stat: str  # its stat, as recorded and as seen before and after reading it

    @property
    def changed(self) -> bool:
        return any(self.previous[start:end] != value for start, end, value in self.edits)


@dataclass
class _Rendered:
    projection: Projection
    state: Any
    seq: int
    data: bytes | None
    applied: int  # events folded in this run (from the snapshot)
    fresh: int | None = None  # of those, the ones after the checkpoint's seq (None: all)
    patch: _Patch | None = None  # instead of `data`: the last export, edited

    @property
    def new_events(self) -> int:
        return self.applied if self.fresh is None else self.fresh


def resume_point(projection: Projection, checkpoint: Checkpoint | None) -> tuple[int, Any]:
    """(seq, state) to fold on from. A checkpoint is a cache of the journal: one this
    version cannot read (written by another evstore, or damaged) is set aside and the
    projection folded from the start, never trusted half-way."""
    if checkpoint is None or checkpoint.state is None:
        return 0, None
    try:
        return checkpoint.state_at, projection.load_state(checkpoint.state)
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


def file_stat(path: Path) -> str | None:
    """`size:mtime_ns:inode:ctime_ns` of a regular file (None when there is none): equal to
    the one recorded at its export, the file was not written since, so its bytes need not
    be read to know them. Any write moves the mtime and the ctime, a replacement the inode;
    `os.utime` can put an mtime back, but it moves the ctime, which nothing but the kernel
    sets. A change of metadata alone (a chmod, a hard link) also moves the ctime: that costs
    one read of the file, never a wrong answer. What it cannot see (a change in the very
    tick of the file system's clock as the export's rename): docs/design.md §6."""
    try:
        info = path.stat()
    except OSError:
        return None
    if not stat_mode.S_ISREG(info.st_mode):
        return None
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}:{info.st_ctime_ns}"


def _size_of(stat: str) -> int:
    return int(stat.split(":", 1)[0])


def _digest_parts(digest: Any, parts: Sequence[bytes | memoryview]) -> None:
    for part in parts:
        digest.update(part)


def _hashing_aside(digest: Any, parts: Sequence[bytes | memoryview]) -> threading.Thread | None:
    """A thread feeding `parts` to `digest`, started; None when none can be had (a
    process limit): the caller hashes them itself."""
    hasher = threading.Thread(target=_digest_parts, args=(digest, parts),
                              name="evstore-export-sha256", daemon=True)
    try:
        hasher.start()
    except RuntimeError:
        return None
    return hasher


def _well_formed(edits: Sequence[Edit], size: int) -> bool:
    """Sorted, apart and within the file: what `edited` needs to make the new file."""
    at = 0
    for start, end, _ in edits:
        if not at <= start <= end <= size:
            return False
        at = end
    return True


def _kept_already(path: Path) -> Path | None:
    """A drift copy beside `path` holding exactly its bytes, if one exists."""
    wanted = file_sha256(path)
    for copy in sorted(path.parent.glob(f"{path.name}.drift-*")):
        if file_sha256(copy) == wanted:
            return copy
    return None


class ProjectionRunner:
    """Folds and exports; `write_file`/`remove_file` are the one seam for fault injection."""

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        journal: Journal,
        projections: Sequence[Projection],
        *,
        policy: RetryPolicy | None = None,
        write_file: Callable[[Path, Content], None] = write_atomic,
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

    def drifted(  # noqa: PLR0913, PLR0917 - the file's sha against all known of the projection
        self, projection: Projection, stream: str, checkpoint: Checkpoint | None,
        trusted: Checkpoint | None, on_disk: str | None, want: str | None,
    ) -> bool:
        """Whether a file with sha `on_disk` was edited outside evstore: it matches neither
        the last export, nor what would be written now, nor a recent rendering of this
        projection (another host's export, or one killed before its checkpoint): those
        are behind, not edited. Under a checkpoint the journal no longer backs (`trusted`
        None) any file but what it renders now holds what the journal lost."""
        last_sha = checkpoint.exported_sha256 if checkpoint is not None else None
        if on_disk is None or last_sha is None or on_disk == want:
            return False
        if trusted is None:
            return True  # exported from events the journal lost: the file is all that is left
        if on_disk == last_sha or on_disk in self.journal.export_digests(projection.name, stream):
            return False
        return not self.rendered_since(projection, stream, trusted, on_disk)

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
            checkpoints = {p.name: self.journal.checkpoint(p.name, stream, with_state=False)
                           for p in self.projections}
            trusted = self.trusted_checkpoints(checkpoints)
            patched = {
                p.name: found
                for p in self.projections
                if (found := self._patched(p, stream, export_dir, trusted[p.name])) is not None
            }
            for name, checkpoint in trusted.items():  # the states to fold on, read now
                if checkpoint is not None and name not in patched:
                    trusted[name] = self.journal.checkpoint(name, stream) or checkpoint
            starts = [(p, *resume_point(p, trusted[p.name])) for p in self.projections
                      if p.name not in patched]
            folded = {r.projection.name: r for r in (
                self.fold_many(stream, starts, progress=progress) if starts else [])}
            results: list[ExportResult] = []
            to_save: list[Checkpoint] = []
            try:
                for rendered in (patched.get(p.name) or folded[p.name] for p in self.projections):
                    name = rendered.projection.name
                    if name in folded:
                        self._count_fresh(rendered, stream, trusted[name])
                        rendered.data = rendered.projection.render(rendered.state)
                    result, checkpoint = self._export_one(
                        rendered, checkpoints[name], stream, export_dir, trusted=trusted[name])
                    results.append(result)
                    if checkpoint is not None:
                        to_save.append(checkpoint)
            finally:
                if to_save:
                    self.journal.save_checkpoints(to_save)
            return results

    def _patched(
        self, projection: Projection, stream: str, export_dir: Path, checkpoint: Checkpoint | None
    ) -> _Rendered | None:
        """The projection's new file made from its last export (PatchingProjection), when
        that file is untouched since, a few events are new and no snapshot is due; None
        to fold and render as always. With no new event the file is not even read."""
        path = export_dir / projection.file_name
        if (not isinstance(projection, PatchingProjection) or checkpoint is None
                or checkpoint.exported_sha256 is None or checkpoint.exported_stat is None):
            return None
        fresh = self._patchable(stream, path, checkpoint)
        if fresh is None:
            return None
        sha, stat = checkpoint.exported_sha256, checkpoint.exported_stat
        if not fresh:
            return _Rendered(projection, None, checkpoint.seq, None, 0, 0,
                             patch=_Patch(b"", (), _size_of(stat), sha, stat))
        events = list(self.journal.scan(stream, after=checkpoint.seq))
        try:
            previous = path.read_bytes()
        except OSError:
            return None  # the export proper reads it again and says what is wrong
        # Its stat again: equal, nothing wrote the file while it was read, so these are the
        # bytes exported (the export then trusts them without hashing what it replaces).
        edits = projection.edits(previous, events) if file_stat(path) == stat else None
        if edits is None or not _well_formed(edits, len(previous)):
            return None
        size = len(previous) + sum(len(value) - (end - start) for start, end, value in edits)
        seq = max([checkpoint.seq, *(e.seq for e in events)])
        return _Rendered(projection, None, seq, None, len(events), len(events),
                         patch=_Patch(previous, edits, size, sha, stat))

    def _patchable(self, stream: str, path: Path, checkpoint: Checkpoint) -> int | None:
        """How many events are new when the file at `path` may be patched: its stat is the
        one recorded at its export, few events are new and the checkpoint holds a snapshot
        that is not due again; None otherwise."""
        if checkpoint.state_seq is None or file_stat(path) != checkpoint.exported_stat:
            return None
        fresh = self.journal.count(stream, after=checkpoint.seq)
        if (
            fresh > PATCH_AT_MOST
            or self.journal.count(stream, after=checkpoint.state_at) >= SNAPSHOT_EVERY
        ):
            return None
        return fresh

    def _count_fresh(self, rendered: _Rendered, stream: str, checkpoint: Checkpoint | None) -> None:
        """Of the events folded from an older snapshot, the ones the checkpoint had not
        seen yet: what this export adds (`events_applied`)."""
        if (
            checkpoint is None
            or checkpoint.state_seq is None
            or checkpoint.state_at >= checkpoint.seq
        ):
            return
        rendered.seq = max(rendered.seq, checkpoint.seq)
        seen = self.journal.count(stream, after=checkpoint.state_at, until=checkpoint.seq)
        rendered.fresh = max(0, rendered.applied - seen)

    def trusted_checkpoints(
        self, checkpoints: dict[str, Checkpoint | None]
    ) -> dict[str, Checkpoint | None]:
        """The checkpoints whose seq still holds the event they were folded up to; None
        for the others. A journal that lost its tail (a deleted WAL, a file put back from
        a copy) may hand that seq to a different event, or not have it at all: the
        projection is then refolded from the start, never continued from a lost state."""
        ids = self._event_ids({c.seq for c in checkpoints.values() if c is not None})
        trusted: dict[str, Checkpoint | None] = {}
        for name, checkpoint in checkpoints.items():
            trusted[name] = checkpoint
            if checkpoint is None or checkpoint.seq == 0:
                continue
            found = ids.get(checkpoint.seq)
            if found is None or (checkpoint.event_id is not None and found != checkpoint.event_id):
                log.warning("checkpoint_untrusted", projection=name, session=checkpoint.stream,
                            seq=checkpoint.seq, recorded_event=checkpoint.event_id,
                            journal_event=found, action="refolded from the start")
                trusted[name] = None
        return trusted

    def _event_ids(self, seqs: Iterable[int]) -> dict[int, str | None]:
        return {seq: self.journal.event_id_at(seq) if seq > 0 else None for seq in seqs}

    def _export_one(
        self, rendered: _Rendered, checkpoint: Checkpoint | None, stream: str, export_dir: Path,
        *, trusted: Checkpoint | None,
    ) -> tuple[ExportResult, Checkpoint | None]:
        projection = rendered.projection
        path = export_dir / projection.file_name
        pending = rendered.new_events
        new_sha: str | None
        seen: str | None  # the stat that vouched for the bytes on disk
        if rendered.patch is not None:
            new_sha, size, action = self._write_patch(path, rendered.patch, pending)
            seen = rendered.patch.exported_stat
        else:
            on_disk, seen = self._on_disk(path, checkpoint, pending)
            new_sha, size, action = self._write_rendered_data(
                rendered, path, checkpoint, stream, on_disk, trusted, pending)
        # The stat recorded is the one that vouched for the bytes: taken before they were
        # read (or known by it) when they stay, after the write when they are new. A file
        # changed in between then shows a stat other than the recorded one next time.
        stat = None if new_sha is None else (seen if action == "unchanged" else file_stat(path))

        save = None
        if (trusted is None or pending or action != "unchanged"
                or trusted.exported_sha256 != new_sha or trusted.exported_stat != stat):
            snapshot = (
                trusted is None or trusted.state_seq is None or rendered.applied >= SNAPSHOT_EVERY
            )
            save = Checkpoint(
                projection=projection.name,
                stream=stream,
                seq=rendered.seq,
                state=projection.dump_state(rendered.state) if snapshot else None,
                exported_sha256=new_sha,
                exported_at=self.journal.now(),
                event_id=self._event_ids([rendered.seq])[rendered.seq],
                state_seq=rendered.seq if snapshot else None,
                exported_stat=stat,
            )
        log.info(
            "projection_exported",
            session=stream,
            projection=projection.name,
            path=str(path),
            action=action,
            seq=rendered.seq,
            events_applied=pending,
        )
        return ExportResult(
            stream, projection.name, path, rendered.seq, action, pending, size
        ), save

    def _on_disk(
        self, path: Path, checkpoint: Checkpoint | None, pending: int
    ) -> tuple[str | None, str | None]:
        """(sha256 of the file at `path` or None when there is none, its stat before it
        was read). A file whose stat is the one recorded at its export is that export: its
        recorded sha is trusted without reading it (see `file_stat`); any other is read
        and hashed, so a hand edit is always seen."""
        seen = file_stat(path)
        if (checkpoint is not None and checkpoint.exported_stat is not None
                and checkpoint.exported_sha256 is not None
                and seen == checkpoint.exported_stat):
            return checkpoint.exported_sha256, seen
        try:
            return file_sha256(path), seen
        except OSError as exc:
            # EACCES, EIO, EMFILE reading what is there: fail as a write would.
            self._fail(exc, path, attempts=1, pending=pending)

    def _write_rendered_data(  # noqa: PLR0913, PLR0917 - one export's facts, passed through
        self, rendered: _Rendered, path: Path, checkpoint: Checkpoint | None, stream: str,
        on_disk: str | None, trusted: Checkpoint | None, pending: int,
    ) -> tuple[str | None, int, Action]:
        """Write (or remove) the rendered file: (its sha256, its size, what was done)."""
        projection = rendered.projection
        if rendered.data is None:
            # The file at a projection's path in the session's export dir is the
            # projection's, whoever wrote it (a batch imported from the orchestrator's own
            # file, say): left there, a tool would act on what the journal has closed.
            if on_disk is None:
                return None, 0, "absent"
            self._with_retry(lambda: self._remove_file(path), path, pending)
            return None, 0, "removed"
        new_sha, size = sha256(rendered.data), len(rendered.data)
        if on_disk == new_sha:  # already holds exactly these bytes: leave it be
            return new_sha, size, "unchanged"
        if self.drifted(projection, stream, checkpoint, trusted, on_disk, new_sha):
            why = ("exported from events the journal no longer holds" if trusted is None
                   else "changed outside evstore")
            self._keep_drift(path, projection.name, stream, why)
        data = rendered.data
        self._with_retry(lambda: self._write_file(path, data), path, pending)
        return new_sha, size, "written"

    def _write_patch(self, path: Path, patch: _Patch, pending: int) -> tuple[str, int, Action]:
        """Write the edited last export: (its sha256, size, what was done). `_patched` saw
        the file as exported (its stat before and after reading it), so it holds no hand
        edit to keep and its sha is the one recorded: only the new bytes need hashing. For
        a big file another thread does that while they are written (sha256, the write and
        its fsync all release the GIL): it is the one cost here beside the write itself."""
        if not patch.changed:  # statuses set to what they were, or nothing new
            return patch.exported_sha256, patch.size, "unchanged"
        parts = edited(patch.previous, patch.edits)
        digest = hashlib.sha256()
        hasher = _hashing_aside(digest, parts) if patch.size >= HASH_ASIDE_FROM else None
        if hasher is None:
            _digest_parts(digest, parts)
        try:
            self._with_retry(lambda: self._write_file(path, parts), path, pending)
        finally:
            if hasher is not None:
                hasher.join()
        return digest.hexdigest(), patch.size, "written"

    def _now(self) -> datetime:
        # The journal's clock (injectable), so copies are named as the events are timed.
        return datetime.fromisoformat(self.journal.now())  # 3.11+ reads the "Z" itself

    def _keep_drift(self, path: Path, projection: str, stream: str, why: str) -> None:
        """A file edited outside evstore is about to be replaced: its bytes are someone's
        work, so they are kept beside it first (as `doctor --fix` does) and `evstore
        import <copy>` can adopt them. No copy, no overwrite: the export fails instead."""
        try:
            kept = _kept_already(path)
            copy = kept or keep_copy(path, path.parent, drift_name(path, self._now()))
        except OSError as exc:
            self._fail(exc, path, attempts=1, pending=0)
        if kept is not None:
            return  # `doctor --fix` kept these very bytes a moment ago
        log.warning("projection_drift_overwritten", path=str(path), projection=projection,
                    session=stream, kept=str(copy), reason=why,
                    hint=f"`evstore import {copy} --session {stream}` adopts the edits")
        self._record_event(lambda: ErrorRecorded(
            component="exporter", operation="drift", errno=None, error_type="coordination",
            severity="medium", recoverability="recoverable", category="external",
            retryable=False, recovery_strategy="keep_copy", recovery_success=True,
            message=f"{path}: {why}; its bytes were kept as {copy} before re-exporting",
        ))

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
            results = [
                self._result(stream, target_dir, r, "written" if r.data is not None else "absent")
                for r in rendered
            ]
        else:
            with self._exclusive(target_dir):
                results = [self._write_rendered(stream, target_dir, r) for r in rendered]
        if save_checkpoints:
            ids = self._event_ids({r.seq for r in rendered})
            self.journal.save_checkpoints(
                [
                    Checkpoint(
                        projection=r.projection.name,
                        stream=stream,
                        seq=r.seq,
                        state=r.projection.dump_state(r.state),
                        exported_sha256=sha256(r.data) if r.data is not None else None,
                        exported_at=self.journal.now(),
                        event_id=ids[r.seq],
                        exported_stat=file_stat(target_dir / r.projection.file_name)
                        if r.data is not None
                        else None,
                    )
                    for r in rendered
                ]
            )
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
            staging.rename(target_dir)
            fsync_directory(target_dir.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def _result(stream: str, target_dir: Path, r: _Rendered, action: Action) -> ExportResult:
        size = len(r.data) if r.data is not None else 0
        return ExportResult(
            stream,
            r.projection.name,
            target_dir / r.projection.file_name,
            r.seq,
            action,
            r.applied,
            size,
        )

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
    ) -> NoReturn:
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
        self,
        exc: BaseException,
        path: Path,
        retry_count: int,
        *,
        success: bool,
        started: float | None,
    ) -> None:
        # Best effort: the journal may sit on the very disk that just failed, and a
        # failure to record must never hide the failure being recorded.
        elapsed = (time.monotonic() - started) * 1000 if started is not None else None
        self._record_event(lambda: ErrorRecorded(
            component="exporter",
            operation="write" if path.suffix else "lock",
            message=f"{path}: {exc}",
            retry_count=retry_count,
            recovery_strategy="retry" if retry_count else "fail_fast",
            recovery_success=success,
            resolution_time_ms=round(elapsed, 1) if elapsed is not None else None,
            **classify(exc).fields(),
        ))

    def _record_event(self, event: Callable[[], ErrorRecorded]) -> None:
        # Built inside the try: making the event may load modules, which needs the very
        # descriptors (or memory) whose lack is being recorded.
        try:
            self.journal.append(ERRORS_STREAM, [event()])
        except Exception as record_exc:  # noqa: BLE001 - see _record
            log.warning("error_not_recorded", error=str(record_exc))
