"""The library's front door: a journal, the projections run over it, and where files go."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import orjson

from eventstore.backends import open_journal
from eventstore.errors import (
    ExportError,
    InvalidInputError,
    ProjectFailedError,
    UnknownSessionError,
)
from eventstore.events import Event, SessionCreated, SessionMoved, parse_event, validate_session_id
from eventstore.locate import (
    find_project_root,
    project_root,
)
from eventstore.logs import get_logger
from eventstore.lookups import Marks, lookup_writes, marks_of, validate_by_lookup
from eventstore.paths import (
    export_dir_owner,
    foreign_owner,
    refuse_protected,
    resolved,
    shared_export_dirs,
)
from eventstore.persistence import ERRORS_STREAM, Durability, Journal
from eventstore.progress import Progress, reporting, shares, span
from eventstore.records import (
    _NO_META,
    CURRENT_SCHEMA,
    AppendResult,
    LookupWrite,
    StoredEvent,
    new_event_id,
    utc_now,
)
from eventstore.retry import RetryPolicy
from eventstore.runner import ExportResult, ProjectionRunner, resume_point
from eventstore.session import Session
from eventstore.staging import StagedEvents

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from datetime import datetime

    from eventstore.atomic import Content
    from eventstore.projection import Projection
    from eventstore.selection import Selection, WorkItem

log = get_logger("evstore.store")
# What a `decide()` callback hands back beside its events (append_decided returns it).
_Decided = TypeVar("_Decided")


class Store:
    """Append events, keep live state for validation, and export projections.

    >>> from eventstore import Store
    >>> from projections import DEFAULT
    >>> store = Store.open(".evstore/journal.db", projections=DEFAULT)  # doctest: +SKIP
    """

    def __init__(
        self,
        journal: Journal,
        *,
        projections: Sequence[Projection] = (),
        root: Path | None = None,
        policy: RetryPolicy | None = None,
        write_file: Callable[[Path, Content], None] | None = None,
    ) -> None:
        self.journal = journal
        self.projections = tuple(projections)
        self.root = root or _default_root(journal)
        kwargs: dict[str, Any] = {"policy": policy}
        if write_file is not None:
            kwargs["write_file"] = write_file
        self.runner = ProjectionRunner(journal, self.projections, **kwargs)
        self._live: dict[tuple[str, str], tuple[int, Any]] = {}
        self._marks: Marks = {}  # lookup versions this store wrote (eventstore/lookups.py)
        self._live_lock = threading.RLock()
        # Added to the meta of every event this store appends (who is behind this process:
        # the MCP server puts its client's name and version here); per-call meta wins.
        self.meta: dict[str, Any] = {}

    @classmethod
    def open(  # noqa: PLR0913 - keyword-only knobs with defaults
        cls,
        db: str | os.PathLike[str] | None = None,
        *,
        projections: Sequence[Projection] = (),
        create: bool = False,
        read_only: bool = False,
        durability: Durability = "full",
        flush_retries: int = 3,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
        tool: str = "evstore-lib",
    ) -> Store:
        """Open the journal at `db` (default: `EVSTORE_DB`, else `.evstore/journal.db` found
        like git finds .git). A `postgresql://` (or `postgres://`) URL opens a PostgreSQL
        journal (needs `pip install 'evstore[postgres]'`).

        `read_only`: an SQLite journal is opened read-only (also on read-only media) and
        never migrated; writing through it raises JournalWriteError."""
        journal = open_journal(db, create=create, read_only=read_only, durability=durability,
                               clock=clock, tool=tool)
        policy = (RetryPolicy(retries=flush_retries, sleep=sleep) if sleep
                  else RetryPolicy(retries=flush_retries))
        return cls(journal, projections=projections, policy=policy)

    def close(self) -> None:
        self.journal.close()

    def reopen(self) -> Path | None:
        """Open the journal at its path again (it was replaced under us) and forget every
        state folded from the old one; the file keeping events only the old one had, if
        any (see Journal.reopen)."""
        rescued = self.journal.reopen()
        with self._live_lock:
            self._live.clear()
            self._marks.clear()
        return rescued

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sessions -------------------------------------------------------------------------

    def sessions(self) -> list[str]:
        return [s.stream for s in self.journal.streams() if s.stream != ERRORS_STREAM]

    def has_session(self, session: str) -> bool:
        return self.journal.stream_version(validate_session_id(session)) > 0

    def create_session(self, session: str, export_dir: str | os.PathLike[str]) -> AppendResult:
        return self.append(
            session,
            [SessionCreated(export_dir=self.normalize_export_dir(export_dir))],
            expected_version=0,
        )

    def session(self, session: str) -> Session:
        """A handle that batches status updates in memory until `flush_updates()`."""
        self._require(session)
        return Session(self, session)

    def move_session(self, session: str, export_dir: str | os.PathLike[str]) -> AppendResult:
        """Export `session` to `export_dir` from now on (a SessionMoved event). Refused
        (InvalidInputError) when it exports there already or another session owns it.
        Files in the old directory are left as they are: evstore never deletes what a
        tool may still be reading; the next `project` writes the new directory."""
        self._require(session)
        target = self.normalize_export_dir(export_dir)
        if resolved(self._under_root(target)) == resolved(self.export_dir(session)):
            raise InvalidInputError(
                f"session {session} already exports to {self.export_dir(session)}: "
                "name another directory"
            )
        return self.append(session, [SessionMoved(export_dir=target)])

    def export_dir(self, session: str) -> Path:
        return self._under_root(self._recorded_export_dir(session))

    def export_dirs(self) -> dict[str, Path]:
        """Every session's export dir, by session id (one index read)."""
        return {name: self._under_root(d) for name, d in self.journal.export_dirs().items()}

    def _recorded_export_dir(self, session: str) -> str:
        """The export dir as recorded: the latest SessionMoved's, else SessionCreated's
        (an index read, since every export asks)."""
        recorded = self.journal.export_dir_of(validate_session_id(session))
        if recorded is None:
            raise UnknownSessionError(f"unknown session {session!r}: import a backlog first")
        return recorded

    def _under_root(self, export_dir: str) -> Path:
        # Relative export dirs belong to the project, not to whoever runs the command.
        path = Path(export_dir)
        return path if path.is_absolute() else self.root / path

    def confined(self, export_dir: str | os.PathLike[str], *, source: str) -> Path:
        """`export_dir` (relative to the project root) if it stays inside the root once
        `..` and symlinks are resolved; InvalidInputError naming `source` otherwise.

        For paths that come from data (a file's fields), not from the user's own command
        line: data must not choose to write outside the project."""
        path = Path(export_dir)
        path = path if path.is_absolute() else self.root / path
        root = self.root.resolve()
        if not path.resolve().is_relative_to(root):
            raise InvalidInputError(
                f"{source}: {str(export_dir)!r} is outside the project root {root}: pass "
                "--export-dir"
            )
        return path

    def normalize_export_dir(self, export_dir: str | os.PathLike[str]) -> str:
        path = Path(export_dir)
        if not path.is_absolute():
            path = Path.cwd() / path
        path = Path(os.path.normpath(path))
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def require_session(self, session: str) -> None:
        """Raise UnknownSessionError (exit 2, naming the known ones) unless it exists."""
        self._require(session)

    def _require(self, session: str) -> None:
        if not self.has_session(session):
            known = ", ".join(self.sessions()) or "none yet"
            raise UnknownSessionError(f"unknown session {session!r} (known: {known})")

    # --- appending --------------------------------------------------------------------------

    def append(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        session: str,
        events: Sequence[Event],
        *,
        expected_version: int | None = None,
        event_ids: Sequence[str | None] | None = None,
        correlation_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> AppendResult:
        """Validate `events` against the session's live state, then append them atomically.

        `meta` adds fields to the events' meta (who asked: an owner, an agent's client);
        the journal's own fields (pid, host, user, tool) are always there.

        `progress(done, total)`, when given, is called every thousand events and at the
        end, out of `total = 3 * len(events)`: each event is serialized, validated and
        written."""
        return self._append(session, events, expected_version=expected_version,
                            event_ids=event_ids, correlation_id=correlation_id,
                            extra_meta=meta, progress=progress)

    def append_decided(
        self,
        session: str,
        decide: Callable[[], tuple[Sequence[Event], _Decided]],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> tuple[_Decided, AppendResult | None]:
        """Decide events from the session's current state and append them, both inside one
        write transaction: no other writer can change the state in between, so two
        processes can never act on the same state (hand out one item twice, create the
        same fix twice). `decide()` reads state through `self.state(...)` and returns
        (events, result); it returns ([], result) to append nothing.
        """
        box: dict[str, _Decided] = {}

        def produce() -> Sequence[Event]:
            events, box["result"] = decide()
            return events

        appended = self._append(validate_session_id(session), (), decide=produce, extra_meta=meta)
        return box["result"], appended if appended.count else None

    def _append(
        self,
        session: str,
        events: Sequence[Event],
        *,
        decide: Callable[[], Sequence[Event]] | None = None,
        progress: Progress | None = None,
        **options: Any,
    ) -> AppendResult:
        validate_session_id(session)
        if self.meta:
            options["extra_meta"] = {**self.meta, **(options.get("extra_meta") or {})}
        key_streams = [(p, (p.name, session)) for p in self.projections]
        options["progress"] = _around_validation(progress, len(events))

        made: list[LookupWrite] = []

        def check(
            head: int, pending: list[StoredEvent], chosen: Sequence[Event]
        ) -> list[LookupWrite]:
            made[:] = self._validate(session, head, pending, chosen, progress)
            return made

        with self._live_lock:
            try:
                result = self.journal.append(session, events, check=check, decide=decide,
                                             **options)
            except BaseException:
                for _, key in key_streams:
                    self._live.pop(key, None)
                raise
            # Only once committed: a mark remembered from a rolled-back append would vouch
            # for entries the journal never got.
            self._marks.update(marks_of(made, result.last_version))
            return result

    def _validate(
        self, session: str, head: int, pending: list[StoredEvent], chosen: Sequence[Event],
        progress: Progress | None,
    ) -> list[LookupWrite]:
        """Refuse `chosen` (to be stored as `pending`) unless valid, inside the append's
        transaction; fold them into the live states; the lookup writes that go with them."""
        if pending[0].version == 1 and not isinstance(chosen[0], SessionCreated):
            self._require(session)  # a new stream must begin with SessionCreated
        self._check_placement(session, chosen, pending)
        key_streams = [(p, (p.name, session)) for p in self.projections]
        if not all(key in self._live for _, key in key_streams):
            # States not in memory (a fresh process): a few lookup entries may do.
            writes = validate_by_lookup(self.journal, self.projections, session, chosen)
            if writes is not None:
                return writes
        states = self._catch_up_all(session, head=head)
        for index, (projection, key) in enumerate(key_streams):
            state = states[projection.name]
            pairs = _validating(chosen, pending, progress, index, len(key_streams))
            try:
                for event, stored in pairs:
                    projection.validate(state, event, session)
                    state = projection.fold(state, stored)
            except BaseException:
                self._live.pop(key, None)  # partly folded: rebuild on next use
                raise
            self._live[key] = (pending[-1].seq, state)
            states[projection.name] = state
        return lookup_writes(self.journal, self.projections, session, chosen=chosen,
                             pending=pending, states=states, marks=self._marks)

    def _check_placement(
        self, session: str, chosen: Sequence[Event], pending: list[StoredEvent]
    ) -> None:
        """A session is created once, and only where no other session exports."""
        for event, stored in zip(chosen, pending, strict=True):
            if isinstance(event, SessionCreated) and stored.version != 1:
                raise InvalidInputError(f"session {session!r} exists already")
            if isinstance(event, (SessionCreated, SessionMoved)):
                self._claim_export_dir(session, event.export_dir)

    def _claim_export_dir(self, session: str, export_dir: str) -> None:
        """Refuse an export dir another session owns. Runs inside the append's write
        transaction, so two sessions created at once cannot both claim one directory."""
        path = self._under_root(export_dir)
        remedy = ("choose another DIR" if self.has_session(session)
                  else "pass --export-dir with a directory of its own")
        owner = export_dir_owner(self, path, claimant=session)
        if owner is not None:
            raise InvalidInputError(
                f"export dir {path} of session {session} belongs to session {owner}: {remedy} "
                f"(or move {owner} with `evstore session move {owner} DIR`)"
            )
        foreign = foreign_owner(self, path)
        if foreign is not None:
            journal, other = foreign
            raise InvalidInputError(
                f"export dir {path} of session {session} belongs to session {other} of the "
                f"journal {journal}: {remedy}"
            )

    # --- taking work (eventstore/work.py) ------------------------------------------------------

    def next_item(  # noqa: PLR0913 - keyword-only options of one operation
        self,
        session: str,
        *,
        claim: bool = False,
        pending: Sequence[str] = ("Planned",),
        level: str = "any",
        owner: str | None = None,
        reason: str | None = None,
    ) -> Selection:
        """The next item an agent should take (pre-order, first pending, dependencies
        Complete); with `claim`, marked Implementing in the same write transaction."""
        from eventstore import work  # noqa: PLC0415 - not on the append path

        return work.next_item(self, session, claim=claim, pending=pending, level=level,
                              owner=owner, reason=reason)

    def release(self, session: str, item_id: str, *, reason: str, owner: str | None = None) -> int:
        """Put a claimed item back to Planned, recorded with `reason`; returns its seq."""
        from eventstore import work  # noqa: PLC0415

        return work.release(self, session, item_id, reason=reason, owner=owner)

    def ready(
        self, session: str, *, pending: Sequence[str] = ("Planned",), level: str = "any"
    ) -> list[WorkItem]:
        """Every item `next_item` could return, in order."""
        from eventstore import work  # noqa: PLC0415

        return work.ready(self, session, pending=pending, level=level)

    def blocked(
        self, session: str, *, pending: Sequence[str] = ("Planned",), level: str = "any"
    ) -> list[WorkItem]:
        """Every pending item held back by dependencies not yet Complete."""
        from eventstore import work  # noqa: PLC0415

        return work.blocked(self, session, pending=pending, level=level)

    def stage(
        self,
        session: str,
        pairs: Iterable[tuple[Event, str | None]],
        *,
        progress: Progress | None = None,
    ) -> StagedEvents:
        """Serialize and validate (event, event id or None) pairs, read one at a time, into
        StagedEvents for `append_staged`, without the write lock: memory stays flat
        however many there are, and other writers go on meanwhile. They are validated
        against the session as it is here; `append_staged` validates them again, under
        the lock, only if the session has had events appended since.

        `progress(done, None)` every thousand pairs and at the end (the total is not
        known until the pairs run out). Sessions are not created this way."""
        validate_session_id(session)
        pairs = iter(pairs)
        first = next(pairs, None)  # a bad first line says more than an unknown session
        self._require(session)
        if first is not None:
            pairs = itertools.chain((first,), pairs)
        staged = StagedEvents(session)
        try:
            # The version before the states: they are at least there, so a commit to the
            # session in between shows as a moved version, and append_staged validates again.
            head = self.journal.head()
            staged.validated_version = self.journal.stream_version(session)
            validator = self._validator(session, head, staged.validated_version)
            given: set[str] = set()
            for event, event_id in pairs if progress is None else reporting(pairs, progress, None):
                if event_id is not None:
                    _once(event_id, given)
                payload = event.model_dump(mode="json")
                validator.accept(event, payload)
                staged.add(event.type, orjson.dumps(payload),
                           new_event_id() if event_id is None else event_id,
                           given=event_id is not None)
        except BaseException:
            staged.close()
            raise
        return staged

    def append_staged(
        self,
        staged: StagedEvents,
        *,
        expected_version: int | None = None,
        correlation_id: str | None = None,
        progress: Progress | None = None,
    ) -> AppendResult:
        """Append what `stage` prepared, in one transaction: the write lock is held for the
        version check and the insert (and a second validation if another writer appended
        to the session since `stage`). `progress(rows written, rows)` every thousand rows
        and at the end."""
        session = staged.stream
        journal = self.journal

        def revalidate(head: int) -> None:
            validator = self._validator(session, head, journal.stream_version(session))
            for event, payload in _models(staged):
                validator.accept(event, payload)

        with self._live_lock:
            return journal.append_staged(staged, expected_version=expected_version,
                                         correlation_id=correlation_id, revalidate=revalidate,
                                         progress=progress, extra_meta=self.meta or None)

    def _validator(self, session: str, head: int, version: int) -> _Validator:
        """A validator from private copies of the session's states at `head` (or later):
        folds change states in place, and events not yet appended must not reach the live
        cache, nor a state `state()` handed out."""
        with self._live_lock:
            live = self._catch_up_all(session, head=head)
            states = {p.name: p.load_state(p.dump_state(live[p.name]))
                      for p in self.projections}
        return _Validator(self.projections, states, session=session, head=head,
                          version=version, recorded_at=self.journal.now())

    # --- reading state ------------------------------------------------------------------------

    def state(self, session: str, projection: str) -> Any:
        """The projection's state at the journal head (not exported). Treat it as read-only."""
        self._require(session)
        found = next((p for p in self.projections if p.name == projection), None)
        if found is None:
            raise InvalidInputError(f"unknown projection {projection!r}")
        with self._live_lock:
            # Every projection, in one read of the journal: the next append validates
            # against all of them, and a second read of a big session (its import is one
            # event of the whole document) would decode it all again.
            return self._catch_up_all(session)[found.name]

    def _catch_up_all(
        self,
        session: str,
        projections: Sequence[Projection] | None = None,
        *,
        head: int | None = None,
    ) -> dict[str, Any]:
        """Bring the live states of `projections` (default: all) to the head, reading the
        journal once for all of them from the oldest of their positions (not at all when
        the caller knows the head and every state is there already)."""
        chosen = self.projections if projections is None else projections
        if not chosen:
            return {}
        positions: dict[str, tuple[int, Any]] = {}
        for projection in chosen:
            cached = self._live.get((projection.name, session))
            if cached is None:
                checkpoint = self.journal.checkpoint(projection.name, session)
                trusted = self.runner.trusted_checkpoints({projection.name: checkpoint})
                seq, state = resume_point(projection, trusted[projection.name])
                cached = (seq, state if state is not None else projection.initial())
            positions[projection.name] = cached
        if head is not None and all(seq >= head for seq, _ in positions.values()):
            return {name: state for name, (_, state) in positions.items()}
        folded = self.runner.fold_many(
            session, [(p, positions[p.name][0], positions[p.name][1]) for p in chosen]
        )
        states = {}
        for item in folded:
            self._live[(item.projection.name, session)] = (item.seq, item.state)
            states[item.projection.name] = item.state
        return states

    # --- exporting ----------------------------------------------------------------------------

    def project(
        self, session: str | None = None, *, progress: Progress | None = None
    ) -> list[ExportResult]:
        """Export every projection of `session` (default: all sessions) up to the head.

        `progress(done, total)`, when given: `total` is the sessions' events, and each
        session's share fills as its new events are folded (every thousand, and at its
        end).

        Every session is exported even when one fails; ProjectFailedError then carries
        the results of the others and each failure (one session asked: its ExportError)."""
        sessions = [session] if session is not None else self.sessions()
        parts: list[Progress | None] = [None] * len(sessions)
        if progress is not None:
            parts = [*shares(progress, [self.journal.stream_version(name) for name in sessions])]
        for name in sessions:
            self._require(name)
        shared = self.sharing()
        results: list[ExportResult] = []
        failures: dict[str, ExportError] = {}
        for name, part in zip(sessions, parts, strict=True):
            try:
                target = self._checked_export_dir(name, shared)
                results.extend(self.runner.export(name, target, progress=part))
            except ExportError as exc:
                failures[name] = exc
        if session is not None and failures:
            raise failures[session]
        if failures:
            raise ProjectFailedError(results, failures)
        return results

    def sharing(self) -> dict[str, list[str]]:
        """Each session whose export dir another session also claims, with the others."""
        sharing: dict[str, list[str]] = {}
        for names in shared_export_dirs(self).values():
            for name in names:
                sharing[name] = [other for other in names if other != name]
        return sharing

    def _checked_export_dir(self, session: str, shared: dict[str, list[str]] | None = None) -> Path:
        """The export dir, refused if a project-relative one now leads outside the project
        (a symlink planted since the session was created) or is also another session's
        (two sessions would write each other's files)."""
        recorded = self._recorded_export_dir(session)
        path = self._under_root(recorded)
        move = f"`evstore session move {session} DIR`"
        if not Path(recorded).is_absolute():
            try:
                self.confined(recorded, source=f"export dir of session {session}")
            except InvalidInputError:
                raise ExportError(
                    f"export dir {recorded!r} of session {session} leads outside the project "
                    f"root {self.root.resolve()} (a symlink?): session {session} not exported; "
                    f"remove the symlink, or give it a directory of its own with {move}",
                    path=str(path), errno_code=None, attempts=0,
                ) from None
        others = (shared if shared is not None else self.sharing()).get(session)
        if others:
            raise ExportError(
                f"export dir {path} of session {session} is also the export dir of session(s) "
                f"{', '.join(others)}: session {session} not exported; give one of them a "
                f"directory of its own with {move}",
                path=str(path), errno_code=None, attempts=0,
            )
        return path

    def replay(
        self,
        session: str | None = None,
        *,
        until: int | None = None,
        out: str | os.PathLike[str] | None = None,
        progress: Progress | None = None,
    ) -> list[ExportResult]:
        """Rebuild files from nothing: into the export dirs (resetting checkpoints), or into
        `out` (as `out/<session>/` for several sessions, `out/` for one named session).

        `progress(events folded, events to fold)`, when given, is called every thousand
        events and at the end of each session."""
        if until is not None and out is None:
            raise InvalidInputError(
                "replay --until needs --out DIR: an earlier state must not overwrite the live files"
            )
        sessions = [session] if session is not None else self.sessions()
        parts: list[Progress | None] = [None] * len(sessions)
        if progress is not None:
            parts = [
                *shares(progress, [self.journal.count(name, until=until) for name in sessions])
            ]
        for name in sessions:
            self._require(name)
        if out is None:
            shared = self.sharing()
            targets = [self._checked_export_dir(name, shared) for name in sessions]
        else:
            base = Path(out)
            targets = [base if session is not None else base / name for name in sessions]
            # Checked for every session before the first is written: all or nothing.
            refuse_protected(self, [t / p.file_name for t in targets for p in self.projections],
                             what=f"replay --out {out}")
        results: list[ExportResult] = []
        for name, target, part in zip(sessions, targets, parts, strict=True):
            results.extend(self.runner.rebuild(name, target, until=until,
                                               save_checkpoints=out is None, progress=part))
        return results

    def read(self, session: str | None = None, **kwargs: Any) -> list[StoredEvent]:
        if session is not None:
            validate_session_id(session)
        return list(self.journal.read(session, **kwargs))


def _around_validation(progress: Progress | None, count: int) -> Progress | None:
    """The journal's share of an append's progress: it counts each event twice (serialized,
    written) out of 2 * count; validation, the third count, goes in between."""
    if progress is None:
        return None

    def report(done: int, _total: int | None) -> None:
        progress(done if done <= count else done + count, 3 * count)

    return report


def _validating(
    chosen: Sequence[Event], pending: list[StoredEvent], progress: Progress | None,
    index: int, projections: int,
) -> Iterator[tuple[Event, StoredEvent]]:
    """(event, stored) pairs for the `index`-th projection to validate, reporting its share
    of the validation third of an append's progress."""
    pairs = zip(chosen, pending, strict=True)
    if progress is None:
        return pairs
    count = len(chosen)
    start, end = count + index * count // projections, count + (index + 1) * count // projections
    return reporting(pairs, span(progress, start, end - start, 3 * count), count)


def _default_root(journal: Journal) -> Path:
    """Where relative export dirs resolve: beside an SQLite journal's `.evstore/`; for a
    journal on a server, the nearest directory at or above the working directory that
    holds `.evstore/` (else the working directory), so each host uses its own checkout."""
    if journal.file is not None:
        return project_root(journal.file)
    return find_project_root(Path.cwd())


class _Validator:
    """Validates events one by one against projection states, folding each in, as the
    append's `check` does for a whole batch at once."""

    def __init__(  # noqa: PLR0913 - the states and the position they stand at
        self, projections: Sequence[Projection], states: dict[str, Any], *, session: str,
        head: int, version: int, recorded_at: str,
    ) -> None:
        self._projections = [(p, p.validate, p.fold) for p in projections]
        self._states = states
        self._session = session
        self._seq, self._version, self._recorded_at = head, version, recorded_at

    def accept(self, event: Event, payload: dict[str, Any]) -> None:
        if isinstance(event, SessionCreated):
            raise InvalidInputError(f"session {self._session!r} exists already")
        self._seq += 1
        self._version += 1
        event_type = event.type
        stored = StoredEvent(self._seq, self._session, self._version, event_type, payload,
                             _NO_META, self._recorded_at, "", CURRENT_SCHEMA[event_type])
        states = self._states
        for projection, validate, fold in self._projections:
            validate(states[projection.name], event, self._session)
            states[projection.name] = fold(states[projection.name], stored)


def _once(event_id: str, given: set[str]) -> None:
    if event_id in given:
        raise InvalidInputError(f"event id {event_id!r} repeats within one append")
    if "\x00" in event_id:  # as journal.checked_event_ids refuses it for every append
        raise InvalidInputError("event_ids may not contain NUL characters: choose another id")
    given.add(event_id)


def _models(staged: StagedEvents) -> Iterator[tuple[Event, dict[str, Any]]]:
    """The staged events as models again, with their payloads (for a second validation)."""
    for event_type, data, _, _ in staged:
        payload = orjson.loads(data)
        yield parse_event({"type": event_type, **payload}), payload
