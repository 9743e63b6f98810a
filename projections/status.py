"""Where everything stands (`evstore status`, the MCP server's `status` tool): the journal,
each session with its projections' checkpoints and lag and its unfinished batch, the last
recorded error, and the breaker of each directory `evstore watch` exports to.

    report = status_report(store)
    report.current, report.journal.head_seq, [s.events for s in report.sessions]
    report.as_dict()   # what `evstore status --json` prints
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventstore.owner import is_alive, this_host
from eventstore.reports import (
    ProjectionStatus,
    breaker_states,
    journal_size,
    last_error,
    projection_status,
)
from eventstore.schema import latest_version

if TYPE_CHECKING:
    from eventstore.store import Store
    from projections.batch import Batch


@dataclass(frozen=True)
class JournalStatus:
    path: str
    bytes: int | None  # None for a journal on a server
    schema_version: int
    latest_schema_version: int
    head_seq: int

    @property
    def outdated(self) -> bool:
        """An older schema than this evstore writes (`evstore doctor --fix` migrates it)."""
        return self.schema_version < self.latest_schema_version

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, "schema_version": self.schema_version,
                "latest_schema_version": self.latest_schema_version, "head_seq": self.head_seq}


@dataclass(frozen=True)
class BatchStatus:
    """A session's unfinished batch and whether its owner still runs (on this host)."""

    batch_id: str
    owner_pid: int
    owner_host: str
    owner_alive: bool
    updated_at: str
    remaining: int
    in_flight: tuple[str, ...]

    @classmethod
    def of(cls, batch: Batch) -> BatchStatus:
        return cls(
            batch_id=batch.batch_id, owner_pid=batch.pid, owner_host=batch.host,
            owner_alive=batch.host == this_host() and is_alive(batch.pid, batch.pid_start),
            updated_at=batch.updated_at, remaining=len(batch.remaining),
            in_flight=tuple(batch.in_flight),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "owner_pid": self.owner_pid,
                "owner_host": self.owner_host, "owner_alive": self.owner_alive,
                "updated_at": self.updated_at, "remaining": self.remaining,
                "in_flight": list(self.in_flight)}


@dataclass(frozen=True)
class SessionStatus:
    session: str
    events: int
    version: int
    export_dir: str
    shared_with: tuple[str, ...]  # other sessions exporting to the same directory
    projections: tuple[ProjectionStatus, ...]
    batch: BatchStatus | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "events": self.events,
            "version": self.version,
            "export_dir": self.export_dir,
            "shared_with": list(self.shared_with),
            "projections": [p.as_dict() for p in self.projections],
            "batch": None if self.batch is None else self.batch.as_dict(),
        }


@dataclass(frozen=True)
class StatusReport:
    journal: JournalStatus
    sessions: tuple[SessionStatus, ...]
    last_export_at: str | None
    last_error: dict[str, Any] | None  # as `evstore errors --json` lists a failure
    breakers: dict[str, dict[str, Any]]  # export directory → state, since, message

    @property
    def current(self) -> bool:
        """Every projection of every session is exported up to its session's head."""
        return all(p.current for s in self.sessions for p in s.projections)

    def as_dict(self) -> dict[str, Any]:
        """What `evstore status --json` prints."""
        return {
            "journal": self.journal.as_dict(),
            "sessions": [s.as_dict() for s in self.sessions],
            "last_export_at": self.last_export_at,
            "last_error": self.last_error,
            "breakers": self.breakers,
            "current": self.current,
        }


def status_report(store: Store) -> StatusReport:
    """The report of the whole journal; only reads (a read-only store will do)."""
    journal = store.journal
    sessions: list[SessionStatus] = []
    sharing = store.sharing()
    for info in journal.streams():
        if info.stream not in store.sessions():
            continue
        shared_with = sharing.get(info.stream, [])
        projections = projection_status(store, info.stream, shared_with=shared_with)
        batch: Batch | None = store.state(info.stream, "batch").batch
        sessions.append(SessionStatus(
            session=info.stream,
            events=info.events,
            version=info.version,
            export_dir=str(store.export_dir(info.stream)),
            shared_with=tuple(shared_with),
            projections=tuple(projections),
            batch=None if batch is None else BatchStatus.of(batch),
        ))
    exports = [p.exported_at for s in sessions for p in s.projections if p.exported_at]
    return StatusReport(
        journal=JournalStatus(
            path=str(journal.file.resolve()) if journal.file else journal.location,
            bytes=journal_size(journal),
            schema_version=journal.schema_version,
            latest_schema_version=latest_version(journal.backend), head_seq=journal.head(),
        ),
        sessions=tuple(sessions),
        last_export_at=max(exports) if exports else None,
        last_error=last_error(store),
        breakers=breaker_states(store),
    )
