"""Batched status updates (docs/design.md §7): validated at once, appended in one transaction."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eventstore import InvalidInputError, JournalBusyError, Store
from eventstore.sqlite import SQLiteJournal
from eventstore.retry import RetryPolicy
from projections import DEFAULT
from projections.backlog import BacklogState
from eventstore.jsonfmt import loads
from support import INITIAL, SESSION

SUBTASKS = [i for i in BacklogState(loads(INITIAL.read_bytes())).index if i.count(".") == 3]


def test_updates_wait_in_memory_until_flushed(store: Store) -> None:
    """update_item_status writes nothing; flush_updates appends all in one transaction."""
    session = store.session(SESSION)
    head = store.journal.head()
    for item in SUBTASKS[:5]:
        session.update_item_status(item, "Complete")
    assert store.journal.head() == head
    assert len(session.pending) == 5
    with capture_logs() as logs:
        stats = session.flush_updates()
    assert stats is not None
    assert (stats.items_written, stats.write_ops_saved, stats.efficiency) == (5, 4, "80.0%")
    written = list(store.journal.read(SESSION, after=head))
    assert [e.data["item_id"] for e in written] == SUBTASKS[:5]
    assert len({e.recorded_at for e in written}) == 1  # one transaction, one moment
    assert session.pending == ()
    (entry,) = [e for e in logs if e["event"] == "updates_flushed"]
    assert (entry["items_written"], entry["write_ops_saved"], entry["efficiency"]) == (5, 4, "80.0%")
    assert session.flush_updates() is None  # nothing pending: no-op


@pytest.mark.parametrize(("item", "status", "message"), [
    ("P9.M9", "Complete", "unknown item 'P9.M9'"),
    ("P1", "Done", "invalid status 'Done'"),
])
def test_bad_updates_raise_at_once(store: Store, item: str, status: str, message: str) -> None:
    session = store.session(SESSION)
    session.update_item_status("P1", "Implementing")
    with pytest.raises(InvalidInputError, match=message):
        session.update_item_status(item, status)
    assert len(session.pending) == 1


def test_a_failed_flush_keeps_every_pending_update(project_dir: Path, store: Store) -> None:
    """The journal is held by another writer: the flush fails whole, nothing is written,
    the updates stay pending, and the next flush writes them all."""
    journal = SQLiteJournal(store.journal.path, busy_timeout_ms=20, busy_retry=RetryPolicy(retries=0))
    other = Store(journal, projections=DEFAULT)
    session = other.session(SESSION)
    for item in SUBTASKS[:3]:
        session.update_item_status(item, "Complete")
    head = journal.head()
    blocker = sqlite3.connect(journal.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(JournalBusyError):
            session.flush_updates()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert journal.head() == head
    assert [u.item_id for u in session.pending] == SUBTASKS[:3]
    stats = session.flush_updates()
    assert stats is not None
    assert stats.items_written == 3
    assert journal.head() == head + 3
    other.close()


def test_concurrent_flushes_from_threads_lose_nothing(store: Store) -> None:
    """8 threads share one session handle, updating and flushing at will: every update is
    appended exactly once, versions stay contiguous."""
    session = store.session(SESSION)
    head = store.journal.head()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(25):
            session.update_item_status(SUBTASKS[(n * 25 + i) % len(SUBTASKS)], "Complete", reason=f"{n}-{i}")
            if i % 5 == 4:
                session.flush_updates()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    session.flush_updates()
    written = list(store.journal.read(SESSION, after=head))
    assert sorted(e.data["reason"] for e in written) == sorted(f"{n}-{i}" for n in range(8) for i in range(25))
    versions = [e.version for e in store.journal.read(SESSION)]
    assert versions == list(range(1, len(versions) + 1))


def test_threads_with_their_own_stores_serialize_on_the_journal(store: Store) -> None:
    """Separate connections (as separate processes would have) contend for the write lock;
    busy is waited out and no flush is lost."""
    head = store.journal.head()

    def worker(n: int) -> None:
        with Store.open(store.journal.path, projections=DEFAULT) as mine:
            session = mine.session(SESSION)
            for i in range(20):
                session.update_item_status(SUBTASKS[i], "Implementing", reason=f"{n}-{i}")
                if i % 4 == 3:
                    session.flush_updates()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.journal.head() == head + 80
