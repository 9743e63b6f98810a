"""One root for every error evstore raises; each carries the CLI exit code it maps to.

Exit codes (docs/design.md §11): 0 ok, 1 unexpected, 2 usage or invalid input, 3 conflict,
4 export failed (journal intact), 5 journal unavailable or corrupt, 6 fix-task limit.
"""

from __future__ import annotations

from typing import Any


class EvstoreError(Exception):
    """Root of evstore's errors. `exit_code` is what the CLI exits with."""

    exit_code = 1


class InvalidInputError(EvstoreError, ValueError):
    """Input refused before anything was written: bad JSON, unknown item, bad status..."""

    exit_code = 2


class InvalidSessionIdError(InvalidInputError):
    """A session id outside `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`."""


class UnknownSessionError(InvalidInputError, LookupError):
    """The journal holds no session of that id."""


class JournalError(EvstoreError):
    """The journal could not be used: unavailable, corrupt, too new, busy."""

    exit_code = 5


class JournalNotFoundError(JournalError, FileNotFoundError):
    """No journal where one was looked for (run `evstore init`)."""


class JournalCorruptError(JournalError):
    """The file is not an SQLite database, or fails its integrity check."""


class JournalSchemaError(JournalError):
    """The journal was written by a newer evstore than this one."""


class JournalBusyError(JournalError, TimeoutError):
    """Other writers held the journal for longer than the busy timeout and its retries."""


class JournalWriteError(JournalError):
    """SQLite could not write: disk full, I/O error, read-only file."""


class JournalReadError(JournalError):
    """A read of the journal failed in a way that may pass (an I/O error, or a malformed
    page that no integrity check confirmed); retried like a busy journal."""

    def __init__(self, message: str, *, suspect_damage: bool = False) -> None:
        super().__init__(message)
        self.suspect_damage = suspect_damage


class JournalUnavailableError(JournalError, ConnectionError):
    """The journal's server cannot be reached (down, restarting, refusing connections).

    Exit 5, like every JournalError; classified as a transient network failure."""


class ConcurrencyError(EvstoreError):
    """A conflict, not an unusable journal: `expected_version` did not match the stream's
    version (someone appended first), event ids were reused for other events, or a batch's
    owner is alive. Apart from JournalError so `except JournalError` does not catch it."""

    exit_code = 3


class ProjectionError(EvstoreError):
    """A projection could not fold or render the journal."""


class ExportError(ProjectionError):
    """Writing a projected file failed after its retries; the journal is intact."""

    exit_code = 4

    def __init__(self, message: str, *, path: str, errno_code: int | None, attempts: int) -> None:
        super().__init__(message)
        self.path = path
        self.errno_code = errno_code
        self.attempts = attempts


class ProjectFailedError(ExportError):
    """`project` of every session exported all it could, but these sessions failed:
    `results` holds the other sessions' results, `failures` each failed one's ExportError."""

    def __init__(self, results: list[Any], failures: dict[str, ExportError]) -> None:
        first = next(iter(failures.values()))
        # One failure says it all in its own line (its path names the session); several
        # are each printed before this summary.
        message = str(first) if len(failures) == 1 else (
            f"{len(failures)} sessions not exported ({', '.join(failures)}), every other "
            "session was; the journal is intact: fix the causes above and run `evstore "
            "project` again"
        )
        super().__init__(message, path=first.path, errno_code=first.errno_code,
                         attempts=first.attempts)
        self.results = results
        self.failures = failures


class FixLimitError(EvstoreError):
    """A task failed again after its last allowed fix task (docs/design.md §9)."""

    exit_code = 6

    def __init__(self, message: str, *, history: list[str]) -> None:
        super().__init__(message)
        self.history = history
