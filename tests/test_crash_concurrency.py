"""Crashes and concurrency against the real `evstore` command and real SQLite files.

Everything here runs real processes on a real journal: SIGKILL in the middle of a
20,000-event transaction, SIGKILL of a process that has acknowledged appends, several
writers at once, an `expected_version` race and concurrent exporters. The checks are
the journal's invariants (docs/design.md §3): integrity, whole batches only, a gap-free `seq`,
contiguous versions per stream, every acknowledged append durable, and files that are
projections (`evstore project` == `evstore replay`).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import INITIAL, SESSION, evstore_bin

from projections.backlog import BacklogState

pytestmark = pytest.mark.slow

Run = Callable[..., subprocess.CompletedProcess[str]]

STATUSES = ("Planned", "Researching", "Implementing", "Retrying", "Complete", "Failed", "Ready")
BATCH = 20_000  # lines per killed `append --jsonl`
RNG = random.Random(int(os.environ.get("EVSTORE_TEST_SEED", "0")) or None)


# --- helpers ------------------------------------------------------------------------------


def item_ids() -> list[str]:
    return list(BacklogState(json.loads(INITIAL.read_bytes())).index)


def jsonl(prefix: str, count: int, *, start: int = 0) -> bytes:
    """`count` status changes, each with its own event_id `<prefix>-<n>` (the batch marker)."""
    ids = item_ids()
    return b"".join(
        json.dumps(
            {
                "item_id": ids[n % len(ids)],
                "status": STATUSES[n % len(STATUSES)],
                "event_id": f"{prefix}-{n}",
            }
        ).encode()
        + b"\n"
        for n in range(start, start + count)
    )


def db_path(root: Path) -> Path:
    return root / ".evstore" / "journal.db"


def export_dir(root: Path) -> Path:
    return root / "plan" / SESSION


def connect(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(db_path(root), timeout=30)


def check_journal(root: Path) -> dict[str, Any]:
    """Assert the journal's invariants; return the facts the tests compare."""
    con = connect(root)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        seqs = [row[0] for row in con.execute("SELECT seq FROM events ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1)), "seq must be gap-free from 1"
        versions: dict[str, list[int]] = {}
        for stream, version in con.execute("SELECT stream, version FROM events ORDER BY seq"):
            versions.setdefault(stream, []).append(version)
        for stream, found in versions.items():
            assert found == list(range(1, len(found) + 1)), f"versions of {stream} not contiguous"
        return {"head": len(seqs), "versions": {s: len(v) for s, v in versions.items()}}
    finally:
        con.close()


def count_ids(root: Path, prefix: str) -> int:
    con = connect(root)
    try:
        return int(
            con.execute(
                "SELECT count(*) FROM events WHERE event_id LIKE ? ESCAPE '\\'",
                (prefix.replace("_", "\\_") + "-%",),
            ).fetchone()[0]
        )
    finally:
        con.close()


def tmp_files(root: Path) -> list[Path]:
    return sorted(export_dir(root).glob(".tasks.json.*.tmp"))


def assert_project_equals_replay(run: Run, root: Path, tag: str) -> None:
    projected = run("project")
    assert projected.returncode == 0, projected.stderr
    out = root.parent / f"replay-{tag}"
    replayed = run("replay", "--session", SESSION, "--out", str(out))
    assert replayed.returncode == 0, replayed.stderr
    assert (export_dir(root) / "tasks.json").read_bytes() == (out / "tasks.json").read_bytes()
    assert tmp_files(root) == []


@pytest.fixture
def seeded(project_dir: Path, run: Run) -> Path:
    """`evstore init` + `evstore import` of the real initial backlog, through the CLI."""
    done = run("init")
    assert done.returncode == 0, done.stderr
    done = run("import", f"plan/{SESSION}/tasks.json", "--session", SESSION)
    assert done.returncode == 0, done.stderr
    return project_dir


# A library client (docs/design.md §2): appends through `Store.append` and acknowledges each
# append on stdout only after it returned.
LIB_CHILD = r"""
import os, random, sys, time
from eventstore import Store
from eventstore.events import ItemStatusChanged
from projections import DEFAULT

db, session, prefix, total, batch, pace, go = sys.argv[1:8]
items = sys.argv[8:]
total, batch, pace = int(total), int(batch), float(pace)
statuses = ["Planned", "Researching", "Implementing", "Complete", "Retrying"]
with Store.open(db, projections=DEFAULT) as store:
    print("ready", flush=True)
    while go != "-" and not os.path.exists(go):
        time.sleep(0.002)
    n = 0
    while total == 0 or n < total:
        size = batch if batch > 0 else random.choice([1, 2, 3, 5, 8, 13])
        if total:
            size = min(size, total - n)
        events = [
            ItemStatusChanged(item_id=items[(n + k) % len(items)], status=statuses[(n + k) % 5])
            for k in range(size)
        ]
        ids = [f"{prefix}-{n + k}" for k in range(size)]
        result = store.append(session, events, event_ids=ids)
        print(result.first_seq, result.last_seq, ids[0], ids[-1], flush=True)
        n += size
        if pace:
            time.sleep(random.uniform(0, pace))
print("done", flush=True)
"""


def lib_child(root: Path, prefix: str, *, total: int, batch: int, pace: float = 0.0,
              go: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", LIB_CHILD, str(db_path(root)), SESSION, prefix, str(total),
         str(batch), str(pace), str(go) if go else "-", *item_ids()[:40]],
        cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )


# --- 1. SIGKILL in the middle of a long append --jsonl ------------------------------------


def _wal_size(root: Path) -> int:
    try:
        return (db_path(root).parent / "journal.db-wal").stat().st_size
    except FileNotFoundError:
        return 0


def _kill_round(root: Path, procs: list[subprocess.Popen[Any]], prefix: str, mode: str,
                delay: float) -> tuple[int | None, float]:
    """Start `append --jsonl -` of BATCH lines and SIGKILL it per `mode`; return (rc, t)."""
    data = jsonl(prefix, BATCH)
    started = time.monotonic()
    proc = subprocess.Popen(
        [evstore_bin(), "append", "--session", SESSION, "--jsonl", "-"],
        cwd=root, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    procs.append(proc)
    assert proc.stdin is not None
    stdin = proc.stdin

    def feed(payload: bytes, *, close: bool) -> None:
        try:
            stdin.write(payload)
            stdin.flush()
            if close:
                stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # killed while we were still writing: that is the point

    if mode == "pipe":
        # The writer is still producing lines: the batch never reached EOF.
        feeder = threading.Thread(target=feed, args=(data[: len(data) // 2],), kwargs={"close": False})
        feeder.start()
        time.sleep(delay)
    else:
        feeder = threading.Thread(target=feed, args=(data,), kwargs={"close": True})
        feeder.start()
        if mode == "committed":
            # Kill right after the commit became visible to another reader: the process
            # may not even have printed its answer, but the batch is durable.
            last_id = f"{prefix}-{BATCH - 1}"
            con = connect(root)
            try:
                deadline = started + 30
                while proc.poll() is None and time.monotonic() < deadline:
                    if con.execute("SELECT 1 FROM events WHERE event_id = ?", (last_id,)).fetchone():
                        break
                    time.sleep(0.0005)
            finally:
                con.close()
        elif mode == "locked":
            # Kill while it holds the journal's write lock (BEGIN IMMEDIATE, validating or
            # inserting): seen from here as a refused BEGIN IMMEDIATE.
            con = sqlite3.connect(db_path(root), timeout=0, isolation_level=None)
            try:
                deadline = started + 30
                while proc.poll() is None and time.monotonic() < deadline:
                    try:
                        con.execute("BEGIN IMMEDIATE")
                        con.execute("ROLLBACK")
                    except sqlite3.OperationalError:
                        time.sleep(delay)
                        break
                    time.sleep(0.002)
            finally:
                con.close()
        elif mode == "wal":
            # Kill once the transaction has spilled uncommitted pages into the WAL:
            # the insert is under way, the commit has not happened.
            base = _wal_size(root)
            deadline = started + 30
            while proc.poll() is None and time.monotonic() < deadline:
                if _wal_size(root) > base + 512 * 1024:
                    break
                time.sleep(0.0005)
        else:
            time.sleep(delay)
    killed_at = time.monotonic() - started
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    feeder.join(timeout=30)
    if not stdin.closed:
        try:
            stdin.close()
        except BrokenPipeError:
            pass
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    assert proc.returncode in (0, -signal.SIGKILL), stderr
    return proc.returncode, killed_at


def test_sigkill_mid_jsonl_batch_leaves_whole_batches_only(
    seeded: Path, run: Run, procs: list[subprocess.Popen[Any]]
) -> None:
    root = seeded
    rounds = [
        ("pipe", 0.6),                        # stdin still being written
        ("early", RNG.uniform(0.05, 0.4)),    # while starting / parsing
        ("wal", 0.0),                         # mid-insert, uncommitted frames in the WAL
        ("mid", RNG.uniform(0.5, 1.1)),       # validating inside BEGIN IMMEDIATE
        ("late", RNG.uniform(1.1, 1.8)),      # around commit / close
        ("committed", 0.0),                   # just after the commit, before exit
        ("locked", RNG.uniform(0.0, 0.3)),    # holding the write lock
    ]
    outcomes = []
    before = check_journal(root)
    expected_head = before["head"]
    for number, (mode, delay) in enumerate(rounds):
        prefix = f"kill{number}"
        rc, killed_at = _kill_round(root, procs, prefix, mode, delay)
        facts = check_journal(root)  # integrity, gap-free seq, contiguous versions
        present = count_ids(root, prefix)
        outcomes.append((mode, round(killed_at, 3), rc, present))
        assert present in (0, BATCH), f"partial batch after SIGKILL: {outcomes}"
        if rc == 0:
            assert present == BATCH, outcomes
        if mode == "pipe":
            assert present == 0, "a batch whose stdin never ended must not be appended"
        if mode == "committed":
            assert present == BATCH, "a committed batch must survive SIGKILL of its writer"
        # No other event appeared or vanished: the head moved by exactly this batch.
        expected_head += present
        assert facts["head"] == expected_head, outcomes
        # The next writer (and exporter) is not blocked by the dead one's locks.
        projected = run("project")
        assert projected.returncode == 0, projected.stderr
        assert tmp_files(root) == []
    print("kill rounds (mode, seconds, rc, events):", outcomes)  # noqa: T201 - shown with -s
    assert any(rc == -signal.SIGKILL and n == 0 for _, _, rc, n in outcomes[1:]), outcomes
    # Whatever survived, tasks.json is exactly what the journal alone rebuilds.
    assert_project_equals_replay(run, root, "kill")
    # And the journal still takes a whole batch afterwards.
    done = run("append", "--session", SESSION, "--jsonl", "-", input=jsonl("after", 100).decode())
    assert done.returncode == 0, done.stderr
    assert count_ids(root, "after") == 100
    check_journal(root)


# --- 2. acknowledged appends survive SIGKILL ------------------------------------------------


def test_sigkill_after_ack_loses_no_acknowledged_append(
    seeded: Path, procs: list[subprocess.Popen[Any]]
) -> None:
    root = seeded
    for number in range(2):
        prefix = f"ack{number}"
        child = lib_child(root, prefix, total=0, batch=1)
        procs.append(child)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        acked: list[tuple[int, str]] = []
        stop_after = RNG.randint(20, 300)
        while len(acked) < stop_after:
            line = child.stdout.readline()
            assert line, f"child died: {child.stderr.read() if child.stderr else ''}"
            first, last, eid, _ = line.split()
            assert first == last
            acked.append((int(first), eid))
        os.kill(child.pid, signal.SIGKILL)
        # Lines already written to the pipe were acknowledged too.
        for line in child.stdout.read().splitlines():
            first, _, eid, _ = line.split()
            acked.append((int(first), eid))
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        check_journal(root)
        con = connect(root)
        try:
            stored = dict(
                con.execute(
                    "SELECT event_id, seq FROM events WHERE stream = ? AND event_id LIKE ?",
                    (SESSION, f"{prefix}-%"),
                ).fetchall()
            )
        finally:
            con.close()
        for seq, eid in acked:
            assert stored.get(eid) == seq, f"acknowledged append {eid} (seq {seq}) lost"
        # At most the one append in flight at the kill is there without an acknowledgement.
        assert len(stored) - len(acked) in (0, 1)


# --- 3. four concurrent writers -------------------------------------------------------------


def test_four_concurrent_writers_2000_events_no_gaps(
    seeded: Path, run: Run, procs: list[subprocess.Popen[Any]]
) -> None:
    root = seeded
    before = check_journal(root)
    go = root / "go"
    # Two library processes: one event per transaction, and small random batches.
    lib_single = lib_child(root, "w-single", total=500, batch=1, pace=0.006, go=go)
    lib_batches = lib_child(root, "w-batches", total=500, batch=0, pace=0.02, go=go)
    procs.extend([lib_single, lib_batches])
    for child in (lib_single, lib_batches):
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"

    cli_results: dict[str, list[subprocess.CompletedProcess[str]]] = {"w-cli": [], "w-mixed": []}
    binary = evstore_bin()

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: PLW1510 - the exit code is checked by the test
            [binary, *args], cwd=root, input=stdin, capture_output=True, text=True, timeout=120
        )

    def cli_batches(name: str, singles: int, batches: list[int]) -> None:
        n = 0
        ids = item_ids()
        for _ in range(singles):  # single appends through the command line
            cli_results[name].append(cli(
                "append", "--session", SESSION, ids[n % len(ids)], "Implementing",
                "--event-id", f"{name}-{n}",
            ))
            n += 1
        for size in batches:  # small --jsonl batches, one transaction each
            cli_results[name].append(cli(
                "append", "--session", SESSION, "--jsonl", "-",
                stdin=jsonl(name, size, start=n).decode(),
            ))
            n += size
        assert n == 500

    threads = [
        threading.Thread(target=cli_batches, args=("w-cli", 0, [50] * 10)),
        threading.Thread(target=cli_batches, args=("w-mixed", 3, [71] * 7)),
    ]
    go.touch()
    for thread in threads:
        thread.start()
    outs = {}
    for name, child in (("w-single", lib_single), ("w-batches", lib_batches)):
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.rstrip().endswith("done")
        outs[name] = out
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive()
    for name, results in cli_results.items():
        for result in results:
            assert result.returncode == 0, f"{name}: {result.stderr}"
    assert len(cli_results["w-cli"]) == 10
    assert len(cli_results["w-mixed"]) == 10

    after = check_journal(root)  # gap-free seq, contiguous versions, integrity
    assert after["head"] - before["head"] == 2000
    assert after["versions"][SESSION] - before["versions"][SESSION] == 2000
    for name in ("w-single", "w-batches", "w-cli", "w-mixed"):
        assert count_ids(root, name) == 500, name
    # Every acknowledged library append sits at the seq it was acknowledged with.
    con = connect(root)
    try:
        writers = [
            row[0].rsplit("-", 1)[0]
            for row in con.execute(
                "SELECT event_id FROM events WHERE seq > ? ORDER BY seq", (before["head"],)
            )
        ]
        switches = sum(1 for a, b in zip(writers, writers[1:]) if a != b)
        print("writer switches:", switches)  # noqa: T201 - shown with -s
        # The writers really overlapped: their transactions interleave in the journal.
        assert switches >= 8, f"writers ran one after another ({switches} switches)"
        for name, out in outs.items():
            for line in out.splitlines()[:-1]:
                first, last, first_id, last_id = line.split()
                rows = con.execute(
                    "SELECT event_id FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq",
                    (int(first), int(last)),
                ).fetchall()
                assert rows[0][0] == first_id and rows[-1][0] == last_id, name
                assert all(r[0].startswith(f"{name}-") for r in rows), "a batch was interleaved"
    finally:
        con.close()
    assert_project_equals_replay(run, root, "writers")


# --- 4. expected_version race ---------------------------------------------------------------


def test_expected_version_race_exactly_one_winner(
    seeded: Path, procs: list[subprocess.Popen[Any]]
) -> None:
    root = seeded
    binary = evstore_bin()
    ids = item_ids()
    for attempt in range(2):
        version = check_journal(root)["versions"][SESSION]
        racers = [
            subprocess.Popen(
                [binary, "append", "--session", SESSION, ids[n], "Complete",
                 "--expected-version", str(version)],
                cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for n in range(6)
        ]
        procs.extend(racers)
        results = [(*p.communicate(timeout=60), p.returncode) for p in racers]
        results = [(rc, out, err) for out, err, rc in results]
        codes = sorted(rc for rc, _, _ in results)
        assert codes == [0, 3, 3, 3, 3, 3], (attempt, results)
        for rc, _, err in results:
            if rc == 3:
                lines = err.splitlines()
                assert len(lines) == 1, err
                assert lines[0].startswith("evstore: error:")
                assert f"expected {version}" in lines[0]
        after = check_journal(root)
        assert after["versions"][SESSION] == version + 1


# --- 5. concurrent exporters ----------------------------------------------------------------


def test_concurrent_project_one_valid_file(
    seeded: Path, run: Run, procs: list[subprocess.Popen[Any]]
) -> None:
    root = seeded
    assert run("project").returncode == 0
    done = run("append", "--session", SESSION, "--jsonl", "-", input=jsonl("proj", 300).decode())
    assert done.returncode == 0, done.stderr
    binary = evstore_bin()
    exporters = [
        subprocess.Popen([binary, "project", "--json"], cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    procs.extend(exporters)
    outputs = [p.communicate(timeout=60) for p in exporters]
    for proc, (out, err) in zip(exporters, outputs, strict=True):
        assert proc.returncode == 0, err
    actions = [json.loads(out)[0]["action"] for out, _ in outputs]
    # The export lock serialises them: one writes, the others find it already done.
    assert sorted(actions) == ["unchanged", "unchanged", "unchanged", "written"], actions
    tasks = export_dir(root) / "tasks.json"
    json.loads(tasks.read_bytes())  # one valid document
    assert tmp_files(root) == []
    out = root.parent / "replay-concurrent"
    replayed = run("replay", "--session", SESSION, "--out", str(out))
    assert replayed.returncode == 0, replayed.stderr
    assert tasks.read_bytes() == (out / "tasks.json").read_bytes()
    check_journal(root)
