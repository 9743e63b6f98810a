"""What `evstore report` shows, read from the journal: each session folded once
(projections.report), the recorded errors, and where the journal stood. The page itself
(HTML) is the CLI's business."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventstore._version import __version__
from eventstore.progress import reporting, shares
from eventstore.records import format_time, utc_now
from eventstore.reports import error_summary
from projections.batch_runs import parse_time
from projections.report import session_report

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from eventstore.progress import Progress
    from eventstore.records import StoredEvent
    from eventstore.store import Store


def report_context(
    store: Store, sessions: list[str], until_seq: int | None, *, progress: Progress | None = None
) -> dict[str, Any]:
    """The report of `sessions` as of `until_seq` (None: the head): title, version,
    journal, head, until, generated_at, sessions (each a session_report), errors
    (error_summary). `progress` follows the events read, over every session."""
    now = utc_now()
    if until_seq:  # an earlier state's current statuses held until its last event, not now
        last = next(store.journal.read(after=until_seq - 1, until=until_seq), None)
        now = parse_time(last.recorded_at) if last is not None else now
    counted = _counted(store, sessions, until_seq, progress)
    folded = [session_report(name, counted(name), now=now) for name in sessions]
    return {
        "title": f"evstore report: {', '.join(sessions) or 'empty journal'}",
        "version": __version__,
        "journal": store.journal.location,
        "head": store.journal.head(),
        "until": until_seq,
        "generated_at": format_time(utc_now()),
        "sessions": folded,
        "errors": error_summary(store, until=until_seq),
    }


def _counted(
    store: Store, sessions: list[str], until: int | None, progress: Progress | None
) -> Callable[[str], Iterable[StoredEvent]]:
    """`events(session)`, counted for one bar over every session when there is a bar."""
    if progress is None:
        return lambda name: store.journal.read(name, until=until)
    sizes = {name: store.journal.count(name, until=until) for name in sessions}
    parts = dict(zip(sessions, shares(progress, list(sizes.values())), strict=True))
    return lambda name: reporting(store.journal.read(name, until=until), parts[name], sizes[name])
