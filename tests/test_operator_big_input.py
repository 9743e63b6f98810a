"""Issue 11, item 18: a very large `append --jsonl` streams.

Real `evstore` processes on real journals: peak memory stays flat however many lines
there are, validation runs without the write lock, running out of memory is reported as
such (exit 5) and writes nothing, and an append staged before another writer's commit is
validated again against what that writer did.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import orjson
import pytest
from support import INITIAL, SESSION, evstore_bin, snapshot

from eventstore import Store
from eventstore.errors import InvalidInputError
from eventstore.events import ItemStatusChanged
from projections import DEFAULT

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LINES = 200_000
STATUSES = ("Planned", "Researching", "Implementing", "Complete")


def item_ids() -> list[str]:
    found: list[str] = []
    stack = list(orjson.loads(INITIAL.read_bytes())["backlog"])
    while stack:
        item = stack.pop()
        found.append(item["id"])
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key, []))
    return found


def write_updates(path: Path, lines: int, *, last: bytes | None = None) -> Path:
    ids = item_ids()
    with path.open("wb") as out:
        for n in range(lines):
            out.write(orjson.dumps({"item_id": ids[n % len(ids)], "status": STATUSES[n % 4]}))
            out.write(b"\n")
        if last is not None:
            out.write(last + b"\n")
    return path


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose journal holds the real backlog as SESSION, made once by the CLI."""
    root = tmp_path_factory.mktemp("seeded") / "project"
    plan = root / "plan" / SESSION
    plan.mkdir(parents=True)
    shutil.copyfile(INITIAL, plan / "tasks.json")
    for argv in (["init"], ["import", f"plan/{SESSION}/tasks.json", "--session", SESSION]):
        done = subprocess.run([evstore_bin(), *argv], cwd=root, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def project(seeded_template: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(seeded_template, root)
    return root


@pytest.fixture(scope="module")
def updates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_updates(tmp_path_factory.mktemp("input") / "updates.jsonl", LINES)


def journal_of(root: Path) -> Path:
    return root / ".evstore" / "journal.db"


def events_in(root: Path) -> int:
    conn = sqlite3.connect(journal_of(root))
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


# Forks the measured command from a fresh, small interpreter and reports its wait4 usage:
# a child forked straight from pytest starts with pytest's resident pages mapped, and
# Linux counts them in the child's peak RSS (hundreds of MiB late in a full run).
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(
    argv: list[str], cwd: Path, *, limit_bytes: int | None = None
) -> tuple[int, str, int]:
    """(exit status or -signal, stderr, peak RSS in MiB) of one real process."""
    prefix = [] if limit_bytes is None else [_prlimit(), f"--as={limit_bytes}"]
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}
    report = cwd / ".measured"
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _LAUNCHER, str(report), *prefix, evstore_bin(), *argv],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    code, maxrss_kib = (int(part) for part in report.read_text().split())
    report.unlink()
    return code, done.stderr.decode(), maxrss_kib // 1024


def _prlimit() -> str:
    found = shutil.which("prlimit")
    if found is None:
        pytest.skip("prlimit (util-linux) is needed to limit a process's address space")
    return found


def test_200k_lines_append_in_flat_memory_under_an_address_space_limit(
    project: Path, updates: Path
) -> None:
    """Today's main dies by SIGSEGV under this limit (it held every line as bytes, dict,
    model and row: over a gigabyte for these 9 MB); streamed, it stays near start-up size."""
    code, stderr, peak_mib = run_measured(
        ["append", "--session", SESSION, "--jsonl", str(updates)], project, limit_bytes=400 << 20,
    )
    assert code == 0, stderr
    assert peak_mib <= 150, f"peak RSS {peak_mib} MiB for {LINES:,} lines"
    assert events_in(project) == 2 + LINES


@pytest.mark.slow
def test_a_million_lines_stay_under_300_mb(project: Path, tmp_path: Path) -> None:
    """The issue's own case (44 MB, 1,000,000 lines: 5.5 GB peak on today's main), under a
    400 MB address-space limit."""
    million = write_updates(tmp_path / "million.jsonl", 1_000_000)
    code, stderr, peak_mib = run_measured(
        ["append", "--session", SESSION, "--jsonl", str(million)], project, limit_bytes=400 << 20,
    )
    assert code == 0, stderr
    assert peak_mib <= 300, f"peak RSS {peak_mib} MiB for 1,000,000 lines"
    assert events_in(project) == 2 + 1_000_000


def test_a_bad_last_line_is_refused_without_ever_taking_the_write_lock(
    project: Path, updates: Path, tmp_path: Path
) -> None:
    """Every line is checked against the session before the lock: today's main validated
    all 200,000 events inside the write transaction (seconds of other writers waiting)
    before it reached the unknown item on the last line."""
    bad = tmp_path / "bad.jsonl"
    shutil.copyfile(updates, bad)
    with bad.open("ab") as out:
        out.write(b'{"item_id": "P9.NOPE", "status": "Complete"}\n')
    before = snapshot(project)
    # Another writer holds the write lock the whole time: an append that needed it before
    # refusing would end busy (exit 5); one that validates first refuses (exit 2) unhindered.
    holder = sqlite3.connect(journal_of(project), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        code, stderr, _ = run_measured(
            ["append", "--session", SESSION, "--jsonl", str(bad)], project)
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert code == 2, stderr
    assert stderr.startswith("evstore: error: ")
    assert "unknown item 'P9.NOPE'" in stderr
    assert stderr.count("\n") == 1
    assert snapshot(project) == before


def test_running_out_of_memory_says_so_exits_5_and_writes_nothing(
    project: Path, tmp_path: Path
) -> None:
    """Today's main called a line it could not allocate "not valid JSON" (exit 2)."""
    huge = tmp_path / "huge.jsonl"
    write_updates(huge, 10, last=orjson.dumps(
        {"item_id": "P1", "status": "Complete", "reason": "x" * (160 << 20)}))
    before = snapshot(project)
    code, stderr, _ = run_measured(
        ["append", "--session", SESSION, "--jsonl", str(huge)], project, limit_bytes=300 << 20,
    )
    assert code == 5, stderr
    assert stderr.startswith("evstore: error: out of memory")
    assert stderr.count("\n") == 1, stderr
    assert "not valid JSON" not in stderr
    assert snapshot(project) == before


@pytest.fixture
def store(project: Path) -> Iterator[Store]:
    with Store.open(journal_of(project), projections=DEFAULT) as opened:
        yield opened


def without_shm(files: dict[str, bytes]) -> dict[str, bytes]:
    # The WAL index changes with every read lock of this test's own open connection.
    return {name: data for name, data in files.items() if not name.endswith("-shm")}


def other_writer(project: Path, line: bytes) -> None:
    done = subprocess.run(
        [evstore_bin(), "append", "--session", SESSION, "--jsonl", "-"], cwd=project,
        input=line + b"\n", capture_output=True, check=False,
    )
    assert done.returncode == 0, done.stderr


def staged_updates(item: str, count: int) -> Iterator[tuple[ItemStatusChanged, None]]:
    return ((ItemStatusChanged(item_id=item, status=STATUSES[n % 4]), None)  # type: ignore[arg-type]
            for n in range(count))


def test_a_staged_append_is_validated_again_when_another_writer_got_in_first(
    store: Store, project: Path
) -> None:
    """Validated at head H without the lock; another process removes the item; under the
    lock the head has moved, so the events are checked again and refused."""
    staged = store.stage(SESSION, staged_updates("P1.M1.T1.S1", 3000))
    other_writer(project, b'{"type": "ItemRemoved", "item_id": "P1.M1.T1.S1"}')
    before = without_shm(snapshot(project))
    with staged, pytest.raises(InvalidInputError, match=r"unknown item 'P1\.M1\.T1\.S1'"):
        store.append_staged(staged)
    assert without_shm(snapshot(project)) == before


def test_a_staged_append_still_valid_after_another_writer_lands_after_it(
    store: Store, project: Path
) -> None:
    staged = store.stage(SESSION, staged_updates("P1.M1.T1.S1", 3000))
    other_writer(project, b'{"item_id": "P1.M1.T1.S2", "status": "Complete"}')
    with staged:
        result = store.append_staged(staged)
    assert (result.first_seq, result.last_seq, result.count) == (4, 3003, 3000)
    tasks = store.state(SESSION, "tasks")
    assert tasks.item("P1.M1.T1.S1")["status"] == STATUSES[2999 % 4]
    assert tasks.item("P1.M1.T1.S2")["status"] == "Complete"


def test_appends_to_other_sessions_do_not_make_a_staged_append_validate_again(
    store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validity depends on the session's own events only: a busy project (other sessions
    appending all the time) must not push the validation under the lock."""
    validations: list[int] = []
    real = store._validator  # noqa: SLF001 - the seam that counts validation passes

    def counted(session: str, head: int, version: int) -> object:
        validations.append(head)
        return real(session, head, version)

    monkeypatch.setattr(store, "_validator", counted)
    staged = store.stage(SESSION, staged_updates("P1.M1.T1.S1", 10))
    with Store.open(journal_of(project), projections=DEFAULT) as other:
        other.create_session("other", "plan/other")
    with staged:
        assert store.append_staged(staged).first_seq == 4  # after the other session's event
    assert len(validations) == 1

    staged = store.stage(SESSION, staged_updates("P1.M1.T1.S1", 10))
    other_writer(project, b'{"item_id": "P1.M1.T1.S2", "status": "Complete"}')
    with staged:
        store.append_staged(staged)
    assert len(validations) == 3  # this session moved: validated again, under the lock


def test_staging_never_shows_unappended_events_in_state(store: Store) -> None:
    """Folds change states in place: staging validates on copies, so a state handed out
    before, and the state read after, show only what the journal holds."""
    before = store.state(SESSION, "tasks").item("P1.M1.T1.S1")["status"]
    handed_out = store.state(SESSION, "tasks")
    with store.stage(SESSION, staged_updates("P1.M1.T1.S1", 3)):  # ends Implementing
        assert handed_out.item("P1.M1.T1.S1")["status"] == before
        assert store.state(SESSION, "tasks").item("P1.M1.T1.S1")["status"] == before
    assert before != STATUSES[2]


def test_progress_without_a_known_total_while_staging(store: Store) -> None:
    """The library cannot count a stream before reading it: it reports (done, None), then
    the insert out of the staged count."""
    staging: list[tuple[int, int | None]] = []
    writing: list[tuple[int, int | None]] = []
    with store.stage(SESSION, staged_updates("P1.M1.T1.S1", 2500),
                     progress=lambda d, t: staging.append((d, t))) as staged:
        store.append_staged(staged, progress=lambda d, t: writing.append((d, t)))
    assert staging == [(1000, None), (2000, None), (2500, None)]
    assert writing == [(1000, 2500), (2000, 2500), (2500, 2500)]


def test_given_event_ids_survive_staging_and_make_a_retry_write_nothing(
    project: Path, tmp_path: Path
) -> None:
    """Ids come back from the staged file exactly (any character), and a retried file
    is recognised as the same append."""
    odd = 'id\twith "tab", quote\nand newline'
    lines = tmp_path / "ids.jsonl"
    lines.write_bytes(
        orjson.dumps({"item_id": "P1", "status": "Complete", "event_id": odd}) + b"\n"
        + orjson.dumps({"item_id": "P1.M1", "status": "Complete"}) + b"\n"
        + orjson.dumps({"item_id": "P1.M1.T1", "status": "Complete", "event_id": "plain-2"})
        + b"\n"
    )
    argv = ["append", "--session", SESSION, "--jsonl", str(lines)]
    assert run_measured(argv, project)[0] == 0
    conn = sqlite3.connect(journal_of(project))
    stored = [row[0] for row in conn.execute("SELECT event_id FROM events WHERE seq > 2")]
    conn.close()  # the last connection: the WAL is folded in, as after any evstore run
    assert stored[0] == odd
    assert stored[2] == "plain-2"
    assert len(stored[1]) == 36  # made for it
    before = snapshot(project)
    code, stderr, _ = run_measured(argv, project)
    assert code == 3, stderr  # only some ids present: a different append (the made one is new)
    assert snapshot(project) == before


@pytest.mark.slow
def test_more_event_ids_than_sqlite_binds_are_appended_then_recognised(
    project: Path, tmp_path: Path
) -> None:
    """Today's main looked the ids up as `IN (?, ?, ...)`: past SQLite's bound-variable
    limit (250,000 here) the append failed with "too many SQL variables" (exit 5)."""
    lines = tmp_path / "keyed.jsonl"
    with lines.open("wb") as out:
        for n in range(250_001):
            out.write(orjson.dumps({"item_id": "P1", "status": STATUSES[n % 4],
                                    "event_id": f"k{n}"}) + b"\n")
    argv = ["append", "--session", SESSION, "--jsonl", str(lines)]
    code, stderr, _ = run_measured(argv, project)
    assert code == 0, stderr
    before = snapshot(project)
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}
    again = subprocess.run([evstore_bin(), *argv], cwd=project, env=env, capture_output=True,
                           text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already appended (seq 3..250003): nothing written")
    assert snapshot(project) == before
