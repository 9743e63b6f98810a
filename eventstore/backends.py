"""Which backend serves a journal location: the one module that knows both by name.

A `postgresql://` (or `postgres://`) URL, or a libpq `key=value` string, is a server;
anything else is an SQLite file. The PostgreSQL backend is imported only when asked for,
so a machine without psycopg runs every SQLite command.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eventstore.errors import JournalError
from eventstore.locate import find_journal, is_url, journal_from_env
from eventstore.records import utc_now

if TYPE_CHECKING:
    import os
    from collections.abc import Callable
    from datetime import datetime

    from eventstore.persistence import Durability, Journal
    from eventstore.records import JournalFile


def open_journal(  # noqa: PLR0913 - every knob is keyword-only and has a default
    db: str | os.PathLike[str] | None = None,
    *,
    create: bool = False,
    read_only: bool = False,
    durability: Durability = "full",
    clock: Callable[[], datetime] = utc_now,
    tool: str = "evstore-lib",
) -> Journal:
    """The journal at `db` (default: `EVSTORE_DB`, else `.evstore/journal.db` found like
    git finds .git). `read_only` applies to an SQLite file (a server journal is read
    through its own permissions)."""
    if db is None and is_url(journal_from_env()):
        db = journal_from_env()
    if is_url(db):
        try:
            from eventstore.postgres import PostgresJournal  # noqa: PLC0415 - psycopg only when asked
        except ImportError as exc:
            raise JournalError(
                f"a PostgreSQL journal needs psycopg ({exc}): pip install 'evstore[postgres]'"
            ) from None
        return PostgresJournal(str(db), create=create, durability=durability, clock=clock,
                               tool=tool)
    from eventstore.sqlite import SQLiteJournal  # noqa: PLC0415 - the default, loaded on use

    path = Path(db) if db is not None else find_journal(Path.cwd())
    return SQLiteJournal(path, create=create, read_only=read_only, durability=durability,
                         clock=clock, tool=tool)


def inspect_journal_file(path: Path) -> JournalFile:
    """The journal file at `path`, read without writing anything (only the SQLite backend
    keeps one); FileNotFoundError when there is none."""
    from eventstore.sqlite import SQLiteJournal  # noqa: PLC0415

    return SQLiteJournal.inspect_file(path)


def export_dirs_in_file(path: Path) -> dict[str, str]:
    """Each session's latest export dir in the journal file at `path` (another project's),
    read without touching it (no migration, no -wal/-shm made); {} when unreadable."""
    from eventstore.sqlite import SQLiteJournal  # noqa: PLC0415

    return SQLiteJournal.export_dirs_of_file(path)
