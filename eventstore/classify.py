"""One classifier for every failure evstore handles (docs/design.md §10).

OS errors by errno, SQLite errors by their result code (never their message), evstore's
own errors by class. The answer is what `ErrorRecorded` stores and `evstore errors`
counts: what kind of failure, how bad, whether it can recover, and whether a retry helps.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import asdict, dataclass

from eventstore.errors import (
    ConcurrencyError,
    ExportError,
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
    JournalNotFoundError,
    JournalReadError,
    JournalSchemaError,
    JournalWriteError,
)


@dataclass(frozen=True)
class Classification:
    error_type: str  # resource, process, coordination, validation, timeout, network
    severity: str  # low, medium, high, critical
    recoverability: str  # recoverable, degradable, fatal
    category: str  # transient, permanent, configuration, external
    retryable: bool
    code: str | None  # the errno name, the SQLite result code, or the error's class

    def fields(self) -> dict[str, object]:
        """The ErrorRecorded fields (errno holds the code)."""
        out = asdict(self)
        out["errno"] = out.pop("code")
        return out


def _c(
    error_type: str, severity: str, recoverability: str, category: str, *, retryable: bool = False
) -> tuple[str, str, str, str, bool]:
    return error_type, severity, recoverability, category, retryable


# errno → classification. Transient: retried (docs/design.md §6). Everything else fails fast.
ERRNO_TABLE: dict[int, tuple[str, str, str, str, bool]] = {
    errno.EBUSY: _c("resource", "medium", "recoverable", "transient", retryable=True),
    errno.EAGAIN: _c("resource", "medium", "recoverable", "transient", retryable=True),
    errno.EIO: _c("resource", "high", "recoverable", "transient", retryable=True),
    errno.ENFILE: _c("resource", "high", "recoverable", "transient", retryable=True),
    errno.EINTR: _c("process", "low", "recoverable", "transient", retryable=True),
    errno.ETIMEDOUT: _c("timeout", "medium", "recoverable", "transient", retryable=True),
    errno.ENOSPC: _c("resource", "critical", "degradable", "permanent"),
    errno.EDQUOT: _c("resource", "critical", "degradable", "permanent"),
    errno.ENOENT: _c("resource", "high", "degradable", "configuration"),
    errno.EACCES: _c("resource", "high", "degradable", "configuration"),
    errno.EPERM: _c("resource", "high", "degradable", "configuration"),
    errno.EROFS: _c("resource", "high", "degradable", "configuration"),
    errno.EMFILE: _c("process", "high", "degradable", "configuration"),
}
_UNKNOWN_OS = _c("resource", "high", "fatal", "external")

# SQLite primary result codes evstore can meet (extended codes fold onto their primary).
SQLITE_TABLE: dict[str, tuple[str, str, str, str, bool]] = {
    "SQLITE_BUSY": _c("coordination", "medium", "recoverable", "transient", retryable=True),
    "SQLITE_LOCKED": _c("coordination", "medium", "recoverable", "transient", retryable=True),
    "SQLITE_FULL": _c("resource", "critical", "degradable", "permanent"),
    "SQLITE_IOERR": _c("resource", "high", "degradable", "external"),
    "SQLITE_READONLY": _c("resource", "high", "degradable", "configuration"),
    "SQLITE_CANTOPEN": _c("resource", "high", "fatal", "configuration"),
    "SQLITE_PERM": _c("resource", "high", "fatal", "configuration"),
    "SQLITE_CORRUPT": _c("resource", "critical", "fatal", "permanent"),
    "SQLITE_NOTADB": _c("validation", "critical", "fatal", "configuration"),
    "SQLITE_CONSTRAINT": _c("validation", "medium", "fatal", "permanent"),
    "SQLITE_INTERRUPT": _c("process", "low", "recoverable", "transient", retryable=True),
    "SQLITE_NOMEM": _c("resource", "critical", "recoverable", "transient", retryable=True),
    "SQLITE_PROTOCOL": _c("coordination", "medium", "recoverable", "transient", retryable=True),
}
_UNKNOWN_SQLITE = _c("resource", "high", "fatal", "external")


def classify(exc: BaseException) -> Classification:
    """Classify any failure; the cause of an evstore error is looked at first."""
    if isinstance(exc, ExportError) and exc.errno_code is not None:
        return _from_errno(exc.errno_code)
    cause = exc.__cause__
    if isinstance(exc, JournalReadError):
        # A read that may pass: what SQLite called it (even SQLITE_CORRUPT) is no verdict.
        code = getattr(cause, "sqlite_errorname", None) or type(exc).__name__
        return Classification("resource", "high", "recoverable", "transient", retryable=True,
                              code=code)
    if isinstance(cause, (OSError, sqlite3.Error)) and not isinstance(exc, OSError):
        return classify(cause)
    if isinstance(exc, sqlite3.Error):
        return _from_sqlite(getattr(exc, "sqlite_errorname", "") or type(exc).__name__)
    if isinstance(exc, OSError) and isinstance(exc.errno, int):
        return _from_errno(exc.errno)
    return _from_class(exc)


def _from_errno(code: int) -> Classification:
    name = errno.errorcode.get(code, str(code))
    return Classification(*ERRNO_TABLE.get(code, _UNKNOWN_OS), code=name)


def _from_sqlite(name: str) -> Classification:
    primary = "_".join(name.split("_")[:2]) if name.startswith("SQLITE_") else name
    return Classification(*SQLITE_TABLE.get(primary, _UNKNOWN_SQLITE), code=name)


def _from_class(exc: BaseException) -> Classification:
    name = type(exc).__name__
    table: list[tuple[type[BaseException], tuple[str, str, str, str, bool]]] = [
        (
            JournalBusyError,
            _c("coordination", "medium", "recoverable", "transient", retryable=True),
        ),
        (ConcurrencyError, _c("coordination", "low", "recoverable", "transient")),
        (InvalidInputError, _c("validation", "low", "fatal", "permanent")),
        (JournalSchemaError, _c("validation", "high", "fatal", "configuration")),
        (JournalCorruptError, _c("resource", "critical", "fatal", "permanent")),
        (JournalNotFoundError, _c("resource", "high", "fatal", "configuration")),
        (JournalWriteError, _c("resource", "high", "degradable", "external")),
        (TimeoutError, _c("timeout", "medium", "recoverable", "transient", retryable=True)),
        (ConnectionError, _c("network", "medium", "recoverable", "transient", retryable=True)),
    ]
    for kind, values in table:
        if isinstance(exc, kind):
            return Classification(*values, code=name)
    return Classification("process", "high", "fatal", "external", retryable=False, code=name)
