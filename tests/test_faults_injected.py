"""Injected kernel-level faults under the real `evstore` command (issue 5, docs/design.md §6).

test_faults.py makes real faults with mounts (ENOSPC, EROFS). The errors a mount cannot
produce on demand are injected here without touching evstore's code:

* libfiu (`fiu-run -x`) makes one libc call fail with a chosen errno, once or every time:
  EIO, EBUSY, EAGAIN, ENFILE from rename(2)/fsync(2) during `evstore project`, and
  SQLite's own pwrite(2)/fdatasync(2) failing while `evstore append` commits;
* `setpriv` drops root's DAC capabilities so a 0555 directory really refuses (EACCES);
* `prlimit` lowers the descriptor limit (EMFILE).

Each test checks what the user sees (exit code, one line, the retry warnings) and what
must not happen (a changed or torn tasks.json, a leftover temp file, a lost or
half-written event). strace, when usable, shows which calls reached the kernel, so a
retry can be seen to redo the whole temp-write → fsync → rename sequence.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faultkit as fk
import pytest
from support import INITIAL, SESSION

pytestmark = pytest.mark.faults

ITEM = "P1.M1.T1.S1"  # Planned in the initial backlog
EXPORTS = Path("plan") / SESSION
RETRYABLE = ("EIO", "EBUSY", "EAGAIN", "ENFILE")


# --- a session ready to export, built once --------------------------------------------------


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.returncode, result.stderr)
    return result


@dataclass(frozen=True)
class Template:
    root: Path
    before: bytes  # tasks.json as exported before the pending event
    expected: bytes  # `evstore replay --out` of the journal: what the export must write


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """init + import + project + one pending append, built once. The journal keeps the
    export dir relative, so a copy of the directory is a working project of its own."""
    root = tmp_path_factory.mktemp("template")
    (root / EXPORTS).mkdir(parents=True)
    shutil.copyfile(INITIAL, root / EXPORTS / "tasks.json")
    ok(fk.evstore("init", cwd=root))
    ok(fk.evstore("import", str(EXPORTS / "tasks.json"), "--session", SESSION, cwd=root))
    ok(fk.evstore("project", cwd=root))
    ok(fk.evstore("append", "--session", SESSION, ITEM, "Complete", cwd=root))
    out = tmp_path_factory.mktemp("template-replay")
    ok(fk.evstore("replay", "--session", SESSION, "--out", str(out), cwd=root))
    template = Template(
        root, (root / EXPORTS / "tasks.json").read_bytes(), (out / "tasks.json").read_bytes()
    )
    assert item_status(template.before) == "Planned"
    assert item_status(template.expected) == "Complete"
    return template


def copy_project(template: Template, target: Path) -> None:
    shutil.rmtree(target / "plan", ignore_errors=True)
    shutil.copytree(template.root / "plan", target / "plan")
    shutil.copytree(template.root / ".evstore", target / ".evstore")


@pytest.fixture
def project(template: Template, project_dir: Path) -> Path:
    """The template copied into this test's project directory (the working directory)."""
    copy_project(template, project_dir)
    return project_dir


@pytest.fixture(scope="module")
def libfiu_works(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip unless libfiu's preload really makes this interpreter's rename(2) fail."""
    fk.require_root("the fault tests run as root, like test_faults.py")
    prefix = fk.fiu_prefix(fk.RENAME, errno.EIO)
    probe = tmp_path_factory.mktemp("fiu-probe") / "probe"
    got = fk.python_under(prefix, fk.PROBE_RENAME, str(probe))
    if got.returncode != 0 or got.stdout.strip() != "EIO":
        found = f"{got.stdout.strip()} {got.stderr.strip()}"
        pytest.skip(f"libfiu's preload does not make rename(2) fail here: {found}")


def journal_events(root: Path | None = None) -> list[dict[str, Any]]:
    """Every event, read straight from the journal file (no extra evstore run)."""
    db = (root or Path.cwd()) / ".evstore" / "journal.db"
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT seq, stream, type, data FROM events ORDER BY seq").fetchall()
    finally:
        con.close()
    return [{"seq": seq, "stream": stream, "type": kind, "data": json.loads(data)}
            for seq, stream, kind, data in rows]


def recorded_errors() -> list[dict[str, Any]]:
    return [e["data"] for e in journal_events() if e["type"] == "ErrorRecorded"]


def item_status(tasks: bytes, item: str = ITEM) -> str:
    from projections.backlog import BacklogState  # noqa: PLC0415

    return str(BacklogState(json.loads(tasks)).index[item][0]["status"])


def assert_event_kept(status: str) -> None:
    ours = [
        e for e in journal_events()
        if e["stream"] == SESSION and e["type"] == "ItemStatusChanged"
    ]
    assert ours, "the appended event is gone"
    assert (ours[-1]["data"]["item_id"], ours[-1]["data"]["status"]) == (ITEM, status)


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = fk.human_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("evstore: error: "), stderr
    return lines[0]


# --- 1a. a transient error once: one retry, then the file --------------------------------------


@pytest.mark.parametrize("point", [fk.RENAME, fk.FSYNC], ids=["rename", "fsync"])
@pytest.mark.parametrize("errno_name", RETRYABLE)
@pytest.mark.usefixtures("libfiu_works")
def test_transient_error_once_is_retried_and_recovers(
    project: Path, template: Template, point: str, errno_name: str
) -> None:
    tasks = project / EXPORTS / "tasks.json"  # one event (ITEM → Complete) not exported yet

    code = getattr(errno, errno_name)
    result = fk.evstore("--log-format", "json", "-v", "project",
                        prefix=fk.fiu_prefix(point, code, onetime=True))
    assert result.returncode == 0, result.stderr

    retries = fk.events_named(result.stderr, "export_retry")
    assert len(retries) == 1, result.stderr
    (retry,) = retries
    assert retry["errno"] == errno_name
    assert retry["attempt"] == 1
    assert retry["max_attempts"] == 4  # default --flush-retries 3
    assert retry["path"] == str(tasks)
    assert retry["pending_events"] == 1
    assert f"[Errno {code}]" in retry["error"]
    if point == fk.RENAME:  # the failing call was the rename of a temp file over the target
        assert ".tmp' -> '" in retry["error"]
        assert retry["error"].endswith("tasks.json'")
    assert fk.events_named(result.stderr, "export_failed") == []
    assert fk.human_lines(result.stderr) == [], result.stderr

    assert tasks.read_bytes() == template.expected  # what `evstore replay --out` writes
    assert fk.tmp_files(tasks.parent) == [], "a temp file was left behind"
    (recovered,) = recorded_errors()
    assert recovered["errno"] == errno_name
    assert recovered["retry_count"] == 1
    assert recovered["recovery_strategy"] == "retry"
    assert recovered["recovery_success"] is True


# --- 1b. a transient error that stays: retries used up, nothing changed --------------------------


@pytest.mark.parametrize(("point", "errno_name"), [(fk.RENAME, "EBUSY"), (fk.FSYNC, "EIO")],
                         ids=["rename-EBUSY", "fsync-EIO"])
@pytest.mark.usefixtures("libfiu_works")
def test_persistent_transient_error_retries_whole_write_then_fails(
    project: Path, template: Template, tmp_path: Path, point: str, errno_name: str
) -> None:
    tasks = project / EXPORTS / "tasks.json"  # one event (ITEM → Complete) not exported yet
    before, new_bytes = tasks.read_bytes(), template.expected
    assert new_bytes != before

    strace = fk.strace_usable()
    trace = tmp_path / "trace.txt"
    prefix = fk.fiu_prefix(point, getattr(errno, errno_name))  # every call fails
    if strace is not None:
        prefix = [*fk.strace_prefix(strace, trace), *prefix]
    started = time.monotonic()
    result = fk.evstore(
        "--log-format", "json", "-v", "project", "--flush-retries", "2", prefix=prefix
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 4, (result.returncode, result.stderr)
    retries = fk.events_named(result.stderr, "export_retry")
    assert [r["attempt"] for r in retries] == [1, 2], result.stderr
    assert {r["errno"] for r in retries} == {errno_name}
    assert {r["max_attempts"] for r in retries} == {3}
    (failed,) = fk.events_named(result.stderr, "export_failed")
    assert failed["attempts"] == 3
    assert failed["errno"] == errno_name
    line = one_error_line(result.stderr)
    assert f"({errno_name}) after 3 attempts;" in line
    assert "journal is intact" in line
    assert elapsed < 30, f"2 retries (0.3 s of back-off) took {elapsed:.1f}s"

    # Nothing changed on disk; the event waits in the journal.
    assert tasks.read_bytes() == before, "the existing tasks.json changed"
    assert fk.tmp_files(tasks.parent) == [], "a temp file was left behind"
    assert_event_kept("Complete")
    (recorded,) = recorded_errors()
    assert recorded["errno"] == errno_name
    assert recorded["retry_count"] == 2
    assert recorded["recovery_success"] is False

    # Each attempt redid the whole sequence, with a fresh temp file: never an fsync or a
    # rename retried on its own.
    if point == fk.RENAME:
        temp_names = {r["error"].split("'")[1] for r in [*retries, failed]}
        assert len(temp_names) == 3, temp_names
    if strace is not None:
        temps, renames = fk.temp_file_calls(trace)
        assert len(temps) == 3, [t.calls for t in temps]
        # Calls libfiu failed never reached the kernel: the rename (or the fsync) is absent.
        synced = ["fsync"] if point == fk.RENAME else []
        expected = ["open", "write", *synced, "close", "unlink"]
        assert [t.calls for t in temps] == [expected] * 3, trace.read_text()[-3000:]
        written = [t.bytes_written for t in temps]
        assert written == [len(new_bytes)] * 3, "an attempt wrote a partial file"
        assert renames == [], renames

    # The cause gone, the same command brings the file up to date.
    ok(fk.evstore("project"))
    assert tasks.read_bytes() == new_bytes
    assert fk.tmp_files(tasks.parent) == []


# --- 2. SQLite's own writes fail while an append commits -------------------------------------


HOLD_JOURNAL = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1])
con.execute("SELECT count(*) FROM events").fetchone()
print("ready", flush=True)
time.sleep(60)
"""


def batch(n: int) -> str:
    return "".join(
        json.dumps({"item_id": ITEM, "status": "Implementing" if i % 2 else "Complete"}) + "\n"
        for i in range(n)
    )


def journal_counts(con: sqlite3.Connection) -> tuple[int, int]:
    count, top = con.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
    return int(count), int(top)


def integrity(db: Path) -> list[tuple[str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize(
    ("point", "errno_name", "times", "sqlite_code"),
    [
        (fk.PWRITE, "EIO", "always", "SQLITE_IOERR_WRITE"),
        (fk.PWRITE, "ENOSPC", "always", "SQLITE_FULL"),
        (fk.PWRITE, "EIO", "once", "SQLITE_IOERR_WRITE"),
        (fk.FDATASYNC, "EIO", "always", "SQLITE_IOERR_FSYNC"),
    ],
    ids=["pwrite-EIO", "pwrite-ENOSPC", "pwrite-EIO-once", "fdatasync-EIO"],
)
@pytest.mark.usefixtures("libfiu_works")
def test_sqlite_io_error_during_append_commit(
    project: Path, point: str, errno_name: str, times: str, sqlite_code: str
) -> None:
    db = project / ".evstore" / "journal.db"
    # A reader keeps the journal open, as `evstore watch` would: its -shm file is already
    # full size, so the append's open needs no pwrite and the fault hits the transaction
    # itself (without it SQLite fails earlier, sizing -shm: SQLITE_IOERR_SHMSIZE).
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        before = journal_counts(reader)
        fault = fk.fiu_prefix(point, getattr(errno, errno_name), onetime=times == "once")
        result = fk.evstore("append", "--session", SESSION, "--jsonl", "-", input=batch(20),
                            prefix=fault)
        assert result.returncode == 5, (result.returncode, result.stderr)  # journal unavailable
        line = one_error_line(result.stderr)
        if sqlite_code == "SQLITE_IOERR_FSYNC":
            # The frames may already be in the WAL: the message must not claim nothing was written.
            assert line.startswith(f"evstore: error: journal {db}: the commit could not be made durable ({sqlite_code}")
            assert "outcome is unknown" in line
        else:
            assert line.startswith(f"evstore: error: journal {db} cannot be written ({sqlite_code}")
        assert journal_counts(reader) == before, "part of the batch is visible"
    finally:
        reader.close()

    # The last connection is gone: whatever SQLite left in the WAL is settled now.
    con = sqlite3.connect(db)
    try:
        assert journal_counts(con) == before, "part of the batch reached the journal"
    finally:
        con.close()
    assert integrity(db) == [("ok",)]
    assert len(journal_events()) == before[0]

    # The next append, without the fault, goes in whole and gap-free.
    ok(fk.evstore("append", "--session", SESSION, "--jsonl", "-", input=batch(20)))
    seqs = [e["seq"] for e in journal_events()]
    assert seqs == list(range(1, before[1] + 21))
    assert integrity(db) == [("ok",)]


@pytest.mark.usefixtures("libfiu_works")
def test_failed_commit_is_all_or_nothing_after_a_crash(project: Path) -> None:
    """fdatasync fails after the WAL frames of a commit were written, and then every
    connection dies without a checkpoint (a crash). SQLite's recovery on the next open
    may find those frames whole: the failed batch is then either absent or complete,
    never a part of it, and the journal stays consistent."""
    db = project / ".evstore" / "journal.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_JOURNAL, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        ok(fk.evstore("append", "--session", SESSION, ITEM, "Implementing"))  # WAL not empty now
        before = len(journal_events())
        result = fk.evstore("append", "--session", SESSION, "--jsonl", "-", input=batch(20),
                            prefix=fk.fiu_prefix(fk.FDATASYNC, errno.EIO))
        assert result.returncode == 5, (result.returncode, result.stderr)
        assert "SQLITE_IOERR_FSYNC" in one_error_line(result.stderr)
        assert len(journal_events()) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)

    after = journal_events()
    assert len(after) in (before, before + 20), f"{len(after) - before} of 20 events survived"
    assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
    assert integrity(db) == [("ok",)]


# --- 3. EACCES: root without its DAC capabilities ---------------------------------------------


@pytest.fixture
def no_dac() -> list[str]:
    fk.require_root("only root can drop capabilities with setpriv and keep its files")
    setpriv = fk.require_tool("setpriv", "util-linux: drops root's DAC capabilities")
    return [setpriv, *fk.DROP_DAC]


@pytest.mark.parametrize("refused", ["temp-file", "lock-file"])
def test_eacces_fails_fast_without_retry(
    project: Path, template: Template, no_dac: list[str], refused: str
) -> None:
    exports = project / EXPORTS
    tasks = exports / "tasks.json"
    lock = exports / ".evstore.lock"
    assert lock.exists()  # left by the template's `evstore project`
    if refused == "lock-file":  # the lock must be created first: that is refused
        lock.unlink()
    before = tasks.read_bytes()
    exports.chmod(0o555)
    try:
        # The fault is real: this process, capabilities dropped, cannot create a file there.
        probe = fk.python_under(no_dac, fk.PROBE_CREATE, str(exports / "probe"))
        assert fk.errno_of_probe(probe) == "EACCES"
        started = time.monotonic()
        result = fk.evstore(
            "--log-format", "json", "-v", "project", "--flush-retries", "10", prefix=no_dac
        )
        elapsed = time.monotonic() - started
    finally:
        exports.chmod(0o755)

    assert result.returncode == 4, (result.returncode, result.stderr)
    assert fk.events_named(result.stderr, "export_retry") == [], result.stderr
    (failed,) = fk.events_named(result.stderr, "export_failed")
    assert (failed["attempts"], failed["errno"]) == (1, "EACCES")
    failing = ".tasks.json." if refused == "temp-file" else ".evstore.lock"
    assert f"/{EXPORTS}/{failing}" in failed["error"], failed["error"]
    line = one_error_line(result.stderr)
    assert "Permission denied (EACCES) after 1 attempt;" in line
    # Ten retries would sleep about 13 s; the margin is for a loaded machine.
    assert elapsed < 10, f"EACCES took {elapsed:.1f}s: was it retried?"
    assert tasks.read_bytes() == before
    assert fk.tmp_files(exports) == []
    assert_event_kept("Complete")
    (recorded,) = recorded_errors()
    assert recorded["errno"] == "EACCES"
    assert recorded["retry_count"] == 0
    assert recorded["recovery_strategy"] == "fail_fast"

    ok(fk.evstore("project", prefix=no_dac))  # writable again: the same user succeeds
    assert tasks.read_bytes() == template.expected


# --- 4. EMFILE: a descriptor limit too low for the export ---------------------------------------


NOFILE_MAX = 64


@pytest.fixture(scope="module")
def nofile_scan(template: Template, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`evstore project` under `prlimit --nofile=N:N` for N = 3, 4, ... until it succeeds.

    With one pending event, a failed run changes nothing, so each N sees the same work.
    Returns the runs by N, the first N that worked, and the target's bytes before.
    """
    fk.require_root("the fault tests run as root, like test_faults.py")
    prlimit = fk.require_tool("prlimit", "util-linux: lowers the open-file limit of one command")
    root = tmp_path_factory.mktemp("nofile")
    copy_project(template, root)
    tasks = root / EXPORTS / "tasks.json"
    before = tasks.read_bytes()
    runs: dict[int, subprocess.CompletedProcess[str]] = {}
    unchanged: dict[int, bool] = {}
    for n in range(3, NOFILE_MAX + 1):
        result = fk.evstore("--log-format", "json", "-v", "project", "--flush-retries", "10",
                            prefix=[prlimit, f"--nofile={n}:{n}"], cwd=root)
        runs[n] = result
        if result.returncode == 0:
            return {"root": root, "runs": runs, "first_ok": n, "before": before,
                    "unchanged": unchanged, "after": tasks.read_bytes()}
        unchanged[n] = tasks.read_bytes() == before and fk.tmp_files(tasks.parent) == []
    pytest.fail(f"`evstore project` never worked with up to {NOFILE_MAX} descriptors")


def started_python(result: subprocess.CompletedProcess[str]) -> bool:
    """False when the limit stopped the interpreter itself, before any evstore code ran."""
    return result.returncode != 127 and "Fatal Python error" not in result.stderr


def test_emfile_in_the_export_fails_fast_with_exit_4(nofile_scan: dict[str, Any]) -> None:
    """One descriptor short of a working export: the journal (db, -wal, -shm) and the
    export lock are open, the next file the export opens gets EMFILE.

    (With a limit alone EMFILE cannot first hit the temp file: reading the current
    tasks.json to compare hashes needs the same descriptor slot just before.)
    """
    n = nofile_scan["first_ok"] - 1
    result = nofile_scan["runs"][n]
    assert nofile_scan["unchanged"][n], "tasks.json changed or a temp file was left"
    last = (fk.human_lines(result.stderr) or ["<nothing>"])[-1]
    assert result.returncode == 4, f"N={n}: exit {result.returncode}, last line: {last}"
    line = one_error_line(result.stderr)
    assert "(EMFILE) after 1 attempt;" in line, line
    assert fk.events_named(result.stderr, "export_retry") == []
    # The log record is best effort here: structlog loads lazily, and loading a module
    # needs a descriptor too.
    for failed in fk.events_named(result.stderr, "export_failed"):
        assert (failed["attempts"], failed["errno"]) == (1, "EMFILE")


def test_emfile_before_the_export_is_one_clean_line(nofile_scan: dict[str, Any]) -> None:
    """Lower limits, once the interpreter itself could start: the journal (or the export
    lock) cannot be opened, or a module cannot be loaded on the way. Running out of
    descriptors is the environment, not a bug to report: one error line with exit 5
    (journal unavailable) or 4 (export failed), never a traceback, nothing changed."""
    first_ok = nofile_scan["first_ok"]
    checked = {
        n: r for n, r in nofile_scan["runs"].items() if n < first_ok - 1 and started_python(r)
    }
    assert checked, "no limit between interpreter start-up and the export to check"
    bad = {}
    for n, result in checked.items():
        assert nofile_scan["unchanged"][n]
        lines = fk.human_lines(result.stderr)
        clean = (
            "Traceback" not in result.stderr
            and result.returncode in (4, 5)  # docs/design.md §11
            and len(lines) == 1
            and lines[0].startswith("evstore: error: ")
        )
        if not clean:
            bad[n] = (result.returncode, result.stderr[-1500:])
    assert not bad, "\n\n".join(f"N={n}: exit {code}\n{err}" for n, (code, err) in bad.items())


def test_emfile_scan_ends_with_a_correct_export(
    nofile_scan: dict[str, Any], template: Template
) -> None:
    """The first limit that works writes the same file a full replay does."""
    assert nofile_scan["after"] == template.expected
    assert fk.tmp_files(nofile_scan["root"] / EXPORTS) == []
