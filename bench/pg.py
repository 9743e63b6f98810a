"""The PostgreSQL journal: evstore beside raw psycopg doing the same inserts.

    python bench/pg.py                 # full run (a few minutes)
    python bench/pg.py --quick         # smoke run
    python bench/pg.py --json bench/results/pg.json
    python bench/pg.py --url postgresql://USER@HOST/postgres   # an existing server

Without --url a private server is started for the run (initdb + pg_ctl in /tmp, as the
tests do, but durable: fsync on, the server's defaults) and removed afterwards; with
--url, each case gets a fresh database there (the user needs CREATEDB).

Cases (targets in brackets, the SQLite benchmarks' where one applies):
  1  one event per transaction: `store.append(session, [event])` vs raw psycopg
     (`with conn.transaction(): INSERT`, seq and version counted by the client: a lone
     writer, no lock)                                                       [>= 0.8x raw]
  2  10,000 events in one append vs raw psycopg `executemany` (json.dumps) in one
     transaction                                                            [>= 0.7x raw]
  3  8 concurrent writer processes, one event per transaction, each into its own
     session: evstore (8 Stores) vs 8 raw psycopg writers taking the same advisory lock
     and numbering rows max(seq)+1 in SQL (the same gap-free, commit-ordered seq by
     hand)                                                                  [>= 0.8x raw]
     (also: 8 raw writers on a sequence (no lock, no ordering guarantee): the price of
     the guarantee)
  4  replay of 100,000 events: the tasks projection's fold (`store.runner.fold`) vs a
     raw fold (`SELECT type, data::text ... ORDER BY seq`, orjson.loads, a dict update)
                                                                            [>= 0.5x raw]
  reference: cases 1, 2 and 4 of evstore on SQLite (FULL) in this same run, in the
  same temp dir, so the two backends can be compared on one machine.

Fairness: every database is created by evstore's own DDL (schema.sql), on the same
server, with synchronous_commit on; the raw writers store the same row evstore stores
(a uuid4 event id, a UTC timestamp, a meta object of the same shape) but skip what
evstore adds: the pydantic models, the head read under the lock, validating and folding
each event into the session's live state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from _common import (
    RAW_META,
    REPO,
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
    scratch,
    seed,
    status_payloads,
)

sys.path.insert(0, str(REPO / "tests"))

RAW_STREAM = "raw"
RAW_INSERT = (
    "INSERT INTO events (seq, stream, version, type, data, meta, recorded_at, event_id,"
    " schema_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


# --- the server ---------------------------------------------------------------------------------


class Server:
    """Fresh databases on a server: a private durable one, or the one --url names."""

    def __init__(self, url: str | None) -> None:
        from pgserver import PgServer, start_server  # noqa: PLC0415

        self.own = url is None
        self.server: Any = start_server(durable=True) if url is None else PgServer(base_url=url)
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        name = f"evstore_bench_{os.getpid()}_{self.count}"
        self.server.admin(f'DROP DATABASE IF EXISTS "{name}"')
        self.server.admin(f'CREATE DATABASE "{name}"')
        return str(self.server.url(name))

    def settings(self) -> dict[str, str]:
        rows = self.server.admin(
            "SELECT name, setting FROM pg_settings WHERE name IN"
            " ('server_version', 'fsync', 'synchronous_commit', 'wal_sync_method', 'shared_buffers')"
        )
        return {str(k): str(v) for k, v in rows}

    def close(self) -> None:
        if self.own:
            self.server.remove()
        else:
            for n in range(1, self.count + 1):
                self.server.drop_database(f"evstore_bench_{os.getpid()}_{n}")


def create_schema(url: str) -> None:
    from eventstore.postgres import PostgresJournal  # noqa: PLC0415

    PostgresJournal(url, create=True).close()


# --- the contenders -------------------------------------------------------------------------------


class RawWriter:
    """The floor: psycopg on evstore's schema, one connection, a transaction per call."""

    def __init__(self, url: str) -> None:
        import psycopg  # noqa: PLC0415

        create_schema(url)
        self.conn = psycopg.connect(url, autocommit=True)
        self.seq = self.version = 0

    def one_per_txn(self, payloads: list[dict[str, Any]]) -> None:
        conn, dumps = self.conn, json.dumps
        for payload in payloads:
            self.seq += 1
            self.version += 1
            with conn.transaction():
                conn.execute(RAW_INSERT, (self.seq, RAW_STREAM, self.version, "ItemStatusChanged",
                                          dumps(payload), RAW_META, now_text(), new_id(), 1))

    def batch(self, payloads: list[dict[str, Any]]) -> None:
        recorded_at = now_text()
        rows = [
            (self.seq + i, RAW_STREAM, self.version + i, "ItemStatusChanged", json.dumps(p),
             RAW_META, recorded_at, new_id(), 1)
            for i, p in enumerate(payloads, start=1)
        ]
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(RAW_INSERT, rows)
        self.seq += len(rows)
        self.version += len(rows)

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class EvstoreWriter:
    def __init__(self, db: str | Path, export_dir: Path) -> None:
        from eventstore import Store  # noqa: PLC0415
        from eventstore.events import ItemStatusChanged  # noqa: PLC0415
        from projections import DEFAULT  # noqa: PLC0415

        self.event = ItemStatusChanged
        self.store = Store.open(db, projections=DEFAULT, create=True)
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

    def count(self) -> int:
        return self.store.journal.head()

    def close(self) -> None:
        self.store.close()


# --- cases 1 and 2 ------------------------------------------------------------------------------


def single_and_batch(server: Server, root: Path, n_single: int, n_batch: int, rounds: int) -> list[Row]:
    pg = EvstoreWriter(server.fresh(), root / "out-pg")
    lite = EvstoreWriter(root / "sqlite.db", root / "out-sqlite")
    raw = RawWriter(server.fresh())
    rows: list[Row] = []
    try:
        payloads = status_payloads(pg.ids(), n_single)
        samples = interleaved({
            "evstore": lambda: pg.one_per_txn(payloads),
            "raw": lambda: raw.one_per_txn(payloads),
            "sqlite": lambda: lite.one_per_txn(payloads),
        }, rounds=rounds)
        rate = {k: n_single / med(v) for k, v in samples.items()}
        rows.append(Row("1 append, 1 event/txn", "rate", rate["evstore"], rate["raw"],
                        "raw psycopg, 1 INSERT/txn", "ev/s", target=0.8,
                        note=f"{n_single} events x {rounds} rounds (+1 warm-up), median round",
                        samples={k: [n_single / x for x in v] for k, v in samples.items()}))
        rows.append(Row("1 ref: evstore on SQLite", "info", rate["evstore"], rate["sqlite"],
                        "evstore SQLite FULL", "ev/s"))

        payloads = status_payloads(pg.ids(), n_batch)
        models = pg.models(payloads)
        samples = interleaved({
            "evstore": lambda: pg.batch(models),
            "raw": lambda: raw.batch(payloads),
            "sqlite": lambda: lite.batch(models),
        }, rounds=rounds)
        rate = {k: n_batch / med(v) for k, v in samples.items()}
        rows.append(Row(f"2 append {n_batch:,} events in 1 txn", "rate", rate["evstore"], rate["raw"],
                        "raw psycopg executemany", "ev/s", target=0.7,
                        note="evstore: models built beforehand, as in bench/append.py case 2",
                        samples={k: [n_batch / x for x in v] for k, v in samples.items()}))
        rows.append(Row(f"2 ref: {n_batch:,} on SQLite", "info", rate["evstore"], rate["sqlite"],
                        "evstore SQLite FULL", "ev/s"))
        assert pg.count() == raw.count() + 2  # noqa: S101 - both wrote the same number
    finally:
        pg.close()
        lite.close()
        raw.close()
    return rows


# --- case 3: concurrent writers -------------------------------------------------------------------

EVSTORE_CHILD = r"""
import os, sys, time
sys.path.insert(0, sys.argv[5])
from _common import SESSION, backlog_bytes, seed, status_payloads, item_ids
from eventstore import Store
from eventstore.events import ItemStatusChanged
from projections import DEFAULT
url, name, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = Store.open(url, projections=DEFAULT)
ids = item_ids(store.state(name, "tasks").doc)
events = [ItemStatusChanged(**p) for p in status_payloads(ids, n)]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
for event in events:
    store.append(name, [event])
store.close()
"""

RAW_CHILD = r"""
import json, os, sys, time, uuid
from datetime import UTC, datetime
import psycopg
url, name, n, go, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
meta = json.dumps({"pid": os.getpid(), "host": "bench", "user": "bench", "tool": "raw-psycopg"})
conn = psycopg.connect(url, autocommit=True)
LOCKED = ("INSERT INTO events (seq, stream, version, type, data, meta, recorded_at, event_id,"
          " schema_version) SELECT (SELECT coalesce(max(seq), 0) + 1 FROM events), %s,"
          " (SELECT coalesce(max(version), 0) + 1 FROM events WHERE stream = %s),"
          " 'ItemStatusChanged', %s, %s, %s, %s, 1")
SEQUENCED = ("INSERT INTO events (seq, stream, version, type, data, meta, recorded_at, event_id,"
             " schema_version) VALUES (nextval('bench_seq'), %s, %s, 'ItemStatusChanged', %s, %s,"
             " %s, %s, 1)")
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.0005)
for i in range(1, n + 1):
    data = json.dumps({"item_id": f"P{i % 5}", "status": "Complete", "reason": None})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with conn.transaction():
        if mode == "locked":
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(b"evstore!", "big"),))
            conn.execute(LOCKED, (name, name, data, meta, now, str(uuid.uuid4())))
        else:
            conn.execute(SEQUENCED, (name, i, data, meta, now, str(uuid.uuid4())))
conn.close()
"""


def run_writers(code: str, args_for: list[list[str]], go: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env) for args in args_for]
    try:
        for child in children:
            assert child.stdout is not None  # noqa: S101
            line = child.stdout.readline()
            if line != "ready\n":
                raise RuntimeError(f"writer failed to start: {child.communicate()[1][-2000:]}")
        started = time.perf_counter()
        go.touch()
        for child in children:
            _, err = child.communicate(timeout=1800)
            if child.returncode != 0:
                raise RuntimeError(f"writer failed: {err[-2000:]}")
        return time.perf_counter() - started
    finally:
        go.unlink(missing_ok=True)
        for child in children:
            if child.poll() is None:
                child.kill()


def concurrent(server: Server, root: Path, writers: int, per_writer: int, rounds: int) -> list[Row]:
    from eventstore import Store  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    samples: dict[str, list[float]] = {"evstore": [], "raw": [], "sequence": []}
    total = writers * per_writer
    for r in range(rounds):
        url = server.fresh()
        with Store.open(url, projections=DEFAULT, create=True) as store:
            for w in range(writers):
                seed(store, f"w{w}", backlog_bytes(), root / f"out-{w}")
        seconds = run_writers(EVSTORE_CHILD, [[url, f"w{w}", str(per_writer), str(root / "go"),
                                               str(REPO / "bench")] for w in range(writers)], root / "go")
        samples["evstore"].append(seconds)
        with Store.open(url) as store:
            assert store.journal.head() == total + 2 * writers  # noqa: S101
            assert store.journal.integrity_check() == []  # noqa: S101
        for mode, key in (("locked", "raw"), ("sequence", "sequence")):
            url = server.fresh()
            create_schema(url)
            import psycopg  # noqa: PLC0415

            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE SEQUENCE bench_seq")
            samples[key].append(run_writers(RAW_CHILD, [[url, f"w{w}", str(per_writer),
                                                         str(root / "go"), mode]
                                                        for w in range(writers)], root / "go"))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in samples.items()),
              flush=True)
    rate = {k: total / med(v) for k, v in samples.items()}
    return [
        Row(f"3 {writers} writers x {per_writer} appends", "rate", rate["evstore"], rate["raw"],
            "raw psycopg, same lock", "ev/s", target=0.8,
            note=f"{writers} processes, one event per transaction, each into its own session; "
                 f"median of {rounds} rounds, a fresh database each",
            samples={k: [total / x for x in v] for k, v in samples.items()}),
        Row(f"3 ref: {writers} raw writers on a sequence", "info", rate["raw"], rate["sequence"],
            "raw psycopg, nextval, no lock", "ev/s",
            note="evstore column here: the locked raw writers; a sequence orders nothing at commit"),
    ]


# --- case 4: replay -----------------------------------------------------------------------------


def raw_fold(conn: Any, loads: Any) -> tuple[dict[str, Any] | None, int]:
    """The floor of a replay on PostgreSQL: bench/project.py's raw fold, reading from psycopg."""
    from project import fold_rows  # noqa: PLC0415

    return fold_rows(conn.execute("SELECT type, data::text FROM events ORDER BY seq"), loads)


def replay(server: Server, root: Path, events: int, rounds: int) -> list[Row]:
    import psycopg  # noqa: PLC0415

    from eventstore import Store  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    url = server.fresh()
    build_journal(url, root / "replay-out", events)  # type: ignore[arg-type]
    build_journal(root / "replay.db", root / "replay-out-sqlite", events)
    rows: list[Row] = []
    with Store.open(url, projections=DEFAULT) as store, \
            Store.open(root / "replay.db", projections=DEFAULT) as lite, \
            psycopg.connect(url) as conn:
        projection = next(p for p in store.projections if p.name == "tasks")
        result: dict[str, Any] = {}
        samples = interleaved({
            "evstore": lambda: result.__setitem__("evstore", store.runner.fold(projection, SESSION)),
            "raw": lambda: result.__setitem__("raw", raw_fold(conn, orjson.loads)),
            "sqlite": lambda: result.__setitem__("sqlite", lite.runner.fold(projection, SESSION)),
        }, rounds=rounds)
        state, _, applied = result["evstore"]
        assert applied == events + 2 == result["raw"][1]  # noqa: S101
        assert orjson.dumps(state.doc) == orjson.dumps(result["raw"][0])  # noqa: S101
        assert orjson.dumps(state.doc) == orjson.dumps(result["sqlite"][0].doc)  # noqa: S101
    n = events + 2
    rate = {k: n / med(v) for k, v in samples.items()}
    rows.append(Row(f"4 replay fold, {events:,} events", "rate", rate["evstore"], rate["raw"],
                    "raw fold, data::text + orjson", "ev/s", target=0.5,
                    note=f"store.runner.fold(tasks); median of {rounds} interleaved rounds",
                    samples={k: [n / x for x in v] for k, v in samples.items()}))
    rows.append(Row("4 ref: replay on SQLite", "info", rate["evstore"], rate["sqlite"],
                    "evstore SQLite fold", "ev/s"))
    return rows


def main() -> int:
    import argparse  # noqa: PLC0415

    url = None
    if "--url" in sys.argv:  # ours; the shared parser knows --quick/--json/--strict
        at = sys.argv.index("--url")
        url = sys.argv[at + 1]
        del sys.argv[at:at + 2]
    args: argparse.Namespace = parse_args(__doc__.splitlines()[0])
    quiet_logs()
    info = machine()
    print_header("pg", info, quick=args.quick)
    if args.quick:
        params = {"single": 100, "batch": 1_000, "writers": 8, "per_writer": 50,
                  "concurrent_rounds": 1, "events": 5_000, "rounds": 3}
    else:
        params = {"single": 500, "batch": 10_000, "writers": 8, "per_writer": 500,
                  "concurrent_rounds": 3, "events": 100_000, "rounds": 5}
    try:
        server = Server(url)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"no PostgreSQL server to benchmark: {exc}", file=sys.stderr)
        return 1
    try:
        info["postgresql"] = server.settings()
        print(f"server:  {info['postgresql']}")
        print()
        rows: list[Row] = []
        with scratch("pg") as root:
            rows += single_and_batch(server, root, params["single"], params["batch"], params["rounds"])
            rows += concurrent(server, root, params["writers"], params["per_writer"],
                               params["concurrent_rounds"])
            rows += replay(server, root, params["events"], params["rounds"])
    finally:
        server.close()
    print_table("pg: evstore on PostgreSQL vs raw psycopg (same server, same schema)", rows)
    return finish(args, "pg", info, params, rows)


if __name__ == "__main__":
    sys.exit(main())
