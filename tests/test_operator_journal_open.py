"""Opening the journal, whatever lies at its path.

Issue 11, items 4, 5, 10 and 11; docs/design.md §3, §10, §11.

Real journals, real `evstore` processes: an empty file or a FIFO where the journal should
be, a journal with an older schema that read-only and refused commands must leave byte
for byte, `init` on a damaged journal or inside another project, and `--db` strings that
hold secrets. Faults that need root (read-only media, libfiu) are in
test_operator_journal_open_faults.py.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from support import INITIAL, SESSION, evstore_bin, seed, snapshot

from eventstore import Store, schema
from eventstore.classify import classify
from eventstore.events import ItemStatusChanged
from eventstore.sqlite import translate
from projections import DEFAULT

Run = Callable[..., subprocess.CompletedProcess[str]]

LATEST = schema.latest_version("sqlite")
ITEM = "P1.M1.T1.S1"
JOURNAL = Path(".evstore") / "journal.db"
READ_ONLY = (("status",), ("log",), ("show",), ("history", ITEM), ("errors",),
             ("report", "-o", "-"), ("doctor",))


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("evstore: error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def user_version(path: Path) -> int:
    con = sqlite3.connect(path)  # not mode=ro: that would leave an empty -wal behind
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


@pytest.fixture
def project(project_dir: Path) -> Path:
    """A real project: the initial backlog imported, one update, everything exported."""
    with Store.open(project_dir / JOURNAL, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        store.append(SESSION, [ItemStatusChanged(item_id=ITEM, status="Implementing")])
        store.project()
    return project_dir


def make_schema_1(project: Path) -> None:
    """Rewrite the project's journal as schema 1 (events only, no checkpoints table, no
    (stream, seq) index), holding the same events: what an early evstore left behind."""
    path = project / JOURNAL
    source = project / "source.db"
    path.rename(source)
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA journal_mode=WAL")
    for statement in schema.migrations("sqlite")[0][1]:
        raw.execute(statement)
    raw.execute("PRAGMA user_version=1")
    raw.execute("ATTACH DATABASE ? AS src", (str(source),))
    columns = "seq, stream, version, type, data, meta, recorded_at, event_id, schema_version"
    raw.execute(f"INSERT INTO events ({columns}) SELECT {columns} FROM src.events")  # noqa: S608
    raw.commit()
    raw.execute("DETACH DATABASE src")
    raw.close()
    source.unlink()
    assert user_version(path) == 1
    assert not Path(f"{path}-wal").exists()


# --- item 4: an empty file is not a new journal ---------------------------------------------


@pytest.mark.parametrize("command", [*READ_ONLY[:-1], ("project",), ("init",),
                                     ("append", "--session", SESSION, ITEM, "Complete")])
def test_an_empty_journal_file_is_exit_5_and_stays_empty(
    project: Path, run: Run, command: tuple[str, ...]
) -> None:
    (project / JOURNAL).write_bytes(b"")
    before = snapshot(project)
    result = run(*command, cwd=project)
    assert result.returncode == 5, result.stderr
    line = one_error_line(result)
    assert "is an empty file (0 bytes), not an evstore journal" in line
    assert snapshot(project) == before  # no schema written into it, no -wal beside it


def test_doctor_calls_an_empty_journal_corrupt_and_fix_leaves_it(project: Path, run: Run) -> None:
    (project / JOURNAL).write_bytes(b"")
    before = snapshot(project)
    for args in (("doctor",), ("doctor", "--fix")):
        result = run(*args, cwd=project)
        assert result.returncode == 1, result.stderr
        first = result.stdout.splitlines()[0]
        assert first.startswith(
            "JOURNAL_CORRUPT  journal .evstore/journal.db is an empty file (0 bytes)"
        )
        assert "JOURNAL_SCHEMA_OUTDATED" not in result.stdout
    assert snapshot(project) == before  # tasks.json keeps its backlog; no empty journal made


def test_a_file_that_is_not_sqlite_is_exit_5_for_reads_and_writes(project: Path, run: Run) -> None:
    (project / JOURNAL).write_bytes(b"SQLite format 2\x00" + b"\x00" * 4080)
    before = snapshot(project)
    for command in (("status",), ("append", "--session", SESSION, ITEM, "Complete"), ("init",)):
        result = run(*command, cwd=project)
        assert result.returncode == 5, result.stderr
        assert "is not an SQLite database" in one_error_line(result)
    assert snapshot(project) == before


def test_init_creates_only_where_no_file_exists(project_dir: Path, run: Run) -> None:
    journal = project_dir / JOURNAL
    journal.parent.mkdir()
    journal.write_bytes(b"")
    result = run("init", cwd=project_dir)
    assert result.returncode == 5
    assert journal.read_bytes() == b""
    journal.unlink()
    created = run("init", cwd=project_dir)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("Initialized empty evstore journal in ")
    assert user_version(journal) == LATEST


def corrupt_a_page(path: Path) -> None:
    """Zero a table leaf page in the middle of the file: the header and schema stay
    readable, the b-tree does not."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    leaves = [n for n in range(1, len(data) // page_size) if data[n * page_size] == 13]
    assert leaves, "the journal has no table leaf page past page 1"
    page = leaves[len(leaves) // 2]
    data[page * page_size:(page + 1) * page_size] = bytes(page_size)
    path.write_bytes(data)


def test_init_on_a_damaged_journal_checks_it_and_exits_5(project: Path, run: Run) -> None:
    with Store.open(project / JOURNAL, projections=DEFAULT) as store:
        for n in range(150):  # enough events for several leaf pages
            status = "Complete" if n % 2 else "Planned"
            store.append(SESSION, [ItemStatusChanged(item_id="P1", status=status)])
    corrupt_a_page(project / JOURNAL)
    before = snapshot(project)
    result = run("init", cwd=project)
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "Reinitialized" not in result.stdout
    line = one_error_line(result)
    assert "is damaged: its integrity check fails" in line
    assert "restore it from a backup" in line
    assert snapshot(project) == before


def test_init_on_a_healthy_journal_reinitializes_it(project: Path, run: Run) -> None:
    result = run("init", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Reinitialized existing evstore journal in ")


# --- item 5: read-only and refused commands never write -------------------------------------


def test_read_only_commands_leave_an_older_journal_as_it_is(
    project: Path, run: Run, tmp_path_factory: pytest.TempPathFactory
) -> None:
    make_schema_1(project)
    before = snapshot(project)
    out = tmp_path_factory.mktemp("replayed")
    for command in (*READ_ONLY, ("replay", "--session", SESSION, "--out", str(out))):
        result = run(*command, cwd=project)
        # 1: status finds projections lagging (no checkpoints yet), doctor the old schema
        assert result.returncode in (0, 1), (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert snapshot(project) == before, command
    assert user_version(project / JOURNAL) == 1
    status = run("status", cwd=project)
    note = "schema 1, run any write command or `evstore doctor --fix` to migrate, head seq 3"
    assert note in status.stdout
    exported = project / "plan" / SESSION / "tasks.json"
    assert (out / "tasks.json").read_bytes() == exported.read_bytes()
    doctor = run("doctor", cwd=project)
    assert doctor.stdout.startswith(
        "JOURNAL_SCHEMA_OUTDATED  journal .evstore/journal.db has schema version 1"
    )


def test_a_refused_append_leaves_an_older_journal_byte_for_byte(project: Path, run: Run) -> None:
    make_schema_1(project)
    before = snapshot(project)
    refused = run("append", "--session", SESSION, "P1.M9", "Complete", cwd=project)
    assert refused.returncode == 2, refused.stderr
    expected = f"evstore: error: unknown item 'P1.M9' in session '{SESSION}'"
    assert one_error_line(refused) == expected
    assert snapshot(project) == before
    assert user_version(project / JOURNAL) == 1
    accepted = run("append", "--session", SESSION, ITEM, "Complete", cwd=project)
    assert accepted.returncode == 0, accepted.stderr
    assert "(seq 4, version 4)" in accepted.stdout
    assert user_version(project / JOURNAL) == LATEST  # the first write migrated it
    assert run("doctor", cwd=project).returncode == 1  # stale tasks.json, nothing else
    assert run("project", cwd=project).returncode == 0
    assert run("doctor", cwd=project).returncode == 0


def test_doctor_fix_migrates_an_older_journal(project: Path, run: Run) -> None:
    make_schema_1(project)
    result = run("doctor", "--fix", cwd=project)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "JOURNAL_SCHEMA_OUTDATED" in result.stdout
    assert f"migrated to schema version {LATEST}" in result.stdout
    assert user_version(project / JOURNAL) == LATEST


# --- item 10: what lies at the path, and what --db says -------------------------------------


@pytest.mark.parametrize("command", [("status",), ("log",), ("init",),
                                     ("append", "--session", SESSION, ITEM, "Complete")])
def test_a_fifo_at_the_journal_path_is_exit_5_at_once(
    project_dir: Path, run: Run, command: tuple[str, ...]
) -> None:
    journal = project_dir / JOURNAL
    journal.parent.mkdir()
    os.mkfifo(journal)
    result = run(*command, cwd=project_dir, timeout=30)  # main hung here forever
    assert result.returncode == 5, result.stderr
    assert "is a FIFO, not a journal file" in one_error_line(result)


def test_doctor_reports_a_fifo_as_a_corrupt_journal(project_dir: Path, run: Run) -> None:
    journal = project_dir / JOURNAL
    journal.parent.mkdir()
    os.mkfifo(journal)
    result = run("doctor", "--fix", cwd=project_dir, timeout=30)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(
        "JOURNAL_CORRUPT  journal .evstore/journal.db is a FIFO, not a journal file"
    )


def test_a_percent_in_a_url_password_is_refused_without_a_traceback(
    project_dir: Path, run: Run
) -> None:
    result = run("--db", "postgresql://u:s%ecret@127.0.0.1:1/db", "status", cwd=project_dir)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line == (
        "evstore: error: invalid PostgreSQL URL postgresql://u:***@127.0.0.1:1/db: a %-escape "
        "in it decodes to bytes that are not UTF-8: write a literal % as %25 (percent-encode "
        "the user name and password)"
    )
    assert "ecret" not in result.stderr


@pytest.mark.parametrize("password", ["hunter2", "'hunter 2'"])
def test_a_libpq_conninfo_string_is_a_server_and_its_password_is_hidden(
    project_dir: Path, run: Run, password: str
) -> None:
    conninfo = f"host=127.0.0.1 port=1 user=u password={password} dbname=j connect_timeout=1"
    result = run("--db", conninfo, "status", cwd=project_dir)
    assert result.returncode == 5, result.stderr
    line = one_error_line(result)
    assert "hunter" not in result.stderr
    shown = "host=127.0.0.1 port=1 user=u password=*** dbname=j"
    assert line.startswith(f"evstore: error: journal {shown}")
    assert "is unavailable" in line  # tried as a server, not looked for as a file
    assert "no journal at" not in line


def test_out_of_descriptors_is_one_line_and_exit_5(project: Path) -> None:
    prlimit = Path("/usr/bin/prlimit")
    if not prlimit.exists():
        pytest.skip("needs prlimit (util-linux)")
    before = snapshot(project)
    result = subprocess.run(
        [str(prlimit), "--nofile=6", evstore_bin(), "doctor"], cwd=project, capture_output=True,
        text=True, timeout=60, check=False,
    )
    assert result.returncode == 5, result.stderr
    line = one_error_line(result)
    assert "too many open files" in line.lower()
    assert "ulimit -n" in line
    assert snapshot(project) == before


# --- item 11: no shadow journal inside a project ------------------------------------------------


def test_init_inside_a_project_refuses_naming_the_outer_journal(project: Path, run: Run) -> None:
    inner = project / "plan" / SESSION
    before = snapshot(project)
    result = run("init", cwd=inner)
    assert result.returncode == 2, result.stderr
    line = one_error_line(result)
    assert line == (
        f"evstore: error: {inner} is inside the project of {project / JOURNAL}: a journal here "
        "would shadow it for every command run below: run evstore from that project, or pass "
        "--force to make a separate project here"
    )
    assert not (inner / ".evstore").exists()
    assert snapshot(project) == before
    forced = run("init", "--force", cwd=inner)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == f"Initialized empty evstore journal in {inner / JOURNAL}\n"
    assert run("--db", str(inner / "elsewhere.db"), "init", cwd=inner).returncode == 0


def test_init_never_shows_an_empty_file_and_racing_inits_share_one_journal(
    project_dir: Path, procs: list[subprocess.Popen[str]]
) -> None:
    """The journal appears whole (built under a temporary name, then linked into place):
    a command running beside `init` never meets the empty file it would refuse."""
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}
    procs.extend(
        subprocess.Popen([evstore_bin(), "init"], cwd=project_dir, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    )
    journal = project_dir / JOURNAL
    seen_empty = False
    while any(p.poll() is None for p in procs):
        with contextlib.suppress(FileNotFoundError):
            seen_empty |= journal.stat().st_size == 0
    outcomes = [(p.returncode, *p.communicate()) for p in procs]
    assert [code for code, _, _ in outcomes] == [0, 0, 0], outcomes
    assert not seen_empty
    assert sorted(path.name for path in journal.parent.iterdir()) == ["journal.db"]
    assert user_version(journal) == LATEST


def test_a_read_that_may_pass_is_classified_transient_whatever_sqlite_called_it(
    project: Path,
) -> None:
    """What a recovered read error is recorded as (`evstore errors`): SQLite's
    SQLITE_CORRUPT from a failed read is no verdict on the file."""
    con = sqlite3.connect(project / JOURNAL)
    try:
        con.execute("SELECT * FROM no_such_table")
    except sqlite3.Error as exc:
        # As SQLite reports a page that a failed read left malformed:
        exc.sqlite_errorname = "SQLITE_CORRUPT"  # type: ignore[attr-defined]
        error = translate(exc, project / JOURNAL)
        error.__cause__ = exc
    finally:
        con.close()
    assert type(error).__name__ == "JournalReadError"
    assert "backup" not in str(error)
    found = classify(error)
    assert (found.recoverability, found.category, found.retryable) == (
        "recoverable", "transient", True
    )
    assert found.code == "SQLITE_CORRUPT"
