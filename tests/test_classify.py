"""The one failure classifier (docs/design.md §10): a table of every errno and SQLite code."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from eventstore.classify import SQLITE_TABLE, classify
from eventstore.errnos import FAIL_FAST_ERRNOS, RETRYABLE_ERRNOS, is_retryable
from eventstore.errors import (
    ConcurrencyError,
    ExportError,
    InvalidInputError,
    JournalBusyError,
    JournalCorruptError,
)

ERRNOS = [
    # name, error_type, severity, recoverability, category, retryable
    ("EBUSY", "resource", "medium", "recoverable", "transient", True),
    ("EAGAIN", "resource", "medium", "recoverable", "transient", True),
    ("EIO", "resource", "high", "recoverable", "transient", True),
    ("ENFILE", "resource", "high", "recoverable", "transient", True),
    ("EINTR", "process", "low", "recoverable", "transient", True),
    ("ETIMEDOUT", "timeout", "medium", "recoverable", "transient", True),
    ("ENOSPC", "resource", "critical", "degradable", "permanent", False),
    ("EDQUOT", "resource", "critical", "degradable", "permanent", False),
    ("ENOENT", "resource", "high", "degradable", "configuration", False),
    ("EACCES", "resource", "high", "degradable", "configuration", False),
    ("EPERM", "resource", "high", "degradable", "configuration", False),
    ("EROFS", "resource", "high", "degradable", "configuration", False),
    ("EMFILE", "process", "high", "degradable", "configuration", False),
    ("EXDEV", "resource", "high", "fatal", "external", False),
]


@pytest.mark.parametrize(("name", "kind", "severity", "recoverability", "category", "retryable"), ERRNOS)
def test_os_errors_by_errno(name: str, kind: str, severity: str, recoverability: str, category: str, retryable: bool) -> None:  # noqa: FBT001
    code = getattr(errno, name)
    found = classify(OSError(code, "x"))
    assert (found.error_type, found.severity, found.recoverability, found.category, found.retryable, found.code) == (
        kind, severity, recoverability, category, retryable, name)
    assert is_retryable(OSError(code, "x")) is retryable  # the exporter's retry agrees


def test_every_errno_of_design_section_6_is_in_the_table() -> None:
    assert {getattr(errno, n[0]) for n in ERRNOS} >= RETRYABLE_ERRNOS | FAIL_FAST_ERRNOS


SQLITE_CODES = [
    ("SQLITE_BUSY", "coordination", True), ("SQLITE_BUSY_SNAPSHOT", "coordination", True),
    ("SQLITE_LOCKED", "coordination", True), ("SQLITE_FULL", "resource", False),
    ("SQLITE_IOERR", "resource", False), ("SQLITE_IOERR_WRITE", "resource", False),
    ("SQLITE_IOERR_FSYNC", "resource", False), ("SQLITE_IOERR_SHMSIZE", "resource", False),
    ("SQLITE_READONLY", "resource", False), ("SQLITE_READONLY_DBMOVED", "resource", False),
    ("SQLITE_CANTOPEN", "resource", False), ("SQLITE_PERM", "resource", False),
    ("SQLITE_CORRUPT", "resource", False), ("SQLITE_NOTADB", "validation", False),
    ("SQLITE_CONSTRAINT_UNIQUE", "validation", False), ("SQLITE_CONSTRAINT_CHECK", "validation", False),
    ("SQLITE_INTERRUPT", "process", True), ("SQLITE_NOMEM", "resource", True),
    ("SQLITE_PROTOCOL", "coordination", True),
]


@pytest.mark.parametrize(("name", "kind", "retryable"), SQLITE_CODES)
def test_sqlite_errors_by_result_code(name: str, kind: str, retryable: bool) -> None:  # noqa: FBT001
    exc = sqlite3.OperationalError("message text is never read")
    exc.sqlite_errorname = name  # type: ignore[attr-defined]
    found = classify(exc)
    assert (found.error_type, found.retryable, found.code) == (kind, retryable, name)


def test_sqlite_full_is_not_retryable_and_busy_is() -> None:
    """The two the issue names."""
    assert SQLITE_TABLE["SQLITE_BUSY"][4] is True
    assert SQLITE_TABLE["SQLITE_FULL"][4] is False


def test_a_real_sqlite_error_carries_its_code() -> None:
    """A real constraint failure from sqlite3 is classified by its result code."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (x UNIQUE)")
    conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError) as caught:
        conn.execute("INSERT INTO t VALUES (1)")
    assert classify(caught.value).code == "SQLITE_CONSTRAINT_UNIQUE"


@pytest.mark.parametrize(("exc", "kind", "retryable"), [
    (InvalidInputError("x"), "validation", False),
    (ConcurrencyError("x"), "coordination", False),
    (JournalBusyError("x"), "coordination", True),
    (JournalCorruptError("x"), "resource", False),
    (TimeoutError("x"), "timeout", True),
    (ConnectionRefusedError("x"), "network", True),
    (ExportError("x", path="p", errno_code=errno.ENOSPC, attempts=1), "resource", False),
])
def test_evstore_errors_by_class(exc: BaseException, kind: str, retryable: bool) -> None:  # noqa: FBT001
    found = classify(exc)
    assert (found.error_type, found.retryable) == (kind, retryable)


def test_an_error_is_classified_by_its_cause() -> None:
    """JournalWriteError raised from SQLITE_FULL counts as SQLITE_FULL."""
    cause = sqlite3.OperationalError("database or disk is full")
    cause.sqlite_errorname = "SQLITE_FULL"  # type: ignore[attr-defined]
    from eventstore.errors import JournalWriteError

    try:
        raise JournalWriteError("journal full") from cause
    except JournalWriteError as exc:
        assert classify(exc).code == "SQLITE_FULL"
