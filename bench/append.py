"""Append throughput and command latency: evstore beside raw sqlite3 and `eventsourcing`.

    python bench/append.py            # full run (about a minute)
    python bench/append.py --quick    # smoke run (a few seconds)
    python bench/append.py --json bench/results/append.json

Cases (targets in brackets):
  1  one event per transaction, durability FULL and NORMAL: `store.append(session, [event])`
     vs raw sqlite3 (WAL, same `synchronous`, BEGIN IMMEDIATE + one INSERT + COMMIT per event,
     payload through json.dumps)                                             [>= 0.8x raw]
  2  10,000 events in one append vs raw `executemany` (json.dumps) in one
     transaction                                                             [>= 0.7x raw]
     (also: raw with the JSON serialized beforehand; evstore with the model construction)
  6  the `eventsourcing` library (SQLite persistence, an aggregate, `app.save`) doing
     the work of cases 1 and 2                                               [reference]
  7  whole processes: `evstore --version` [< 150 ms] and one
     `evstore append --session S ITEM STATUS` on a prepared journal [< 350 ms], median of 7
     (bytecode cached, as in a normal install; when this shell sets PYTHONDONTWRITEBYTECODE
     the same commands are also timed with it, for reference; not with --quick)
  scale: cases 1 and 7 again on a session already holding 100,000 events  [reference]
  8  `evstore append --jsonl` of 1,000,000 status-update lines as a real process: wall time,
     peak RSS [<= 300 MB] and the longest stretch another writer could not take the write
     lock, beside raw `executemany` of the same number of rows in one transaction (rows
     built in memory first, as executemany's usual caller does)       [lock: reference]

Fairness: every journal is created by evstore's own DDL (schema.sql: CHECK json_valid,
UNIQUE(stream, version), UNIQUE event_id, triggers), on the same file system, in WAL mode
with the same `synchronous`. The raw baseline writes the same row evstore writes (a
uuid4 event id, a UTC timestamp, a meta object of the same shape) but skips what evstore
adds: the pydantic model, the version/seq reads inside the transaction, and validating
each event against the session's backlog. evstore's events carry real item ids of the
real 135-item backlog, so every event is validated and folded into its live state.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import orjson

from _common import (
    INSERT_SQL,
    RAW_META,
    SESSION,
    Row,
    backlog_bytes,
    build_journal,
    finish,
    interleaved,
    item_ids,
    machine,
    med,
    new_id,
    now_text,
    parse_args,
    print_header,
    print_table,
    quiet_logs,
    raw_journal,
    scratch,
    seed,
    status_payloads,
)

RAW_STREAM = "raw"


# --- the contenders ----------------------------------------------------------------------------


class RawWriter:
    """The floor: plain sqlite3 on the same schema, one connection, autocommit + BEGIN."""

    def __init__(self, path: Path, durability: str) -> None:
        self.conn = raw_journal(path, durability)
        self.version = 0

    def one_per_txn(self, payloads: list[dict[str, Any]]) -> None:
        conn, dumps = self.conn, json.dumps
        for payload in payloads:
            self.version += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                INSERT_SQL,
                (RAW_STREAM, self.version, "ItemStatusChanged", dumps(payload), RAW_META,
                 now_text(), new_id(), 1),
            )
            conn.execute("COMMIT")

    def batch(self, payloads: list[dict[str, Any]]) -> None:
        self._batch([json.dumps(p) for p in payloads])

    def batch_preserialized(self, data: list[str]) -> None:
        self._batch(data)

    def _batch(self, data: list[str]) -> None:
        conn = self.conn
        recorded_at = now_text()
        start = self.version
        rows = [
            (RAW_STREAM, start + i, "ItemStatusChanged", d, RAW_META, recorded_at, new_id(), 1)
            for i, d in enumerate(data, start=1)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SQL, rows)
        conn.execute("COMMIT")
        self.version += len(rows)

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class EvstoreWriter:
    def __init__(self, path: Path, durability: str, export_dir: Path | None) -> None:
        """A new journal seeded with the real backlog, or (export_dir None) an existing one."""
        from eventstore import Store  # noqa: PLC0415
        from eventstore.events import ItemStatusChanged  # noqa: PLC0415
        from projections import DEFAULT  # noqa: PLC0415

        self.event = ItemStatusChanged
        self.store = Store.open(path, projections=DEFAULT, create=True, durability=durability)  # type: ignore[arg-type]
        if export_dir is not None:
            seed(self.store, SESSION, backlog_bytes(), export_dir)

    def ids(self) -> list[str]:
        return item_ids(self.store.state(SESSION, "tasks").doc)

    def models(self, payloads: list[dict[str, Any]]) -> list[Any]:
        return [self.event(**p) for p in payloads]

    def one_per_txn(self, payloads: list[dict[str, Any]]) -> None:
        append, event = self.store.append, self.event
        for payload in payloads:
            append(SESSION, [event(**payload)])

    def batch(self, models: list[Any]) -> None:
        self.store.append(SESSION, models)

    def batch_with_models(self, payloads: list[dict[str, Any]]) -> None:
        self.store.append(SESSION, self.models(payloads))

    def count(self) -> int:
        return self.store.journal.head()

    def close(self) -> None:
        self.store.close()


def eventsourcing_available() -> str | None:
    try:
        import eventsourcing  # noqa: PLC0415
    except ImportError:
        return None
    return getattr(eventsourcing, "__version__", None) or _dist_version("eventsourcing")


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


_ES_SYNC: dict[str, str] = {}  # db file → PRAGMA synchronous for eventsourcing's pool


def _patch_eventsourcing_synchronous() -> None:
    """eventsourcing sets WAL but leaves `synchronous` at SQLite's default (FULL). Give
    each of its connections the durability under test, so the comparison is like for like."""
    from eventsourcing.sqlite import SQLiteConnectionPool  # noqa: PLC0415

    if getattr(SQLiteConnectionPool, "_bench_patched", False):
        return
    original = SQLiteConnectionPool._create_connection  # noqa: SLF001

    def create(self: Any) -> Any:
        conn = original(self)
        mode = _ES_SYNC.get(self.db_name)
        if mode is not None:
            conn._sqlite_conn.execute(f"PRAGMA synchronous={mode}")  # noqa: SLF001
        return conn

    SQLiteConnectionPool._create_connection = create  # type: ignore[method-assign]  # noqa: SLF001
    SQLiteConnectionPool._bench_patched = True  # type: ignore[attr-defined]  # noqa: SLF001


@functools.cache
def _eventsourcing_classes() -> tuple[Any, Any]:
    """Defined once: eventsourcing registers each class under its topic (module:qualname)."""
    from eventsourcing.application import Application  # noqa: PLC0415
    from eventsourcing.domain import Aggregate, event  # noqa: PLC0415

    class Backlog(Aggregate):
        @event("Created")
        def __init__(self, session: str) -> None:
            self.session = session
            self.statuses: dict[str, str] = {}

        @event("ItemStatusChanged")
        def change_status(self, item_id: str, status: str, reason: str | None) -> None:
            self.statuses[item_id] = status

    class BacklogApp(Application):  # type: ignore[type-arg]
        pass

    return Backlog, BacklogApp


class EventsourcingWriter:
    """One aggregate (the backlog) in an `eventsourcing` Application on its SQLite module."""

    def __init__(self, path: Path, durability: str) -> None:
        backlog_cls, app_cls = _eventsourcing_classes()
        _patch_eventsourcing_synchronous()
        _ES_SYNC[str(path)] = durability.upper()
        self.app = app_cls(
            env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
        )
        self.aggregate = backlog_cls(SESSION)
        self.app.save(self.aggregate)
        self.path = path
        self.durability = durability.upper()

    def one_per_txn(self, payloads: list[dict[str, Any]]) -> None:
        agg, save = self.aggregate, self.app.save
        for p in payloads:
            agg.change_status(p["item_id"], p["status"], p["reason"])
            save(agg)

    def batch(self, payloads: list[dict[str, Any]]) -> None:
        agg = self.aggregate
        for p in payloads:
            agg.change_status(p["item_id"], p["status"], p["reason"])
        self.app.save(agg)

    def count(self) -> int:
        return self.aggregate.version

    def close(self) -> None:
        self.app.close()


# --- cases ----------------------------------------------------------------------------------------


def per_transaction(root: Path, durability: str, n: int, rounds: int, es: bool) -> list[Row]:
    evs = EvstoreWriter(root / f"evstore-{durability}.db", durability, root / f"out-{durability}")
    raw = RawWriter(root / f"raw-{durability}.db", durability)
    esw = EventsourcingWriter(root / f"es-{durability}.db", durability) if es else None
    payloads = status_payloads(evs.ids(), n)
    contenders = {
        "evstore": lambda: evs.one_per_txn(payloads),
        "raw": lambda: raw.one_per_txn(payloads),
    }
    if esw is not None:
        contenders["eventsourcing"] = lambda: esw.one_per_txn(payloads)
    try:
        samples = interleaved(contenders, rounds=rounds, warmup=1)
        assert evs.count() == 2 + n * (rounds + 1), evs.count()  # noqa: S101
        assert raw.count() == n * (rounds + 1)  # noqa: S101
    finally:
        evs.close()
        raw.close()
        if esw is not None:
            esw.close()
    rate = {name: n / med(s) for name, s in samples.items()}
    label = durability.upper()
    rows = [
        Row(f"1 append, 1 event/txn, {label}", "rate", rate["evstore"], rate["raw"],
            "raw sqlite3 (json.dumps)", "ev/s", target=0.8,
            note=f"{n} events x {rounds} rounds (+1 warm-up), median round; the session grows "
                 f"from 2 to {2 + n * (rounds + 1):,} events meanwhile",
            samples={k: [n / x for x in v] for k, v in samples.items()}),
    ]
    if esw is not None:
        rows.append(
            Row(f"6 eventsourcing, 1 event/txn, {label}", "info", rate["evstore"],
                rate["eventsourcing"], "eventsourcing app.save", "ev/s",
                samples={"eventsourcing": [n / x for x in samples["eventsourcing"]]})
        )
    return rows


def batch(root: Path, n: int, rounds: int, es: bool) -> list[Row]:
    durability = "full"
    evs = EvstoreWriter(root / "evstore-batch.db", durability, root / "out-batch")
    raw = RawWriter(root / "raw-batch.db", durability)
    esw = EventsourcingWriter(root / "es-batch.db", durability) if es else None
    payloads = status_payloads(evs.ids(), n)
    models = evs.models(payloads)
    preserialized = [json.dumps(p) for p in payloads]
    contenders = {
        "evstore": lambda: evs.batch(models),
        "evstore+models": lambda: evs.batch_with_models(payloads),
        "raw": lambda: raw.batch(payloads),
        "raw-preserialized": lambda: raw.batch_preserialized(preserialized),
    }
    if esw is not None:
        contenders["eventsourcing"] = lambda: esw.batch(payloads)
    try:
        samples = interleaved(contenders, rounds=rounds, warmup=1)
        assert evs.count() == 2 + 2 * n * (rounds + 1)  # noqa: S101
        assert raw.count() == 2 * n * (rounds + 1)  # noqa: S101
    finally:
        evs.close()
        raw.close()
        if esw is not None:
            esw.close()
    rate = {name: n / med(s) for name, s in samples.items()}
    label = f"{n:,}"
    rows = [
        Row(f"2 append, {label} events in 1 txn", "rate", rate["evstore"], rate["raw"],
            "raw executemany (json.dumps)", "ev/s", target=0.7,
            note=f"FULL; evstore given the {label} models built beforehand; median of {rounds}",
            samples={k: [n / x for x in v] for k, v in samples.items()}),
        Row(f"2 append, {label} events in 1 txn", "info", rate["evstore"],
            rate["raw-preserialized"], "raw executemany (pre-serialized)", "ev/s"),
        Row(f"2 append incl. building {label} models", "info", rate["evstore+models"],
            rate["raw"], "raw executemany (json.dumps)", "ev/s"),
    ]
    if esw is not None:
        rows.append(
            Row(f"6 eventsourcing, {label} events in 1 txn", "info", rate["evstore+models"],
                rate["eventsourcing"], "eventsourcing trigger+save", "ev/s",
                note="evstore side includes building the models (eventsourcing builds its "
                     "events inside the aggregate's methods)")
        )
    return rows


RAW_APPEND = r"""
import json, sqlite3, sys, uuid
from datetime import UTC, datetime
db, stream, item, status = sys.argv[1:5]
conn = sqlite3.connect(db, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("BEGIN IMMEDIATE")
version = conn.execute("SELECT coalesce(max(version), 0) FROM events WHERE stream = ?", (stream,)).fetchone()[0]
conn.execute(
    "INSERT INTO events (stream, version, type, data, meta, recorded_at, event_id, schema_version)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    (stream, version + 1, "ItemStatusChanged",
     json.dumps({"item_id": item, "status": status, "reason": None}),
     json.dumps({"pid": 0, "host": "h", "user": "u", "tool": "raw"}),
     datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), str(uuid.uuid4()), 1))
conn.execute("COMMIT")
conn.close()
print(f"{stream} {item} -> {status} (version {version + 1})")
"""


def evstore_command() -> str:
    candidate = Path(sys.executable).parent / "evstore"
    found = str(candidate) if candidate.exists() else shutil.which("evstore")
    if not found:
        raise SystemExit("the evstore console script is not installed (pip install -e .)")
    return found


def child_env(root: Path, *, inherit_bytecode_setting: bool = False) -> dict[str, str]:
    """The environment for timed processes: no EVSTORE_* overrides, and (unless asked
    to keep this shell's setting) bytecode cached as in a normal install, under `root`
    rather than in the repository (PYTHONPYCACHEPREFIX)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVSTORE_")}
    if not inherit_bytecode_setting:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    return env


class Processes:
    """Times whole commands: 1 untimed warm-up (page cache, bytecode), then `runs`."""

    def __init__(self, cwd: Path, env: dict[str, str], runs: int) -> None:
        self.cwd, self.env, self.runs = cwd, env, runs

    def run(self, argv: list[str]) -> float:
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return elapsed

    def timed(self, make: Any, payloads: list[dict[str, Any]]) -> list[float]:
        self.run(make(payloads[0]))
        return [self.run(make(p)) for p in payloads[1 : self.runs + 1]]


def processes(root: Path, runs: int, *, bytecode_reference: bool) -> list[Row]:
    from eventstore import Store  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    project = root / "project"
    (project / ".evstore").mkdir(parents=True)
    with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT, create=True) as store:
        seed(store, SESSION, backlog_bytes(), project / "plan" / SESSION)
        ids = item_ids(store.state(SESSION, "tasks").doc)
    raw_db = root / "raw-cli.db"
    raw_journal(raw_db, "full").close()

    exe = evstore_command()
    payloads = status_payloads(ids, runs + 1)

    def version_argv(_p: dict[str, Any]) -> list[str]:
        return [exe, "--version"]

    def python_argv(_p: dict[str, Any]) -> list[str]:
        return [sys.executable, "-c", "pass"]

    def append_argv(p: dict[str, Any]) -> list[str]:
        return [exe, "append", "--session", SESSION, p["item_id"], p["status"]]

    def raw_argv(p: dict[str, Any]) -> list[str]:
        return [sys.executable, "-c", RAW_APPEND, str(raw_db), SESSION, p["item_id"], p["status"]]

    cached = Processes(project, child_env(root), runs)
    version = cached.timed(version_argv, payloads)
    python = cached.timed(python_argv, payloads)
    append = cached.timed(append_argv, payloads)
    raw = cached.timed(raw_argv, payloads)
    rows = [
        Row("7 process: evstore --version", "abs", statistics.median(version),
            statistics.median(python), "python -c pass", "s", target=0.150,
            note=f"median of {runs} runs after 1 warm-up; console script {exe}; bytecode "
                 "cached (PYTHONPYCACHEPREFIX in the scratch dir)",
            samples={"evstore": version, "baseline": python}),
        Row("7 process: evstore append ITEM STATUS", "abs", statistics.median(append),
            statistics.median(raw), "python + raw sqlite3 insert", "s", target=0.350,
            note="FULL durability, a freshly imported session (3 events), journal found from "
                 "the working directory as a user's run finds it",
            samples={"evstore": append, "baseline": raw}),
    ]
    appended = runs + 1
    if bytecode_reference and os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # This shell never writes bytecode, and the editable install has none for the
        # repository's modules: every run compiles them. Show what that costs here.
        plain = Processes(project, child_env(root, inherit_bytecode_setting=True), runs)
        version_nb = plain.timed(version_argv, payloads)
        append_nb = plain.timed(append_argv, payloads)
        appended += runs + 1
        rows += [
            Row("7 process: evstore --version, no bytecode", "info",
                statistics.median(version_nb), statistics.median(version), "same, bytecode cached",
                "s", note="PYTHONDONTWRITEBYTECODE=1 as inherited: repository modules compiled "
                          "on every run"),
            Row("7 process: evstore append, no bytecode", "info", statistics.median(append_nb),
                statistics.median(append), "same, bytecode cached", "s"),
        ]
    with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT) as store:
        assert store.journal.stream_version(SESSION) == 2 + appended  # noqa: S101
    return rows


def large_session(root: Path, events: int, n: int, rounds: int, runs: int) -> list[Row]:
    """How appends scale with the session's length: the same work on a session that
    already holds `events` events (exported once, so a checkpoint exists)."""
    project = root / "large"
    db = project / ".evstore" / "journal.db"
    build_journal(db, project / "plan" / SESSION, events)
    evs = EvstoreWriter(db, "full", None)
    evs.store.project(SESSION)  # a checkpoint, as a project that exports regularly has
    evs.store.close()
    raw_db = root / "large-raw.db"
    shutil.copyfile(db, raw_db)  # the same 100k rows; raw appends to its own stream
    evs = EvstoreWriter(db, "full", None)
    raw = RawWriter(raw_db, "full")
    ids = evs.ids()
    payloads = status_payloads(ids, n)
    label = f"{events:,}"
    try:
        samples = interleaved(
            {"evstore": lambda: evs.one_per_txn(payloads), "raw": lambda: raw.one_per_txn(payloads)},
            rounds=rounds,
        )
    finally:
        evs.close()
        raw.close()
    rate = {k: n / med(v) for k, v in samples.items()}

    exe = evstore_command()
    procs = Processes(project, child_env(root), runs)
    cli = status_payloads(ids, runs + 1)
    append = procs.timed(
        lambda p: [exe, "append", "--session", SESSION, p["item_id"], p["status"]], cli)
    raw_proc = procs.timed(
        lambda p: [sys.executable, "-c", RAW_APPEND, str(raw_db), SESSION, p["item_id"], p["status"]],
        cli)
    return [
        Row(f"1 append, 1 event/txn, FULL, {label}-event session", "info", rate["evstore"],
            rate["raw"], "raw sqlite3 on a copy", "ev/s",
            note=f"{n} events x {rounds} rounds; compare with the fresh-session line above",
            samples={k: [n / x for x in v] for k, v in samples.items()}),
        Row(f"7 process: evstore append, {label}-event session", "info",
            statistics.median(append), statistics.median(raw_proc),
            "python + raw sqlite3 insert", "s",
            note=f"checkpointed session; median of {runs}; the 350 ms budget applies here too",
            samples={"evstore": append, "baseline": raw_proc}),
    ]


def big_backlog_case(root: Path, items: int, runs: int, n: int) -> list[Row]:
    """One update on a backlog of `items` items beside the same update on the 135-item
    one: as a command (a fresh process validates from lookup entries, not the backlog)
    and through a library Store that has the session in memory."""
    from big_backlog import big_backlog  # noqa: PLC0415 - bench/ is on the path

    from eventstore import Store  # noqa: PLC0415
    from eventstore.events import ItemStatusChanged  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    projects, ids = {}, {}
    for label, data in (("small", backlog_bytes()), ("big", orjson.dumps(big_backlog(items)))):
        project = root / f"backlog-{label}"
        (project / ".evstore").mkdir(parents=True)
        with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT,
                        create=True) as store:
            seed(store, SESSION, data, project / "plan" / SESSION)
            ids[label] = [i for i in item_ids(store.state(SESSION, "tasks").doc) if i.count(".") == 3]
        projects[label] = project
    exe = evstore_command()
    timed = {}
    for label, project in projects.items():
        procs = Processes(project, child_env(root), runs)
        timed[label] = procs.timed(
            lambda p: [exe, "append", "--session", SESSION, p["item_id"], p["status"]],
            status_payloads(ids[label], runs + 1))
    library = {}
    for label, project in projects.items():
        with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT,
                        durability="normal") as store:
            store.state(SESSION, "tasks")  # in memory, as a long-running orchestrator has it
            events = [ItemStatusChanged(**p) for p in status_payloads(ids[label], n, start=7)]
            start = time.perf_counter()
            for event in events:
                store.append(SESSION, [event])
            library[label] = (time.perf_counter() - start) / n
    big_n = f"{items:,}"
    return [
        Row(f"9 evstore append, {big_n}-item backlog", "time", statistics.median(timed["big"]),
            statistics.median(timed["small"]), "same command, 135-item backlog", "s",
            target=1.3, note=f"median of {runs} processes each; the session imported, never "
                             "exported (no checkpoint): validation reads lookup entries",
            samples={"evstore": timed["big"], "baseline": timed["small"]}),
        Row(f"9 store.append, {big_n}-item backlog", "time", library["big"], library["small"],
            "same on the 135-item backlog", "s", target=1.1,
            note=f"{n} appends of 1 status update each, NORMAL, the session in memory"),
    ]


class LockProbe:
    """Another writer trying `BEGIN IMMEDIATE` every few ms without waiting: the longest
    stretch it failed is how long someone held the write lock."""

    def __init__(self, db: Path) -> None:
        self.db, self.longest_s, self._stop = db, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        conn = sqlite3.connect(self.db, timeout=0, isolation_level=None)
        since: float | None = None
        while not self._stop.is_set():
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                if since is not None:
                    self.longest_s, since = max(self.longest_s, time.monotonic() - since), None
            except sqlite3.OperationalError:
                since = time.monotonic() if since is None else since
            time.sleep(0.005)
        conn.close()


def big_jsonl(root: Path, lines: int) -> list[Row]:
    """Case 8: one huge --jsonl as a real process, and raw executemany of as many rows."""
    project = root / "jsonl"
    db = project / ".evstore" / "journal.db"
    build_journal(db, project / "plan" / SESSION, 0)
    ids = item_ids(json.loads(backlog_bytes()))
    statuses = ("Planned", "Researching", "Implementing", "Complete")
    source = root / "updates.jsonl"
    with source.open("wb") as out:
        for n in range(lines):
            out.write(json.dumps({"item_id": ids[n % len(ids)], "status": statuses[n % 4]},
                                 separators=(",", ":")).encode() + b"\n")
    started = time.monotonic()
    with LockProbe(db) as probe:
        proc = subprocess.Popen(
            [evstore_command(), "append", "--session", SESSION, "--jsonl", str(source)],
            cwd=project, env=child_env(root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"evstore append --jsonl failed: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
    peak_mb = usage.ru_maxrss / 1024
    raw = RawWriter(root / "jsonl-raw.db", "full")
    data = [json.dumps({"item_id": ids[n % len(ids)], "status": statuses[n % 4], "reason": None})
            for n in range(lines)]
    raw_started = time.monotonic()
    raw.batch_preserialized(data)
    raw_lock = time.monotonic() - raw_started
    raw.close()
    del data
    label = f"{lines:,}"
    return [
        Row(f"8  append --jsonl {label} lines: wall", "info", wall, None, "", "s",
            note="real process: parse, validate, stage, insert, fsync"),
        Row(f"8  append --jsonl {label} lines: peak RSS", "abs", peak_mb, None, "", "MB",
            target=300, note="ru_maxrss of the child (os.wait4)"),
        Row(f"8  append --jsonl {label} lines: write lock held", "info", probe.longest_s,
            raw_lock, "raw executemany, one transaction", "s",
            note="longest stretch a probe could not BEGIN IMMEDIATE"),
    ]


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logs()
    info = machine()
    es_version = eventsourcing_available()
    info["eventsourcing"] = es_version
    print_header("append", info, quick=args.quick)
    if args.quick:
        params = {"per_txn_full": 50, "per_txn_normal": 50, "per_txn_rounds": 3,
                  "batch": 2_000, "batch_rounds": 3, "process_runs": 3,
                  "large_events": 10_000, "large_per_txn": 20, "large_rounds": 3,
                  "jsonl_lines": 20_000, "big_items": 20_000, "big_appends": 50}
    else:
        params = {"per_txn_full": 500, "per_txn_normal": 500, "per_txn_rounds": 7,
                  "batch": 10_000, "batch_rounds": 7, "process_runs": 7,
                  "large_events": 100_000, "large_per_txn": 100, "large_rounds": 3,
                  "jsonl_lines": 1_000_000, "big_items": 100_000, "big_appends": 300}
    es = es_version is not None
    rows: list[Row] = []
    with scratch("append") as root:
        for durability in ("full", "normal"):
            n = params[f"per_txn_{durability}"]
            rows += per_transaction(root, durability, n, params["per_txn_rounds"], es)
        rows += batch(root, params["batch"], params["batch_rounds"], es)
        rows += processes(root, params["process_runs"], bytecode_reference=not args.quick)
        rows += large_session(root, params["large_events"], params["large_per_txn"],
                              params["large_rounds"], params["process_runs"])
        rows += big_jsonl(root, params["jsonl_lines"])
        rows += big_backlog_case(root, params["big_items"], params["process_runs"],
                                 params["big_appends"])
    order = {"1": 0, "2": 1, "6": 2, "7": 3, "8": 4, "9": 5}
    rows.sort(key=lambda r: order.get(r.case[0], 9))
    if not es:
        print("eventsourcing is not installed (pip install -e '.[bench]'): case 6 skipped\n")
    print_table("append: evstore vs baselines (same process, same schema, same durability)", rows)
    return finish(args, "append", info, params, rows)


if __name__ == "__main__":
    sys.exit(main())
