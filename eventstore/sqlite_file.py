"""The SQLite journal's file: what lies at its path, looked at before SQLite may touch it
(docs/design.md §3), SQLite's errors in evstore's terms, and what `doctor` reads of the file
without writing (§10).

`sqlite3.connect` opens anything: an empty file becomes a new database, a FIFO blocks the
open forever. So the path is judged first, by `stat` (which never blocks) and by reading
the 16-byte header; only a regular file that starts as an SQLite database is handed over.
`inspect_sqlite` then reads its schema version and integrity through a connection that
cannot write (SQLiteJournal would migrate an old journal on open).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from eventstore import schema
from eventstore.errors import (
    JournalBusyError,
    JournalCorruptError,
    JournalError,
    JournalNotFoundError,
    JournalReadError,
    JournalSchemaError,
    JournalWriteError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

_T = TypeVar("_T")

SQLITE_HEADER = b"SQLite format 3\x00"

_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def open_read_only(path: Path, *, timeout_s: float = 5.0) -> tuple[sqlite3.Connection, bool]:
    """(a connection that reads `path` and cannot write it, whether it is immutable),
    having really opened the file (SQLite opens lazily, on the first statement).

    Where the file and its directory are writable: a normal connection with
    `query_only`, which SQLite holds to, and which removes the -wal and -shm on close
    like any other (`mode=ro` would leave them behind, empty). Elsewhere `mode=ro`; and on
    read-only media, where SQLite cannot create the -shm a WAL reader needs
    (SQLITE_CANTOPEN), `immutable=1`, exact only while no commit waits in the -wal: with
    one there, JournalError rather than a silently older journal. SQLite errors of the
    first read are raised as they are, for the caller to judge and retry.
    """
    if os.access(path, os.W_OK) and os.access(path.parent, os.W_OK):
        conn = _connect_uri(f"file:{urllib.parse.quote(str(path.absolute()))}", timeout_s)
        try:
            conn.execute("PRAGMA query_only=ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            conn.close()
            raise
        return conn, False
    conn = _connect_uri(read_only_uri(path), timeout_s)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        conn.close()
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not (name.startswith("SQLITE_CANTOPEN") and on_read_only_file_system(path)):
            raise
        if wal_holds_commits(path):
            raise JournalError(
                f"journal {path} is on a read-only file system and its write-ahead log "
                f"{path}-wal holds commits that SQLite cannot read there: copy the journal "
                "with its -wal file to writable storage and pass --db"
            ) from None
        conn = _connect_uri(read_only_uri(path, immutable=True), timeout_s)
        return conn, True
    return conn, False


def _connect_uri(uri: str, timeout_s: float) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None,
                           check_same_thread=False)


def check_journal_file(path: Path, *, create: bool) -> bool:
    """Whether a journal file exists at `path` (False only when `create` allows a new one).

    Raises JournalNotFoundError when nothing is there and `create` is false, and
    JournalCorruptError for anything that is not a regular file holding an SQLite
    database: a directory, a FIFO, an empty file, another format. An empty file is never
    taken for a new journal: the journal it held is gone, and pretending otherwise would
    turn the files it projected into orphans of an empty history.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        if create:
            return False
        raise JournalNotFoundError(
            f"no journal at {path}: run `evstore init` in the project root, or pass --db"
        ) from None
    except OSError as exc:
        raise _unreadable(path, exc) from None
    defect = journal_file_defect(path, info)
    if defect is not None:
        what, remedy = defect
        raise JournalCorruptError(f"journal {path} {what}: {remedy}")
    return True


def journal_file_defect(path: Path, info: os.stat_result) -> tuple[str, str] | None:
    """(why the existing `path` cannot be a journal, what to do), or None when it can."""
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file", "pass --db with a journal file"
    for is_kind, kind in _KINDS:
        if is_kind(info.st_mode):
            return f"is {kind}, not a journal file", "pass --db with an evstore journal"
    if info.st_size == 0:
        remedy = ("restore it from a backup, or delete it and run `evstore init` if it never "
                  "held events")
        return "is an empty file (0 bytes), not an evstore journal", remedy
    if _read_header(path) != SQLITE_HEADER:
        return "is not an SQLite database", "pass --db with an evstore journal"
    return None


def _read_header(path: Path) -> bytes:
    # O_NONBLOCK: should the file have been swapped for a FIFO since the stat, the open
    # returns at once instead of waiting for a writer that never comes.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    try:
        return os.read(fd, len(SQLITE_HEADER))
    except OSError as exc:
        raise _unreadable(path, exc) from None
    finally:
        os.close(fd)


def _unreadable(path: Path, exc: OSError) -> JournalError:
    name = errno.errorcode.get(exc.errno or 0, "")
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        return JournalError(
            f"journal {path} cannot be opened: too many open files ({name}): raise the "
            "open-file limit (ulimit -n) and run the command again"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return JournalWriteError(
            f"journal {path} cannot be read: {exc.strerror} ({name}): fix its permissions"
        )
    reason = f"{exc.strerror or exc} ({name or exc.errno})"
    return JournalError(f"journal {path} cannot be read: {reason}")


def read_only_uri(path: Path, *, immutable: bool = False) -> str:
    """The URI SQLite opens `path` read-only with; `immutable` also tells SQLite that
    nobody writes the file, so it needs no -shm (a journal on read-only media)."""
    quoted = urllib.parse.quote(str(path.absolute()))
    return f"file:{quoted}?mode=ro" + ("&immutable=1" if immutable else "")


def on_read_only_file_system(path: Path) -> bool:
    """Whether `path` (or, when it does not exist yet, its directory) is on a file system
    mounted read-only."""
    for candidate in (path, path.parent):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def wal_holds_commits(path: Path) -> bool:
    """Whether `path`'s write-ahead log has frames not yet copied into the main file
    (a writer crashed or is running): an immutable open would not see them."""
    try:
        return Path(f"{path}-wal").stat().st_size > 0
    except FileNotFoundError:
        return False


# --- SQLite's errors in evstore's terms -----------------------------------------------------------

_BUSY_NAMES = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_BUSY_SNAPSHOT"})
_CORRUPT_NAMES = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})
# Errors of reading a page that say nothing about the file's contents.
_READ_ERROR_NAMES = frozenset({
    "SQLITE_IOERR", "SQLITE_IOERR_READ", "SQLITE_IOERR_SHORT_READ", "SQLITE_IOERR_CORRUPTFS",
    "SQLITE_IOERR_SHMREAD", "SQLITE_IOERR_SHMMAP", "SQLITE_IOERR_NOMEM",
})
_UNREAD_PAGE = "failed to get page"
_UNREAD_PAGE_TOO = "unable to get the page"


def translate(exc: sqlite3.Error, path: Path) -> JournalError:  # noqa: PLR0911 - one per result-code family
    """Map an sqlite3 error to evstore's tree by SQLite's result code, never its message."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name in _BUSY_NAMES or (not name and "locked" in str(exc)):
        return JournalBusyError(f"journal {path} is busy: another writer holds it ({exc})")
    if name in _CORRUPT_NAMES or name.startswith("SQLITE_CORRUPT"):
        # A malformed page can be a read that failed on its way from the disk: damage is
        # only said (with a restore to advise) once an integrity check finds it.
        return JournalReadError(
            f"journal {path} could not be read ({name}: {exc}): no integrity check confirms "
            "damage, so this may be a passing read error: run the command again; if it "
            "persists, run `evstore doctor`",
            suspect_damage=True,
        )
    if name in _READ_ERROR_NAMES:
        return JournalReadError(
            f"journal {path} could not be read ({name}: {exc}): an I/O error that may pass: "
            "run the command again; if it persists, check the disk (dmesg)"
        )
    if name == "SQLITE_IOERR_FSYNC":
        # The commit's frames may be in the WAL already: after a crash SQLite can recover
        # them. Saying "not written" would invite a duplicate append.
        return JournalWriteError(
            f"journal {path}: the commit could not be made durable ({name}: {exc}); its "
            "outcome is unknown: check `evstore log` before appending again, or retry with "
            "the same --event-id"
        )
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY")) and on_read_only_file_system(path):
        return JournalWriteError(
            f"journal {path} is on a read-only file system ({name}): commands that write "
            "need it writable; the read-only ones (status, log, show, history, report, "
            "errors, doctor without --fix, replay --out) work as it is"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return JournalWriteError(
            f"journal {path} cannot be opened ({name}: {exc}): check the path, its "
            "permissions and the open-file limit (ulimit -n)"
        )
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY")):
        return JournalWriteError(
            f"journal {path} cannot be written ({name}: {exc}): free space or fix permissions"
        )
    return JournalError(f"journal {path}: {name or type(exc).__name__}: {exc}")


def check_findings(rows: Iterable[tuple[Any, ...]]) -> list[str]:
    """The lines of an integrity_check or quick_check result that report something."""
    return [line for (row, *_) in rows for line in str(row).splitlines()
            if line not in ("ok", "*** in database main ***")]


def read_failed_during_check(findings: Sequence[str]) -> bool:
    """Whether the check could not read some pages ("failed to get page 35", "unable to
    get the page. error code=266"): then its other findings (pages "never used") follow
    from that, and say nothing about the file."""
    return any(_UNREAD_PAGE in line or _UNREAD_PAGE_TOO in line for line in findings)


# --- what doctor reads of an SQLite journal -----------------------------------------------------


def inspect_sqlite(path: Path) -> tuple[int | None, list[str], bool]:
    """(user_version, integrity failures, whether it is another application's database),
    read without writing; a journal from a newer evstore is refused (JournalSchemaError)."""
    latest = schema.latest_version("sqlite")
    try:
        conn, _ = open_read_only(path)
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
    try:
        return retry_reads(lambda: examine_sqlite(conn, path, latest))
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not name.startswith("SQLITE_CORRUPT"):
            raise translate(exc, path) from exc  # an I/O error every time: exit 5
        # Malformed on every attempt: the check itself cannot get through the file.
        return None, [f"fails its integrity check: {exc}"], False
    finally:
        conn.close()


class ReadFailedDuringCheck(sqlite3.DatabaseError):
    """The integrity check could not read some pages: no verdict on the file."""

    sqlite_errorname = "SQLITE_IOERR_READ"


def retry_reads(read: Callable[[], _T], attempts: int = 9) -> _T:
    """`read()` again, briefly later, while SQLite fails to read a page in a way that may
    pass (an I/O error, or a malformed page met mid-read): on the same connection, which
    keeps the pages it did read, so each attempt gets further. The last error stands."""
    for attempt in range(attempts):
        try:
            return read()
        except sqlite3.DatabaseError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if attempt == attempts - 1 or not name.startswith(("SQLITE_IOERR", "SQLITE_CORRUPT")):
                raise
            time.sleep(min(0.2, 0.01 * 2 ** attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def examine_sqlite(
    conn: sqlite3.Connection, path: Path, latest: int
) -> tuple[int | None, list[str], bool]:
    """One attempt of `inspect_sqlite` on an open connection; errors that may pass are
    raised for `retry_reads`."""
    version = None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > latest:
            raise JournalSchemaError(
                f"journal {path} has schema version {version}, newer than this evstore "
                f"supports ({latest}): upgrade evstore"
            )
        findings = check_findings(conn.execute("PRAGMA integrity_check").fetchall())
        if read_failed_during_check(findings):
            raise ReadFailedDuringCheck(findings[0])
        failures = [f"fails its integrity check: {line}" for line in findings]
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master"
            " WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_IOERR")):
            raise  # for retry_reads: it may pass
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN")):
            raise translate(exc, path) from exc
        step = "cannot be read" if version is None else "fails its integrity check"
        return version, [f"{step}: {exc}"], False
    return version, failures, version == 0 and tables > 0
