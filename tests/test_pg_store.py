"""Store and CLI end to end on a PostgreSQL journal (docs/design.md §12), against a real server.

What the contract tests (test_journal_contract.py) cannot say with one journal object:
the `evstore` command with `--db postgresql://…`, several processes and "hosts" (working
directories) sharing one journal, exporters serializing on a shared directory and
converging on separate ones, a server that is down, a connection that dies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import Result
from structlog.testing import capture_logs
from support import INITIAL, MIXED, SESSION, evstore_bin, seed

from eventstore import Store, schema
from eventstore.errors import InvalidInputError, JournalCorruptError, JournalNotFoundError
from eventstore.events import ItemStatusChanged
from eventstore.locate import find_project_root, is_url, redact_url
from eventstore.schema import split_postgres
from projections import DEFAULT

if TYPE_CHECKING:
    from pgserver import PgServer

pytest_plugins = ["pgserver"]  # the pg_server / pg_url fixtures

Run = Callable[..., subprocess.CompletedProcess[str]]
Cli = Callable[..., Result]
TASKS = Path("plan") / SESSION / "tasks.json"


def pg_journal(url: str, **kwargs: Any) -> Any:
    from eventstore.postgres import PostgresJournal  # noqa: PLC0415 - psycopg may be absent

    return PostgresJournal(url, **kwargs)


def rows(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


# --- pure helpers (no server needed) ---------------------------------------------------------


def test_urls_are_recognized_and_their_passwords_hidden() -> None:
    assert is_url("postgresql://u@h/db") and is_url("postgres://h/db") and is_url("POSTGRESQL://h/d")
    assert not is_url("journal.db") and not is_url(None) and not is_url("sqlite:///x.db")
    assert redact_url("postgresql://evstore:s3cret@db.example:5432/journal") == (
        "postgresql://evstore:***@db.example:5432/journal")
    assert redact_url("postgres://u@h/db?sslmode=require&password=pw&x=1") == (
        "postgres://u@h/db?sslmode=require&password=***&x=1")
    assert redact_url("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert redact_url("postgresql:///db?host=/tmp/sock") == "postgresql:///db?host=/tmp/sock"


def test_postgres_statements_split_outside_quotes_comments_and_dollar_bodies() -> None:
    """The migration reader splits on `;` only where PostgreSQL would."""
    text = """
    -- a comment; with a semicolon
    CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'no; never: %', TG_OP;  -- inside the body
    END;
    $$;
    SELECT 'it''s; quoted', "odd;name" FROM t; /* block; /* nested; */ comment */
    DO $body$ BEGIN PERFORM 1; END $body$;
    PREPARE p AS SELECT $1;
    """
    statements = split_postgres(text)
    assert len(statements) == 4
    assert statements[0].startswith("CREATE FUNCTION f()") and statements[0].endswith("END;\n    $$")
    assert "RAISE EXCEPTION 'no; never: %', TG_OP;  -- inside the body" in statements[0]
    assert statements[1] == "SELECT 'it''s; quoted', \"odd;name\" FROM t"
    assert statements[2] == "DO $body$ BEGIN PERFORM 1; END $body$"
    assert statements[3] == "PREPARE p AS SELECT $1"
    with pytest.raises(RuntimeError, match="without a final"):
        split_postgres("SELECT 1")
    with pytest.raises(RuntimeError, match=r"unterminated \$\$"):
        split_postgres("CREATE FUNCTION g() AS $$ BEGIN;")


def test_project_root_of_a_server_journal_is_found_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".evstore").mkdir(parents=True)
    (tmp_path / "repo" / "a" / "b").mkdir(parents=True)
    (tmp_path / "loose").mkdir()
    assert find_project_root(tmp_path / "repo" / "a" / "b") == tmp_path / "repo"
    assert find_project_root(tmp_path / "loose") == tmp_path / "loose"


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def url(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("EVSTORE_DB", raising=False)
    return pg_url


def test_cli_session_end_to_end(url: str, project_dir: Path, cli: Cli) -> None:
    """init creates the schema; import + project with no new events gives the very bytes
    of the imported file; append, project, replay and log behave as on SQLite."""
    shutil.copyfile(MIXED, project_dir / TASKS)
    first = cli("--db", url, "init")
    assert first.exit_code == 0, first.stderr
    assert "postgresql://postgres@/" in first.stdout
    assert rows(url, "SELECT version FROM evstore_schema") == [(schema.latest_version("postgresql"),)]
    assert cli("--db", url, "init").exit_code == 0  # idempotent
    assert not (project_dir / ".evstore").exists()  # nothing local for a server journal

    imported = cli("--db", url, "import", str(TASKS), "--session", SESSION)
    assert imported.exit_code == 0, imported.stderr
    projected = cli("--db", url, "project", "--json")
    assert projected.exit_code == 0, projected.stderr
    assert (project_dir / TASKS).read_bytes() == MIXED.read_bytes()

    appended = cli("--db", url, "append", "-s", SESSION, "P1.M1.T1.S1", "Complete", "--event-id", "e-1")
    assert appended.exit_code == 0, appended.stderr
    again = cli("--db", url, "append", "-s", SESSION, "P1.M1.T1.S1", "Complete", "--event-id", "e-1")
    assert again.exit_code == 0
    conflict = cli("--db", url, "append", "-s", SESSION, "P1.M1.T1.S2", "Complete", "--expected-version", "1")
    assert conflict.exit_code == 3
    assert cli("--db", url, "project").exit_code == 0
    doc = json.loads((project_dir / TASKS).read_bytes())
    assert doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] == "Complete"
    assert cli("--db", url, "replay", "--out", "again").exit_code == 0
    assert (project_dir / "again" / SESSION / "tasks.json").read_bytes() == (project_dir / TASKS).read_bytes()
    logged = [json.loads(line) for line in cli("--db", url, "log", "--json").stdout.splitlines()]
    assert [e["seq"] for e in logged] == [1, 2, 3]
    assert logged[2]["event_id"] == "e-1"
    assert logged[0]["data"] == {"export_dir": f"plan/{SESSION}"}
    status = cli("--db", url, "status", "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["journal"]["head_seq"] == 3


def test_env_evstore_db_may_be_a_url(url: str, project_dir: Path, run: Run) -> None:
    env = {"EVSTORE_DB": url}
    assert run("init", env=env, cwd=project_dir).returncode == 0
    done = run("import", str(TASKS), "-s", SESSION, env=env, cwd=project_dir)
    assert done.returncode == 0, done.stderr
    shown = run("log", "--json", env=env, cwd=project_dir)
    assert [json.loads(line)["type"] for line in shown.stdout.splitlines()] == [
        "SessionCreated", "BacklogImported"]
    assert not (project_dir / ".evstore").exists()


def test_relative_export_dirs_resolve_against_the_nearest_evstore_dir(
    url: str, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server journal has no directory of its own: the project root is the nearest
    directory at or above the working directory holding `.evstore/`, else the working
    directory, so each host exports into its own checkout."""
    (project_dir / ".evstore").mkdir()
    with Store.open(url, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, MIXED, f"plan/{SESSION}")
    deep = project_dir / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    with Store.open(url, projections=DEFAULT) as store:
        assert store.root == project_dir
        assert store.export_dir(SESSION) == project_dir / "plan" / SESSION
        store.project(SESSION)
    assert (project_dir / TASKS).read_bytes() == MIXED.read_bytes()
    elsewhere = project_dir.parent / "other-host"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with Store.open(url, projections=DEFAULT) as store:
        assert store.root == elsewhere
        store.project(SESSION)
    assert (elsewhere / TASKS).read_bytes() == MIXED.read_bytes()


def test_the_same_events_give_the_same_files_on_both_backends(url: str, project_dir: Path) -> None:
    """Library use (batched status updates, a fix task, a batch run) on SQLite and on
    PostgreSQL: every exported file is byte-identical, and so are the journals' payloads."""
    from projections.batch_runs import BatchRun  # noqa: PLC0415
    from projections.fix_tasks import record_failure  # noqa: PLC0415

    outputs = {}
    for name, db in (("sqlite", project_dir / ".evstore" / "journal.db"), ("postgresql", url)):
        root = project_dir / name
        (root / "plan" / SESSION).mkdir(parents=True)
        with Store.open(db, projections=DEFAULT, create=True) as store:
            store.root = root
            seed(store, SESSION, INITIAL, f"plan/{SESSION}")
            session = store.session(SESSION)
            for item, value in (("P1.M1.T1.S1", "Complete"), ("P1.M1.T1.S2", "Implementing")):
                session.update_item_status(item, value)
            session.flush_updates()
            record_failure(store, SESSION, "P1.M1.T1.S2", "tests failed", max_fix_tasks=3)
            run = BatchRun(store, SESSION)
            # Items whose dependencies are met: `batch next` holds the others back.
            run.start(["P2.M1.T1.S1", "P3.M1.T1.S1"], parallel=1)
            run.done(run.next().item)
            store.project(SESSION)
            varying = {"batch_id", "pid", "host", "pid_start"}  # random or per machine
            payloads = [(e.seq, e.type, {k: v for k, v in e.data.items() if k not in varying})
                        for e in store.read(SESSION)]
        files = {p.name: p.read_bytes() for p in sorted((root / "plan" / SESSION).iterdir())
                 if not p.name.startswith(".")}
        outputs[name] = (files, payloads)
    assert set(outputs["postgresql"][0]) >= {"tasks.json", "batch-progress.json", "fix-history.json"}
    sqlite_files, pg_files = outputs["sqlite"][0], outputs["postgresql"][0]
    progress = "batch-progress.json"  # holds pids, hosts and times: compare its shape
    assert {k: v for k, v in sqlite_files.items() if k != progress} == {
        k: v for k, v in pg_files.items() if k != progress}
    assert json.loads(sqlite_files[progress]).keys() == json.loads(pg_files[progress]).keys()
    assert outputs["sqlite"][1] == outputs["postgresql"][1]


def test_watch_exports_what_another_host_appends(url: str, project_dir: Path) -> None:
    """`evstore watch` on a server journal: an append made through another connection is
    noticed at the next poll and exported."""
    from eventstore.watch import Watcher  # noqa: PLC0415

    with Store.open(url, projections=DEFAULT, create=True) as store, \
            Store.open(url, projections=DEFAULT) as other:
        seed(store, SESSION, MIXED, f"plan/{SESSION}")
        polls: list[int] = []

        def sleep(_: float) -> None:
            polls.append(1)
            if len(polls) == 1:
                other.append(SESSION, [ItemStatusChanged(item_id="P1.M1.T1.S1", status="Complete")])  # type: ignore[arg-type]

        stats = Watcher(store, sleep=sleep, max_polls=3).run()
    assert stats.exports == 2 and stats.failures == 0
    doc = json.loads((project_dir / TASKS).read_bytes())
    assert doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] == "Complete"


# --- several processes --------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_batch_next_hands_out_each_item_once(url: str, project_dir: Path, run: Run) -> None:
    """Four shells racing `evstore batch next` on one server journal: every item of the
    queue is handed out exactly once (the decision and its append share the lock)."""
    env = {"EVSTORE_DB": url}
    assert run("init", env=env, cwd=project_dir).returncode == 0
    assert run("import", str(TASKS), "-s", SESSION, env=env, cwd=project_dir).returncode == 0
    queue = [f"{n:02d}-race" for n in range(24)]
    started = run("batch", "start", *queue, "-s", SESSION, "--parallel", str(len(queue)), env=env,
                  cwd=project_dir)
    assert started.returncode == 0, started.stderr

    def take_all() -> list[str]:
        taken = []
        while True:
            out = run("batch", "next", "-s", SESSION, "--json", env=env, cwd=project_dir)
            assert out.returncode == 0, out.stderr
            item = json.loads(out.stdout)["item"]
            if item is None:
                return taken
            taken.append(item)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: take_all(), range(4)))
    handed = [item for taken in results for item in taken]
    assert sorted(handed) == queue, "every item exactly once"
    assert sum(1 for taken in results if taken) >= 2, "the shells really raced"
    status = json.loads(run("batch", "status", "-s", SESSION, "--json", env=env, cwd=project_dir).stdout)
    assert sorted(status["in_flight"]) == queue


def _hosts(base: Path, url: str, run: Run, *, export_dir: str | None) -> tuple[Path, Path]:
    """Two checkouts ("hosts") of one project sharing the server journal."""
    a, b = base / "host-a", base / "host-b"
    for root in (a, b):
        (root / "plan" / SESSION).mkdir(parents=True)
        shutil.copyfile(INITIAL, root / TASKS)
    env = {"EVSTORE_DB": url}
    assert run("init", env=env, cwd=a).returncode == 0
    extra = ["--export-dir", export_dir] if export_dir else []
    done = run("import", str(TASKS), "-s", SESSION, *extra, env=env, cwd=a)
    assert done.returncode == 0, done.stderr
    return a, b


def _jsonl(prefix: str, count: int) -> str:
    from projections.backlog import BacklogState  # noqa: PLC0415

    ids = list(BacklogState(json.loads(INITIAL.read_bytes())).index)
    statuses = ("Implementing", "Complete", "Researching", "Planned", "Retrying", "Failed")
    return "".join(
        json.dumps({"item_id": ids[n % len(ids)], "status": statuses[n % len(statuses)],
                    "event_id": f"{prefix}-{n}"}) + "\n"
        for n in range(count)
    )


@pytest.mark.slow
def test_exporters_sharing_one_directory_serialize(url: str, tmp_path: Path, run: Run) -> None:
    """Two hosts exporting one session into the same (shared) directory: the export lock
    serializes them: one writes, every other run finds the file current."""
    shared = tmp_path / "shared-exports"
    a, b = _hosts(tmp_path, url, run, export_dir=str(shared))
    env = {**os.environ, "EVSTORE_DB": url}
    assert run("project", env={"EVSTORE_DB": url}, cwd=a).returncode == 0
    added = run("append", "-s", SESSION, "--jsonl", "-", input=_jsonl("shared", 300),
                env={"EVSTORE_DB": url}, cwd=b)
    assert added.returncode == 0, added.stderr
    binary = evstore_bin()
    exporters = [
        subprocess.Popen([binary, "project", "--json"], cwd=root, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for root in (a, b, a, b)
    ]
    outputs = [p.communicate(timeout=120) for p in exporters]
    for proc, (_, err) in zip(exporters, outputs, strict=True):
        assert proc.returncode == 0, err
    actions = [next(r["action"] for r in json.loads(out) if r["projection"] == "tasks")
               for out, _ in outputs]
    assert sorted(actions) == ["unchanged", "unchanged", "unchanged", "written"], actions
    assert (shared / ".evstore.lock").exists()
    assert sorted(p.name for p in shared.glob(".*.tmp")) == []
    replayed = run("replay", "-s", SESSION, "--out", str(tmp_path / "replayed"), env={"EVSTORE_DB": url}, cwd=a)
    assert replayed.returncode == 0, replayed.stderr
    assert (shared / "tasks.json").read_bytes() == (tmp_path / "replayed" / "tasks.json").read_bytes()


@pytest.mark.slow
def test_exporters_in_separate_directories_converge(url: str, tmp_path: Path, run: Run) -> None:
    """Two hosts exporting one session into their own checkouts while a third process
    appends: once the appends stop, a last `project` on each host leaves both files
    byte-identical to each other and to a replay of the journal."""
    a, b = _hosts(tmp_path, url, run, export_dir=None)
    env = {"EVSTORE_DB": url}
    stop = threading.Event()
    failures: list[str] = []

    def appender() -> None:
        with Store.open(url, projections=DEFAULT) as store:
            for n in range(30):
                items = ["P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T2.S1"]
                store.append(SESSION, [ItemStatusChanged(item_id=items[n % 3], status=s)  # type: ignore[arg-type]
                                       for s in ("Implementing", "Complete")])
                time.sleep(0.02)
        stop.set()

    def exporter(root: Path) -> None:
        while not stop.is_set():
            done = run("project", env=env, cwd=root)
            if done.returncode != 0:
                failures.append(done.stderr)

    threads = [threading.Thread(target=appender), *(threading.Thread(target=exporter, args=(r,)) for r in (a, b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert failures == []
    for root in (a, b):
        assert run("project", env=env, cwd=root).returncode == 0
    assert run("replay", "-s", SESSION, "--out", str(tmp_path / "replayed"), env=env, cwd=a).returncode == 0
    expected = (tmp_path / "replayed" / "tasks.json").read_bytes()
    assert (a / TASKS).read_bytes() == expected
    assert (b / TASKS).read_bytes() == expected
    assert expected != INITIAL.read_bytes()


# --- failures ---------------------------------------------------------------------------------


def test_a_server_that_is_down_is_exit_5_naming_the_url_without_its_password(
    project_dir: Path, run: Run
) -> None:
    from pgserver import free_port  # noqa: PLC0415 - the plugin module, loaded by pytest

    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[postgres]'")
    port = free_port()
    url = f"postgresql://evstore:s3cret-pw@127.0.0.1:{port}/journal"
    result = run("-q", "--db", url, "log", cwd=project_dir)
    assert result.returncode == 5
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"evstore: error: journal postgresql://evstore:***@127.0.0.1:{port}/journal is unavailable (")
    assert "start the PostgreSQL server or fix the URL" in lines[0]
    noisy = run("--db", url, "append", "-s", SESSION, "P1", "Complete", cwd=project_dir)
    assert noisy.returncode == 5
    assert "s3cret-pw" not in noisy.stderr + result.stderr
    assert noisy.stderr.count("journal_unavailable_retry") == 3  # retried before giving up


def test_a_missing_database_and_a_foreign_one_are_refused(pg_server: PgServer, pg_url: str) -> None:
    with pytest.raises(JournalNotFoundError, match="create the database first") as caught:
        pg_journal(pg_server.url("no_such_db"), create=True)
    assert caught.value.exit_code == 5
    rows(pg_url, "CREATE TABLE events (id int)")
    with pytest.raises(JournalCorruptError, match="table named events that evstore did not create"):
        pg_journal(pg_url, create=True)
    assert rows(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(1,)]


def test_two_processes_initializing_at_once_both_succeed(pg_url: str) -> None:
    """The migration runs under its own advisory lock: the second waits, then finds the
    schema current."""
    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(lambda _: pg_journal(pg_url, create=True), range(4)))
    assert [j.schema_version for j in versions] == [schema.latest_version("postgresql")] * 4
    for j in versions:
        j.close()


def test_a_lost_connection_is_reconnected_and_retried(pg_url: str, pg_server: PgServer) -> None:
    with pg_journal(pg_url, create=True) as journal:
        journal.append("s", [ItemStatusChanged(item_id="P1", status="Complete")])
        pid = journal._pg.info.backend_pid  # noqa: SLF001
        pg_server.admin("SELECT pg_terminate_backend(%s)", pid)
        with capture_logs() as logs:
            assert journal.head() == 1  # a read: reconnected
            pid = journal._pg.info.backend_pid  # noqa: SLF001
            pg_server.admin("SELECT pg_terminate_backend(%s)", pid)
            result = journal.append("s", [ItemStatusChanged(item_id="P2", status="Complete")])
        assert (result.first_seq, result.last_version) == (2, 2)
        assert [e["event"] for e in logs if e["log_level"] == "warning"].count("journal_unavailable_retry") == 2
        recorded = list(journal.read("_errors"))
        assert [e.data["component"] for e in recorded] == ["journal"]
        assert recorded[0].data["recovery_success"] is True
        assert recorded[0].data["error_type"] == "network"


class _CommitThenDie:
    """A connection whose next COMMIT commits, then drops the connection and raises, as
    a network failure after the server committed but before the client heard it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.tripped = False

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        import psycopg  # noqa: PLC0415

        result = self._conn.execute(query, *args, **kwargs)
        if query == "COMMIT" and not self.tripped:
            self.tripped = True
            self._conn.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("how", ["events", "decide", "given-ids"])
def test_an_append_whose_commit_answer_is_lost_is_not_written_twice(pg_url: str, how: str) -> None:
    """The connection dies right after the server committed: the retry finds the ids the
    attempt wrote and answers with its result; nothing is appended twice, and `decide`
    is not asked again (its answer went out with the events that landed)."""
    with pg_journal(pg_url, create=True) as journal:
        journal.append("s", [ItemStatusChanged(item_id="P0", status="Complete")])
        proxy = _CommitThenDie(journal._pg)  # noqa: SLF001
        journal._pg = proxy  # noqa: SLF001
        journal._pipelined = False  # the proxy stands for the connection outside pipelines  # noqa: SLF001
        decided: list[int] = []
        events = [ItemStatusChanged(item_id="P1", status="Complete"),
                  ItemStatusChanged(item_id="P2", status="Complete")]

        def decide() -> list[ItemStatusChanged]:
            decided.append(1)
            return events

        if how == "decide":
            result = journal.append("s", (), decide=decide)
        elif how == "given-ids":
            result = journal.append("s", events, event_ids=["g-1", "g-2"])
        else:
            result = journal.append("s", events)
        assert proxy.tripped
        assert (result.first_seq, result.last_seq, result.count, result.duplicate) == (2, 3, 2, False)
        assert [e.data["item_id"] for e in journal.read("s")] == ["P0", "P1", "P2"]
        (recorded,) = journal.read("_errors")  # the recovered failure, counted as on SQLite
        assert (recorded.seq, recorded.data["retry_count"], recorded.data["recovery_success"]) == (4, 1, True)
        assert decided == ([1] if how == "decide" else [])


def test_durability_normal_reaches_the_server_setting(pg_url: str, project_dir: Path, cli: Cli) -> None:
    assert cli("--db", pg_url, "--durability", "normal", "init").exit_code == 0
    with Store.open(pg_url, durability="normal") as store:
        assert store.journal._pg.execute("SHOW synchronous_commit").fetchone() == ("off",)  # noqa: SLF001


def test_integrity_check_reports_a_disabled_trigger(pg_url: str) -> None:
    with pg_journal(pg_url, create=True) as journal:
        journal.append("s", [ItemStatusChanged(item_id="P1", status="Complete")])
        assert journal.integrity_check() == []
        rows(pg_url, "ALTER TABLE events DISABLE TRIGGER events_append_only")
        assert journal.integrity_check() == ["the append-only trigger events_append_only is disabled"]


def test_a_malformed_url_is_refused_without_showing_its_password() -> None:
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[postgres]'")
    for bad in ("postgresql://u:pw-123@[::1/db", "postgresql://u:pw-123@h/db?bogus=1"):
        with pytest.raises(InvalidInputError, match="invalid PostgreSQL URL") as caught:
            pg_journal(bad, create=True)
        assert caught.value.exit_code == 2
        assert "pw-123" not in str(caught.value)


@pytest.fixture(autouse=True)
def _no_env_db(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("EVSTORE_DB", raising=False)
    yield


def test_doctor_on_a_postgresql_journal(url: str, project_dir: Path, cli: Cli) -> None:
    """doctor checks the server journal (its integrity check) and this machine's files:
    a stale and an edited tasks.json are found, and fixed without losing the edit."""
    assert cli("--db", url, "init").exit_code == 0
    assert cli("--db", url, "import", str(TASKS), "--session", SESSION).exit_code == 0
    assert cli("--db", url, "project").exit_code == 0
    healthy = cli("--db", url, "doctor", "--json")
    assert healthy.exit_code == 0, healthy.stderr
    assert json.loads(healthy.stdout)["healthy"] is True
    cli("--db", url, "append", "-s", SESSION, "P1", "Complete")
    stale = cli("--db", url, "doctor")
    assert stale.exit_code == 1
    assert "PROJECTION_STALE" in stale.stdout
    (project_dir / TASKS).write_text('{"backlog": []}')
    fixed = cli("--db", url, "doctor", "--fix", "--json")
    assert fixed.exit_code == 0, fixed.stdout
    report = json.loads(fixed.stdout)
    assert {p["code"] for p in report["problems"]} == {"PROJECTION_DRIFT"}
    drift = list((project_dir / TASKS).parent.glob("tasks.json.drift-*"))
    assert [d.read_text() for d in drift] == ['{"backlog": []}']
    assert b'"status": "Complete"' in (project_dir / TASKS).read_bytes()


def test_report_on_a_postgresql_journal_matches_sqlite(url: str, project_dir: Path, cli: Cli) -> None:
    """The same commands on both backends give the same report data: chart, counts,
    timelines (times and authors aside) and fix rows."""
    from test_report import busy_session, page_data  # noqa: PLC0415

    shutil.copyfile(INITIAL, project_dir / TASKS)
    reports = {}
    for name, db in (("sqlite", str(project_dir / ".evstore" / "journal.db")), ("postgresql", url)):
        def on(*args: str, db: str = db) -> Any:
            return cli("--db", db, *args)

        assert on("init").exit_code == 0
        # Each journal exports to its own dir: two journals may not own one directory.
        own_dir = ["--export-dir", f"plan/{name}"]
        assert on("import", str(TASKS), "--session", SESSION, *own_dir).exit_code == 0
        busy_session(on)
        result = on("report", "-o", f"{name}.html")
        assert result.exit_code == 0, result.stderr
        data = page_data((project_dir / f"{name}.html").read_text())["sessions"][SESSION]
        data["chart"].pop("at")
        for timeline in data["timelines"]["items"].values():
            for entry in timeline["entries"]:
                for varying in ("at", "held_s", "by", "batch_id"):
                    entry.pop(varying, None)
        data["timelines"].pop("authors")
        reports[name] = data
    assert reports["sqlite"] == reports["postgresql"]
    assert reports["postgresql"]["chart"]["series"]["Complete"][-1] >= 2
