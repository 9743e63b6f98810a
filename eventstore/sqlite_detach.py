"""Close an SQLite connection without checkpointing its WAL (docs/design.md §3).

Closing the last connection to a WAL journal copies the WAL into the database file and
deletes the `-wal` by name. For a connection still reading a WAL that was removed (or a
journal file replaced) that would write a lost timeline over the journal at the path and
delete the live WAL with the acknowledged events in it. SQLite's
SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE prevents both; Python exposes it from 3.12
(`Connection.setconfig`), so on 3.11 it is set through the C API on the connection's
handle, after checking that the handle is this connection's.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from eventstore.logs import get_logger

if TYPE_CHECKING:
    import sqlite3

log = get_logger("evstore.journal")

SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE = 1006
# CPython's pysqlite_Connection starts with PyObject_HEAD, then `sqlite3 *db`.
_HANDLE_OFFSET = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)


def close_without_checkpoint(conn: sqlite3.Connection, path: Path) -> None:
    if not _no_checkpoint_on_close(conn, path):
        log.warning("journal_close_may_checkpoint", path=str(path),
                    hint="the stale connection could not be told not to checkpoint")
    conn.close()


def _no_checkpoint_on_close(conn: sqlite3.Connection, path: Path) -> bool:
    setconfig = getattr(conn, "setconfig", None)
    if setconfig is not None:  # Python >= 3.12
        setconfig(SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, True)  # noqa: FBT003 - sqlite3's positional-only API
        return True
    if sys.version_info[:2] != (3, 11) or hasattr(sys, "gettotalrefcount"):
        return False  # the struct layout below is CPython 3.11's release build, nothing else
    try:
        import _sqlite3  # noqa: PLC0415 - the C module linked to the SQLite in use

        lib = ctypes.CDLL(_sqlite3.__file__)
        handle = ctypes.c_void_p.from_address(id(conn) + _HANDLE_OFFSET).value
        lib.sqlite3_db_filename.restype = ctypes.c_char_p
        lib.sqlite3_db_filename.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        name = lib.sqlite3_db_filename(handle, b"main")
        if name is None or Path(name.decode()).name != path.name:
            return False  # not the layout expected: touch nothing
        done = ctypes.c_int(0)
        lib.sqlite3_db_config.restype = ctypes.c_int
        rc = lib.sqlite3_db_config(ctypes.c_void_p(handle),
                                   ctypes.c_int(SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE),
                                   ctypes.c_int(1), ctypes.byref(done))
    except (OSError, AttributeError, ValueError):
        return False
    return rc == 0 and done.value == 1
