"""Real faults while opening and reading the journal.

Issue 11, items 14 and 15; docs/design.md §3, §10.

* A read-only bind mount under `.evstore/` (root): read-only commands read the journal
  there (SQLite's `immutable` open, no -shm to create), write commands say "read-only
  file system".
* libfiu (`fiu-run -x`) failing SQLite's pread(2): a read that fails once is retried and
  the command succeeds; random failures never make evstore advise a restore, which only
  an integrity check that finds damage may do.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import faultkit as fk
import pytest
from support import INITIAL, SESSION, seed, snapshot

from eventstore import Store
from eventstore.events import ItemStatusChanged
from projections import DEFAULT

pytestmark = pytest.mark.faults

Run = Callable[..., subprocess.CompletedProcess[str]]
ITEM = "P1.M1.T1.S1"
JOURNAL = Path(".evstore") / "journal.db"
PREAD = "posix/io/rw/pread"  # SQLite's unix VFS reads pages with pread(2)


@pytest.fixture
def project(project_dir: Path) -> Path:
    with Store.open(project_dir / JOURNAL, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        for n in range(40):  # a journal of many pages: many reads to fail
            status = "Complete" if n % 2 else "Implementing"
            store.append(SESSION, [ItemStatusChanged(item_id=ITEM, status=status)])
        store.project()
    return project_dir


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("evstore: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- item 15: a journal on read-only media --------------------------------------------------


@pytest.fixture
def read_only_state(project: Path) -> Iterator[Path]:
    """`.evstore/` bind-mounted read-only over itself: a real EROFS for the journal."""
    fk.require_root("a read-only bind mount needs CAP_SYS_ADMIN")
    state = project / ".evstore"
    for args in (["--bind", str(state), str(state)], ["-o", "remount,bind,ro", str(state)]):
        done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False,
                              timeout=30)
        if done.returncode != 0:
            subprocess.run(["umount", str(state)], capture_output=True, check=False, timeout=30)
            pytest.skip(f"`mount {' '.join(args)}` failed: {' '.join(done.stderr.split())}")
    probe = subprocess.run(["touch", str(state / "probe")], capture_output=True, text=True,
                           check=False, timeout=30)
    assert probe.returncode != 0, probe
    assert "Read-only file system" in probe.stderr, probe
    yield state
    done = subprocess.run(["umount", str(state)], capture_output=True, check=False, timeout=30)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(state)], capture_output=True, check=False, timeout=30)


@pytest.mark.usefixtures("read_only_state")
def test_read_only_commands_read_a_journal_on_read_only_media(
    project: Path, run: Run, tmp_path_factory: pytest.TempPathFactory
) -> None:
    before = snapshot(project)
    status = run("status", cwd=project)
    assert status.returncode == 0, status.stderr
    assert "head seq 42" in status.stdout
    log = run("log", "--json", cwd=project)
    assert log.returncode == 0, log.stderr
    assert len(log.stdout.splitlines()) == 42
    for command in (("show",), ("history", ITEM), ("errors",), ("doctor",)):
        result = run(*command, cwd=project)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
    out = tmp_path_factory.mktemp("replay")
    replay = run("replay", "--session", SESSION, "--out", str(out), cwd=project)
    assert replay.returncode == 0, replay.stderr
    exported = project / "plan" / SESSION / "tasks.json"
    assert (out / "tasks.json").read_bytes() == exported.read_bytes()
    assert snapshot(project) == before


@pytest.mark.usefixtures("read_only_state")
def test_write_commands_say_read_only_file_system(project: Path, run: Run) -> None:
    before = snapshot(project)
    for command in (("append", "--session", SESSION, ITEM, "Complete"), ("project",),
                    ("doctor", "--fix"), ("init",), ("--db", ".evstore/new.db", "init")):
        result = run(*command, cwd=project)
        assert result.returncode == 5, (command, result.stdout, result.stderr)
        line = one_error_line(result)
        assert "read-only file system" in line, line
    assert snapshot(project) == before


# --- item 14: a read error that may pass is not corruption ------------------------------------


@pytest.fixture(scope="module")
def libfiu_pread() -> None:
    fk.require_root("the fault tests run as root, like test_faults_injected.py")
    fk.require_tool("fiu-run", "libfiu's fiu-utils: injects errors into libc calls")


def fiu(command: str) -> list[str]:
    fiu_run = shutil.which("fiu-run")
    assert fiu_run is not None
    return [fiu_run, "-x", "-f", "", "-c", command]


@pytest.mark.usefixtures("libfiu_pread")
def test_a_read_that_fails_once_is_retried(project: Path) -> None:
    expected = fk.evstore("log", "--json", cwd=project)
    assert expected.returncode == 0
    once = fiu(f"enable name={PREAD},failinfo={errno.EIO},onetime")
    result = fk.evstore("--log-format", "json", "log", "--json", prefix=once, cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected.stdout
    (retry,) = fk.events_named(result.stderr, "journal_read_retry")
    assert "SQLITE_IOERR" in retry["error"]


@pytest.mark.usefixtures("libfiu_pread")
def test_random_read_errors_never_advise_a_restore(project: Path) -> None:
    """10% of pread(2) calls fail: every command either works (retrying) or says the read
    may pass; none calls the journal damaged, which it is not (checked after)."""
    expected = {args: fk.evstore(*args, cwd=project).stdout
                for args in (("log", "--json"), ("show", "--depth", "1"))}
    before = snapshot(project)
    flaky = fiu(f"enable_random name={PREAD},probability=0.1")
    worked = 0
    for _ in range(4):
        for args, stdout in expected.items():
            result = fk.evstore(*args, prefix=flaky, cwd=project)
            assert "backup" not in result.stderr, result.stderr
            assert "damaged" not in result.stderr, result.stderr
            if result.returncode == 0:
                worked += 1
                assert result.stdout == stdout
            else:
                assert result.returncode == 5, result.stderr
                assert "may pass" in one_error_line(result)
    assert worked >= 4  # retries get most reads through
    assert snapshot(project) == before
    assert fk.evstore("doctor", cwd=project).returncode == 0


def test_a_damaged_journal_is_called_damaged_once_checked(project: Path, run: Run) -> None:
    data = bytearray((project / JOURNAL).read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    leaves = [n for n in range(1, len(data) // page_size) if data[n * page_size] == 13]
    page = leaves[len(leaves) // 2]
    data[page * page_size:(page + 1) * page_size] = bytes(page_size)
    (project / JOURNAL).write_bytes(data)
    result = run("log", cwd=project)
    assert result.returncode == 5
    line = one_error_line(result)
    assert "is damaged: its integrity check fails" in line
    assert line.endswith("restore it from a backup")


@pytest.mark.usefixtures("libfiu_pread")
def test_appends_under_read_errors_write_exactly_what_they_acknowledge(project: Path) -> None:
    """Retrying reads must never retry one inside a write transaction that SQLite rolled
    back after the failed read: the rest would run outside any transaction. Each exit 0 is
    one event, each failure none."""
    def count() -> int:
        con = sqlite3.connect(project / JOURNAL)
        try:
            return int(con.execute("SELECT count(*) FROM events WHERE type = 'ItemStatusChanged'"
                                   " AND json_extract(data, '$.reason') = 'flaky'").fetchone()[0])
        finally:
            con.close()

    flaky = fiu(f"enable_random name={PREAD},probability=0.1")
    acknowledged = 0
    for n in range(8):
        status = "Complete" if n % 2 else "Implementing"
        result = fk.evstore("append", "--session", SESSION, ITEM, status, "--reason", "flaky",
                            prefix=flaky, cwd=project)
        assert "Traceback" not in result.stderr, result.stderr
        assert "cannot commit" not in result.stderr, result.stderr
        if result.returncode == 0:
            acknowledged += 1
        else:
            assert result.returncode == 5, result.stderr
            assert "backup" not in result.stderr
        assert count() == acknowledged
