"""Read-only reports over the journal: recorded errors, and where each projection stands."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventstore.persistence import ERRORS_STREAM

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.persistence import Journal
    from eventstore.records import StoredEvent
    from eventstore.store import Store

BREAKER_COMPONENT = "breaker"


def error_summary(
    store: Store, *, after: int = 0, until: int | None = None, last: int = 10
) -> dict[str, Any]:
    """Counts by component, errno and class; retry success rate; mean and worst
    resolution time; the last `last` failures, newest first (of `after < seq <= until`)."""
    records = [
        e
        for e in store.journal.read(ERRORS_STREAM, after=after, until=until)
        if e.type == "ErrorRecorded"
    ]
    failures = [r for r in records if r.data.get("component") != BREAKER_COMPONENT]
    retried = [r for r in failures if r.data.get("retry_count", 0) > 0]
    times = [
        r.data["resolution_time_ms"]
        for r in failures
        if r.data.get("resolution_time_ms") is not None
    ]
    return {
        "since_seq": after,
        "total": len(failures),
        "by_component": dict(Counter(r.data["component"] for r in failures)),
        "by_errno": dict(Counter(r.data.get("errno") or "none" for r in failures)),
        "by_class": dict(Counter(r.data["error_type"] for r in failures)),
        "by_severity": dict(Counter(r.data["severity"] for r in failures)),
        "retried": len(retried),
        "retry_success_rate": (
            round(sum(1 for r in retried if r.data.get("recovery_success")) / len(retried), 3)
            if retried else None
        ),
        "recovered": sum(1 for r in failures if r.data.get("recovery_success")),
        "mean_resolution_ms": round(sum(times) / len(times), 1) if times else None,
        "worst_resolution_ms": max(times) if times else None,
        "last": [_record(r) for r in reversed(failures[-last:])],
    }


def _record(event: StoredEvent) -> dict[str, Any]:
    data = event.data
    return {
        "seq": event.seq,
        "recorded_at": event.recorded_at,
        "component": data["component"],
        "operation": data["operation"],
        "errno": data.get("errno"),
        "error_type": data["error_type"],
        "severity": data["severity"],
        "retryable": data["retryable"],
        "retry_count": data.get("retry_count", 0),
        "recovery_success": data.get("recovery_success", False),
        "message": data["message"],
    }


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    path: str
    checkpoint_seq: int | None
    lag: int
    exported_at: str | None
    file_present: bool
    # Other sessions exporting to the same directory: its files cannot be this session's
    # current projection, whatever the checkpoint says.
    shared_with: tuple[str, ...] = ()

    @property
    def current(self) -> bool:
        return self.lag == 0 and self.checkpoint_seq is not None and not self.shared_with

    def as_dict(self) -> dict[str, Any]:
        """As `evstore status --json` lists it (`shared_with` is said once per session)."""
        return {"name": self.name, "path": self.path, "checkpoint_seq": self.checkpoint_seq,
                "lag": self.lag, "exported_at": self.exported_at,
                "file_present": self.file_present, "current": self.current}


def projection_status(
    store: Store, session: str, *, shared_with: Sequence[str] = ()
) -> list[ProjectionStatus]:
    """Each projection's checkpoint and lag (the session's events not yet exported);
    `shared_with`: the other sessions exporting to its directory (`Store.sharing()`)."""
    export_dir = store.export_dir(session)
    found = []
    for projection in store.projections:
        checkpoint = store.journal.checkpoint(projection.name, session, with_state=False)
        after = checkpoint.seq if checkpoint else 0
        found.append(ProjectionStatus(
            name=projection.name,
            path=str(export_dir / projection.file_name),
            checkpoint_seq=checkpoint.seq if checkpoint else None,
            lag=store.journal.count(session, after=after),
            exported_at=checkpoint.exported_at if checkpoint else None,
            file_present=(export_dir / projection.file_name).exists(),
            shared_with=tuple(shared_with),
        ))
    return found


def breaker_states(store: Store) -> dict[str, dict[str, Any]]:
    """The latest breaker transition per export directory, as `evstore watch` records
    them (the directory in the event's `path`)."""
    states: dict[str, dict[str, Any]] = {}
    for event in store.journal.read(ERRORS_STREAM):
        if event.type == "ErrorRecorded" and event.data.get("component") == BREAKER_COMPONENT:
            # A transition recorded by hand without its path still names it in the text.
            directory = event.data.get("path") or event.data["message"].rsplit(": breaker ", 1)[0]
            states[directory] = {"state": event.data["operation"], "since": event.recorded_at,
                                 "message": event.data["message"]}
    return states


def last_error(store: Store) -> dict[str, Any] | None:
    latest = store.journal.latest(ERRORS_STREAM)
    return _record(latest) if latest is not None and latest.type == "ErrorRecorded" else None


def journal_size(journal: Journal) -> int | None:
    """Bytes of the journal with its WAL (what it takes on disk now); None for a server."""
    path = journal.file
    if path is None:
        return None
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += Path(f"{path}{suffix}").stat().st_size
    return total
