"""What lies at the journal's path, looked at before SQLite may touch it (docs/design.md §3).

`sqlite3.connect` opens anything: an empty file becomes a new database, a FIFO blocks the
open forever. So the path is judged first, by `stat` (which never blocks) and by reading
the 16-byte header; only a regular file that starts as an SQLite database is handed over.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import urllib.parse
from pathlib import Path

from eventstore.errors import (
    JournalCorruptError,
    JournalError,
    JournalNotFoundError,
    JournalWriteError,
)

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
