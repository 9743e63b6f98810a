"""Keep projections current as the journal grows (docs/design.md §10): the `evstore watch` loop.

Each poll asks SQLite whether anything was committed since the last one (`PRAGMA
data_version` for other connections, `total_changes` for this one: no table is read
while the journal is idle), and only then which sessions gained events. Every session
that did is exported once, for all the events that arrived: a burst of appends between
two polls costs one export per projection. Between polls the watcher sleeps the
interval; it never spins.

Exports go through the store's runner, so they have the docs/design.md §6 retry (`flush_retries`).
A failed export leaves its session pending, tried again at the next poll, behind a
circuit breaker per export directory (eventstore.breaker): after 5 consecutive
failures that directory is left alone for 30 s. Appends, by any process, never wait on
the watcher.

SQLite keeps reading the file and WAL it opened, so each poll also compares the journal
file and its -wal at the path with those it opened: a replaced journal or a removed WAL
(or a head that moved backwards) is said, recorded and followed (docs/design.md §3, §10).
A journal out of reach (a PostgreSQL server restarting) is waited for with backoff, for
as long as the watcher runs.

`stop()` (from a signal handler, another thread, or an export hook) lets the export in
progress finish, then `run()` returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventstore.breaker import CircuitBreaker
from eventstore.classify import classify
from eventstore.errors import EvstoreError, JournalBusyError, JournalError
from eventstore.logs import get_logger
from eventstore.numbers import whole_number
from eventstore.persistence import ERRORS_STREAM

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from eventstore.events import ErrorRecorded
    from eventstore.runner import ExportResult
    from eventstore.store import Store

log = get_logger("evstore.watch")

DEFAULT_INTERVAL_MS = 500
MIN_INTERVAL_MS = 10
MAX_INTERVAL_MS = 86_400_000  # a day
# While the journal cannot be reached (a PostgreSQL server restarting, a busy SQLite file
# past its own retries) the watcher waits and tries again, for as long as it runs.
UNAVAILABLE_FIRST_DELAY_S = 0.1
UNAVAILABLE_MAX_DELAY_S = 5.0


def journal_unavailable(exc: BaseException) -> bool:
    """A journal failure that passes by itself: busy, or a server out of reach (the
    PostgreSQL journal's JournalUnavailableError is also a ConnectionError)."""
    return isinstance(exc, JournalError) and isinstance(exc, (JournalBusyError, ConnectionError))


def parse_interval(value: object, *, name: str = "--interval") -> int:
    """Milliseconds between polls: a whole number from 10 to 86400000."""
    return whole_number(
        value, name=name, low=MIN_INTERVAL_MS, high=MAX_INTERVAL_MS, unit=" of milliseconds"
    )


@dataclass
class WatchStats:
    polls: int = 0
    changes: int = 0  # polls that found new events in a watched session
    exports: int = 0  # export runs that succeeded (one per session, all its projections)
    failures: int = 0  # export runs that failed (after their retries)
    skipped: int = 0  # export runs the breaker refused
    stopped_by: str | None = None  # the signal's name, "stop", or "max_polls"


class Watcher:
    """Poll the store's journal and export what changed.

    `sleep(seconds)` waits between polls (default: wait on the stop event, so `stop()`
    wakes it at once); `clock()` is the breakers' monotonic clock; `max_polls` ends
    `run()` after that many polls (tests). `on_export` sees each session's results.
    """

    def __init__(  # noqa: PLR0913 - keyword-only knobs with defaults
        self,
        store: Store,
        *,
        session: str | None = None,
        interval_s: float = DEFAULT_INTERVAL_MS / 1000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        max_polls: int | None = None,
        on_export: Callable[[str, list[ExportResult]], object] | None = None,
        breaker_options: dict[str, Any] | None = None,
    ) -> None:
        if session is not None:
            store.require_session(session)  # an unknown session is refused up front
        self.store = store
        self.session = session
        self.interval_s = interval_s
        self.max_polls = max_polls
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._on_export = on_export
        self._breaker_options = breaker_options or {}
        self.unavailable_max_delay_s = UNAVAILABLE_MAX_DELAY_S
        self.breakers: dict[str, CircuitBreaker] = {}
        self.stats = WatchStats()
        self._token: tuple[int, ...] | None = None
        self._seen_seq = 0
        self._identity: tuple[tuple[int, int] | None, ...] | None = None
        self._pending: dict[str, None] = {}  # sessions to export, in the order they came

    # --- control ------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Finish the export in progress, then return from `run()`. Safe from a signal
        handler or another thread."""
        if self.stats.stopped_by is None:
            self.stats.stopped_by = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> WatchStats:
        """Export everything pending now, then poll until stopped."""
        log.info("watch_started", journal=self.store.journal.location, session=self.session,
                 interval_ms=round(self.interval_s * 1000))
        # The token before the head: a commit in between is then seen twice, never missed.
        self._identity = self._file_identity()
        self._token = self._change_token()
        self._seen_seq = self.store.journal.head()
        self._pending = dict.fromkeys(self._watched(self.store.sessions()))
        while not self.stopping:
            if not self._survive(self._export_pending):
                continue
            self.stats.polls += 1
            if self.max_polls is not None and self.stats.polls >= self.max_polls:
                self.stop("max_polls")
                break
            if self.stopping:
                break
            self._sleep(self.interval_s)
            if self.stopping:
                break
            self._survive(self._notice_changes)
        stats = self.stats
        fields = {"reason": stats.stopped_by, "polls": stats.polls, "exports": stats.exports,
                  "failures": stats.failures, "skipped": stats.skipped}
        if self._pending:  # files left behind the journal: say so, and how to catch up
            log.warning("watch_stopped", pending=list(self._pending),
                        hint="run `evstore project` once the cause is fixed", **fields)
        else:
            log.info("watch_stopped", **fields)
        return self.stats

    def _survive(self, step: Callable[[], None]) -> bool:
        """Run `step`; while the journal is out of reach, wait with backoff and try again
        (each attempt logged) until it answers or the watcher is stopped. False when
        stopped before it answered."""
        attempt = 0
        while True:
            try:
                step()
            except JournalError as exc:
                if not journal_unavailable(exc):
                    raise
                attempt += 1
                delay = min(UNAVAILABLE_FIRST_DELAY_S * 2 ** (attempt - 1),
                            self.unavailable_max_delay_s)
                log.warning("watch_journal_unavailable", attempt=attempt,
                            delay_ms=round(delay * 1000, 1), error=str(exc),
                            journal=self.store.journal.location)
                self._sleep(delay)
                if self.stopping:
                    return False
                continue
            if attempt:
                log.warning("watch_journal_back", attempts=attempt,
                            journal=self.store.journal.location)
            return True

    @property
    def pending(self) -> list[str]:
        """Sessions whose files are behind the journal (failed or refused exports)."""
        return list(self._pending)

    # --- noticing -----------------------------------------------------------------------

    def _change_token(self) -> tuple[int, ...]:
        return self.store.journal.change_token()

    def _file_identity(self) -> tuple[tuple[int, int] | None, ...] | None:
        return self.store.journal.file_identity()

    def _replaced(self) -> str | None:
        """What changed under the open journal, or None: SQLite keeps reading the file
        and WAL it opened, so a journal replaced at its path, or a -wal removed, would
        leave this watcher following a file nobody writes any more."""
        now = self._file_identity()
        before = self._identity
        if now is None or before is None:
            return None
        if now[0] != before[0]:
            return "the journal file was replaced"
        if before[1] is not None and now[1] != before[1]:
            return "its -wal file was removed" if now[1] is None else "its -wal file was replaced"
        if before[1] is None and now[1] is not None:
            self._identity = now  # the WAL appeared: SQLite made it, not someone else
        return None

    def _notice_changes(self) -> None:
        replaced = self._replaced()
        if replaced is not None:
            self._reopen(replaced)
        token = self._change_token()
        if token == self._token:
            return
        self._token = token
        head = self.store.journal.head()
        if head < self._seen_seq:
            self._went_back(head, "its head moved backwards")
            return
        if head <= self._seen_seq:
            return  # checkpoints, or another exporter: nothing new to fold
        streams = self._streams_between(self._seen_seq, head)
        self._seen_seq = head
        changed = self._watched(streams)
        if changed:
            self.stats.changes += 1
            log.debug("watch_changes", sessions=changed, head=head)
            for name in changed:
                self._pending.setdefault(name)

    def _reopen(self, what: str) -> None:
        rescued = self.store.reopen()
        self._identity = self._file_identity()
        self._token = self._change_token()
        self._went_back(self.store.journal.head(), what, rescued)

    def _went_back(self, head: int, what: str, rescued: Path | None = None) -> None:
        """The journal lost what this watcher saw (or is another file): say so, record it,
        and export every session again from what the journal holds now. Checkpoints
        naming lost events are refolded, and files exported from those events are kept
        as .drift- copies by the export."""
        path = self.store.journal.location
        lost = (f"events after seq {head} that this watcher saw (up to seq {self._seen_seq}) "
                "are gone from it" if head < self._seen_seq else f"its head is seq {head}")
        kept = (f"; the events only the old one held are kept in {rescued} (`evstore append "
                "--session S --jsonl` its lines of session S brings them back)" if rescued else "")
        message = (f"{path}: {what} while watch ran: {lost}{kept}; files exported from lost "
                   "events are kept as .drift- copies: check `evstore doctor`")
        log.warning("journal_replaced", path=str(path), what=what, seen_seq=self._seen_seq,
                    head=head, rescued=str(rescued) if rescued else None,
                    hint="check `evstore doctor`; restore the journal if events were lost")
        from eventstore.events import ErrorRecorded  # noqa: PLC0415 - only on this rare path

        try:
            self._record(ErrorRecorded(
                component="journal", operation="watch", errno=None, error_type="coordination",
                severity="critical", recoverability="degradable", category="external",
                retryable=False, recovery_strategy="reopen", recovery_success=True,
                message=message,
            ))
        except EvstoreError as exc:
            log.warning("error_not_recorded", error=str(exc))
        self._seen_seq = self.store.journal.head()
        self._token = self._change_token()
        for name in self._watched(self.store.sessions()):
            self._pending.setdefault(name)

    def _streams_between(self, after: int, until: int) -> list[str]:
        return self.store.journal.streams_between(after, until)

    def _watched(self, streams: list[str]) -> list[str]:
        if self.session is not None:
            return [self.session] if self.session in streams else []
        return [s for s in streams if s != ERRORS_STREAM]

    # --- exporting ----------------------------------------------------------------------

    def breaker(self, export_dir: Path) -> CircuitBreaker:
        key = str(export_dir)
        found = self.breakers.get(key)
        if found is None:
            options = {"clock": self._clock, "record": self._record, **self._breaker_options}
            found = self.breakers[key] = CircuitBreaker(key, **options)
        return found

    def _export_pending(self) -> None:
        for session in list(self._pending):
            if self.stopping:
                return  # the export in progress is done; the rest wait for the next start
            export_dir = self.store.export_dir(session)
            breaker = self.breaker(export_dir)
            if not breaker.allow():
                self.stats.skipped += 1
                log.debug("watch_export_skipped", session=session, export_dir=str(export_dir),
                          breaker=breaker.state, retry_in_s=round(breaker.retry_in_s(), 1))
                continue
            try:
                results = self.store.project(session)
            except JournalError as exc:
                if journal_unavailable(exc):
                    raise  # the journal, not this directory: no breaker failure
                self._export_failed(session, export_dir, breaker, exc)
                continue
            except (EvstoreError, OSError) as exc:
                self._export_failed(session, export_dir, breaker, exc)
                continue
            breaker.success()
            self._pending.pop(session, None)
            self.stats.exports += 1
            if self._on_export is not None:
                self._on_export(session, results)

    def _export_failed(
        self, session: str, export_dir: Path, breaker: CircuitBreaker, exc: BaseException
    ) -> None:
        # The runner has logged and recorded the failure itself (exit 4's path).
        self.stats.failures += 1
        breaker.failure(exc)
        log.warning("watch_export_failed", session=session, export_dir=str(export_dir),
                    errno=classify(exc).code, failures=breaker.failures, breaker=breaker.state)

    def _record(self, event: ErrorRecorded) -> None:
        self.store.journal.append(ERRORS_STREAM, [event])


@contextlib.contextmanager
def stop_on_signals(
    watcher: Watcher, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM ask `watcher` to stop after the export in progress.
    A second SIGINT interrupts at once (KeyboardInterrupt). Main thread only."""
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, _frame: object) -> None:
        watcher.stop(signal.Signals(signum).name)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in signals:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
