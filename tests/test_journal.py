"""What only the SQLite journal has: WAL on disk, its file header, foreign databases.

The behaviour both journals share is in test_journal_contract.py, run on each backend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventstore import schema
from eventstore.errors import JournalCorruptError
from eventstore.events import ItemStatusChanged
from eventstore.sqlite import SQLiteJournal


def status(item: str = "P1", value: str = "Complete") -> ItemStatusChanged:
    return ItemStatusChanged(item_id=item, status=value)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> SQLiteJournal:
    j = SQLiteJournal(tmp_path / "j.db", create=True)
    yield j
    j.close()


def pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_new_journal_is_wal_full_and_at_the_latest_schema(journal: SQLiteJournal) -> None:
    """WAL mode on disk, synchronous=FULL (2) on the connection, user_version = latest."""
    assert pragma(journal.path, "journal_mode") == "wal"
    assert journal._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert journal._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert journal.schema_version == schema.latest_version("sqlite") == 6


def test_durability_normal_is_an_explicit_choice(tmp_path: Path) -> None:
    """--durability normal sets synchronous=NORMAL (1)."""
    with SQLiteJournal(tmp_path / "j.db", create=True, durability="normal") as j:
        assert j._conn.execute("PRAGMA synchronous").fetchone()[0] == 1


@pytest.mark.parametrize("content", [b"this is not a database at all", b"{\"backlog\": []}", b"\x00" * 4096])
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    """Garbage where the journal should be: exit 5, the file left as it was."""
    path = tmp_path / "j.db"
    path.write_bytes(content)
    with pytest.raises(JournalCorruptError, match="not an SQLite database") as caught:
        SQLiteJournal(path)
    assert caught.value.exit_code == 5
    assert path.read_bytes() == content
    assert not (tmp_path / "j.db-wal").exists()


def test_someone_elses_sqlite_database_is_not_adopted(tmp_path: Path) -> None:
    """An SQLite file with foreign tables and no evstore schema is refused, not migrated."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE people (name TEXT)")
    with pytest.raises(JournalCorruptError, match="not an evstore journal"):
        SQLiteJournal(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == [("people",)]

