"""evstore's core: an append-only event journal and the runner that exports projections.

Domain-agnostic where it can be: it never imports the `projections` package (the folds)
or the `cli` package; callers hand it the projections to run.

Names load on first use (PEP 562), so `import eventstore.errors` or a CLI's `--version`
does not pay for pydantic and SQLite set-up it will not use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AppendResult": "eventstore.records",
    "ConcurrencyError": "eventstore.errors",
    "Event": "eventstore.events",
    "EvstoreError": "eventstore.errors",
    "ExportError": "eventstore.errors",
    "ExportResult": "eventstore.runner",
    "FixLimitError": "eventstore.errors",
    "FlushStats": "eventstore.session",
    "InvalidInputError": "eventstore.errors",
    "InvalidSessionIdError": "eventstore.errors",
    "Journal": "eventstore.persistence",
    "JournalBusyError": "eventstore.errors",
    "JournalCorruptError": "eventstore.errors",
    "JournalError": "eventstore.errors",
    "JournalNotFoundError": "eventstore.errors",
    "JournalReadError": "eventstore.errors",
    "JournalSchemaError": "eventstore.errors",
    "JournalUnavailableError": "eventstore.errors",
    "JournalWriteError": "eventstore.errors",
    "Projection": "eventstore.projection",
    "ProjectFailedError": "eventstore.errors",
    "ProjectionError": "eventstore.errors",
    "RetryPolicy": "eventstore.retry",
    "STATUSES": "eventstore.events",
    "SQLiteJournal": "eventstore.sqlite",
    "Session": "eventstore.session",
    "Store": "eventstore.store",
    "StoredEvent": "eventstore.records",
    "UnknownSessionError": "eventstore.errors",
    "parse_event": "eventstore.events",
}

__all__ = [
    "STATUSES",
    "AppendResult",
    "ConcurrencyError",
    "Event",
    "EvstoreError",
    "ExportError",
    "ExportResult",
    "FixLimitError",
    "FlushStats",
    "InvalidInputError",
    "InvalidSessionIdError",
    "Journal",
    "JournalBusyError",
    "JournalCorruptError",
    "JournalError",
    "JournalNotFoundError",
    "JournalReadError",
    "JournalSchemaError",
    "JournalUnavailableError",
    "JournalWriteError",
    "ProjectFailedError",
    "Projection",
    "ProjectionError",
    "RetryPolicy",
    "SQLiteJournal",
    "Session",
    "Store",
    "StoredEvent",
    "UnknownSessionError",
    "parse_event",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from eventstore.errors import (
        ConcurrencyError,
        EvstoreError,
        ExportError,
        FixLimitError,
        InvalidInputError,
        InvalidSessionIdError,
        JournalBusyError,
        JournalCorruptError,
        JournalError,
        JournalNotFoundError,
        JournalReadError,
        JournalSchemaError,
        JournalUnavailableError,
        JournalWriteError,
        ProjectFailedError,
        ProjectionError,
        UnknownSessionError,
    )
    from eventstore.events import STATUSES, Event, parse_event
    from eventstore.persistence import Journal
    from eventstore.projection import Projection
    from eventstore.records import AppendResult, StoredEvent
    from eventstore.retry import RetryPolicy
    from eventstore.runner import ExportResult
    from eventstore.session import FlushStats, Session
    from eventstore.sqlite import SQLiteJournal
    from eventstore.store import Store
