"""Replay, incremental projection and export: evstore beside hand-written baselines.

    python bench/project.py            # full run (about six minutes: 1,000 big cycles)
    python bench/project.py --quick    # smoke run (a few seconds)
    python bench/project.py --json bench/results/project.json

Cases (targets in brackets):
  3  replay of 100,000 events: evstore's fold of the tasks projection
     (`store.runner.fold`) vs a raw fold (`SELECT type, data FROM events ORDER BY seq`,
     orjson.loads, a dict update on the same backlog)          [>= 0.5x the orjson fold]
     (also: the same raw fold with json.loads)
  4  `store.project` of 1 new event on that 100,000-event journal vs a full
     `store.replay`                                            [< 2% of the full replay]
  5  export of a 10,000-subtask backlog (real subtasks cloned under new ids):
     evstore's render + `write_atomic`, and a whole `store.project` of a session holding
     that backlog after 1 new event, vs the floor: orjson OPT_INDENT_2 + an atomic write
     by hand (tmp, fsync, rename, fsync dir)                   [<= 1.5x the floor]
     (also: json.dumps(indent=2) + the same write)
  6  `store.project` of 1 new event on a generated 100,000-item session (bench/big_backlog.py)
     from a fresh Store opened as `evstore project` opens it, vs the render + atomic-write
     floor of that document                                     [<= 1.5x the floor]
     (also: the same as a whole `evstore project` process)
     the journal file's growth per append+project cycle over 1,000 cycles in one
     long-lived Store, vs the size of tasks.json               [<= 1% of it]
     (also: the largest the journal's -wal got over those cycles)

Fairness: the raw folds read the very journal evstore folds, in the same process; the
folded documents are checked equal. Every file write, evstore's or the floor's, goes to
the same directory with the same fsyncs. Durability FULL throughout.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson

from _common import (
    SESSION,
    Row,
    backlog_bytes,
    build_journal,
    finish,
    interleaved,
    item_ids,
    machine,
    med,
    median_seconds,
    parse_args,
    print_header,
    print_table,
    quiet_logs,
    scratch,
    seed,
)

CHILD_KEYS = ("milestones", "tasks", "subtasks")


# --- building the inputs ------------------------------------------------------------------------


def open_store(path: Path, durability: str = "full") -> Any:
    from eventstore import Store  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    return Store.open(path, projections=DEFAULT, create=True, durability=durability)  # type: ignore[arg-type]


def big_backlog(subtasks: int) -> dict[str, Any]:
    """The real backlog grown to `subtasks` subtasks by cloning its real subtasks, round
    robin over its tasks, each clone under a new id (`<task id>.S<n>`)."""
    doc = orjson.loads(backlog_bytes())
    tasks: list[dict[str, Any]] = []
    templates: list[dict[str, Any]] = []
    stack = list(doc["backlog"])
    while stack:
        item = stack.pop(0)
        if item.get("type") == "Task":
            tasks.append(item)
        if item.get("type") == "Subtask":
            templates.append(item)
        for key in CHILD_KEYS:
            stack.extend(item.get(key) or [])
    have = len(templates)
    next_n = {t["id"]: len(t.get("subtasks") or []) for t in tasks}
    for i in range(subtasks - have):
        task = tasks[i % len(tasks)]
        clone = copy.deepcopy(templates[i % len(templates)])
        next_n[task["id"]] += 1
        clone["id"] = f"{task['id']}.S{next_n[task['id']]}"
        task.setdefault("subtasks", []).append(clone)
    return doc


# --- baselines ------------------------------------------------------------------------------------


def raw_index(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    stack = [doc["backlog"]]
    while stack:
        for item in stack.pop():
            index.setdefault(item["id"], item)
            for key in CHILD_KEYS:
                kids = item.get(key)
                if isinstance(kids, list):
                    stack.append(kids)
    return index


def raw_fold(conn: sqlite3.Connection, loads: Any) -> tuple[dict[str, Any] | None, int]:
    """The floor of a replay: decode each payload, update the item in a dict index."""
    return fold_rows(conn.execute("SELECT type, data FROM events ORDER BY seq"), loads)


def fold_rows(rows: Any, loads: Any) -> tuple[dict[str, Any] | None, int]:
    """Fold (type, payload text) rows as a raw replay does: the backlog and its count."""
    doc: dict[str, Any] | None = None
    index: dict[str, dict[str, Any]] = {}
    count = 0
    for type_, data in rows:
        payload = loads(data)
        count += 1
        if type_ == "ItemStatusChanged":
            item = index.get(payload["item_id"])
            if item is not None:
                item["status"] = payload["status"]
        elif type_ == "BacklogImported":
            doc = payload["backlog"]
            index = raw_index(doc)
    return doc, count


def tasks_result(results: list[Any]) -> Any:
    """The tasks.json line of a project/replay run (DEFAULT may hold other projections)."""
    return next(r for r in results if r.projection == "tasks")


def atomic_write_by_hand(target: Path, data: bytes) -> None:
    """tmp (exclusive) → write → fsync → close → rename → fsync the directory."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --- cases ----------------------------------------------------------------------------------------


def replay_cases(root: Path, events: int, rounds: int, incr_runs: int) -> list[Row]:
    from eventstore.events import ItemStatusChanged  # noqa: PLC0415

    db = root / "replay.db"
    export_dir = root / "replay-out"
    build_journal(db, export_dir, events)
    rows: list[Row] = []
    with open_store(db) as store:
        projection = next(p for p in store.projections if p.name == "tasks")
        conn = sqlite3.connect(db)
        try:
            result: dict[str, Any] = {}

            def evstore_fold() -> None:
                result["evstore"] = store.runner.fold(projection, SESSION)

            def orjson_fold() -> None:
                result["orjson"] = raw_fold(conn, orjson.loads)

            def json_fold() -> None:
                result["json"] = raw_fold(conn, json.loads)

            samples = interleaved(
                {"evstore": evstore_fold, "orjson": orjson_fold, "json": json_fold},
                rounds=rounds,
            )
        finally:
            conn.close()
        state, _, applied = result["evstore"]
        assert applied == events + 2 == result["orjson"][1] == result["json"][1]  # noqa: S101
        assert orjson.dumps(state.doc) == orjson.dumps(result["orjson"][0])  # noqa: S101
        assert orjson.dumps(state.doc) == orjson.dumps(result["json"][0])  # noqa: S101
        n = applied
        rate = {k: n / med(v) for k, v in samples.items()}
        label = f"{events:,}"
        rows.append(
            Row(f"3 replay fold, {label} events", "rate", rate["evstore"], rate["orjson"],
                "raw fold, orjson.loads", "ev/s", target=0.5,
                note=f"store.runner.fold(tasks) over {n:,} events (backlog import + {label} "
                     f"status changes); median of {rounds} interleaved rounds",
                samples={k: [n / x for x in v] for k, v in samples.items()})
        )
        rows.append(
            Row(f"3 replay fold, {label} events", "info", rate["evstore"], rate["json"],
                "raw fold, json.loads", "ev/s")
        )

        # 4: incremental project of one new event vs a full replay (fold+render+write+checkpoint)
        ids = item_ids(state.doc)
        flip = {"i": 0}

        def one_more_event() -> None:
            flip["i"] += 1
            status = "Complete" if flip["i"] % 2 else "Failed"
            store.append(SESSION, [ItemStatusChanged(item_id=ids[0], status=status)])

        full_s, full_samples = median_seconds(lambda: store.replay(SESSION), repeat=max(3, rounds // 2))
        last: dict[str, Any] = {}

        def project() -> None:
            last["r"] = store.project(SESSION)

        incr_s, incr_samples = median_seconds(project, repeat=incr_runs, warmup=2, setup=one_more_event)
        res = tasks_result(last["r"])
        assert res.events_applied == 1 and res.action == "written", res  # noqa: S101
        rows.append(
            Row(f"4 project 1 new event on {label}", "time", incr_s, full_s,
                "full store.replay", "s", target=0.02,
                note=f"store.project after 1 append (median of {incr_runs}) vs store.replay "
                     f"(median of {len(full_samples)}); both run every DEFAULT projection: fold, "
                     "render, write the files, save the checkpoints",
                samples={"evstore": incr_samples, "baseline": full_samples})
        )
    return rows


def export_cases(root: Path, subtasks: int, rounds: int) -> list[Row]:
    from eventstore.atomic import write_atomic  # noqa: PLC0415
    from eventstore.events import ItemStatusChanged  # noqa: PLC0415
    from projections.backlog import BacklogState, TasksProjection  # noqa: PLC0415

    doc = big_backlog(subtasks)
    state = BacklogState(doc)
    counted = sum(1 for item, _, _ in state.index.values() if item.get("type") == "Subtask")
    assert counted == subtasks, counted  # noqa: S101
    projection = TasksProjection()
    out = root / "export"
    out.mkdir()
    target = out / "tasks.json"
    size = len(projection.render(state) or b"")

    def evstore_export() -> None:
        data = projection.render(state)
        assert data is not None  # noqa: S101
        write_atomic(target, data)

    def floor() -> None:
        atomic_write_by_hand(target, orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    def stdlib() -> None:
        atomic_write_by_hand(target, json.dumps(doc, indent=2, ensure_ascii=False).encode())

    samples = interleaved({"evstore": evstore_export, "floor": floor, "json": stdlib}, rounds=rounds)
    assert projection.render(state) == orjson.dumps(doc, option=orjson.OPT_INDENT_2)  # noqa: S101
    t = {k: med(v) for k, v in samples.items()}
    label = f"{subtasks:,}"
    rows = [
        Row(f"5 export {label}-subtask backlog", "time", t["evstore"], t["floor"],
            "orjson INDENT_2 + atomic write", "s", target=1.5,
            note=f"TasksProjection.render + write_atomic, {size / 1e6:.1f} MB file, "
                 f"{len(state.index):,} items; median of {rounds}",
            samples=samples),
        Row(f"5 export {label}-subtask backlog", "info", t["evstore"], t["json"],
            "json.dumps(indent=2) + atomic write", "s"),
    ]

    # The same export as a user gets it: a session holding that backlog, one new event,
    # `store.project` (checkpoint load, fold, render, sha256, write, checkpoint save).
    with open_store(root / "export.db") as store:
        seed(store, "big", orjson.dumps(doc), root / "export-session")
        store.project("big")
        sub_ids = [i for i, (item, _, _) in state.index.items() if item.get("type") == "Subtask"]
        flip = {"i": 0}

        def one_more_event() -> None:
            flip["i"] += 1
            status = "Complete" if flip["i"] % 2 else "Failed"
            store.append("big", [ItemStatusChanged(item_id=sub_ids[-1], status=status)])

        last: dict[str, Any] = {}

        def project() -> None:
            last["r"] = store.project("big")

        proj_s, proj_samples = median_seconds(project, repeat=rounds, warmup=1, setup=one_more_event)
        res = tasks_result(last["r"])
        assert res.action == "written" and res.events_applied == 1, res  # noqa: S101
    rows.append(
        Row(f"5 store.project, {label}-subtask session", "time", proj_s, t["floor"],
            "orjson INDENT_2 + atomic write", "s", target=1.5,
            note="whole incremental run after 1 new event (every DEFAULT projection): "
                 "checkpoint load, fold, render, sha256, write_atomic, checkpoint save; "
                 f"median of {rounds}",
            samples={"evstore": proj_samples})
    )
    return rows


def big_session_cases(root: Path, items: int, rounds: int, cycles: int) -> list[Row]:
    """6: a generated backlog of `items` items (bench/big_backlog.py, real-length text).
    `store.project` after 1 new event from a fresh Store each time, opened as `evstore
    project` opens it (an existing journal, no `init` check), beside the render +
    atomic-write floor of that document, taking turns; the same as a whole `evstore
    project` process; then `cycles` append+project cycles in one long-lived Store (as
    `evstore watch` or the MCP server runs), for how the journal file and its -wal grow."""
    import subprocess  # noqa: PLC0415
    import time  # noqa: PLC0415

    from big_backlog import big_backlog as generated  # noqa: PLC0415
    from big_backlog import count_items, subtask_ids  # noqa: PLC0415

    from eventstore.events import ItemStatusChanged  # noqa: PLC0415

    doc = generated(items)
    ids = subtask_ids(doc)
    path = root / "big-session.db"
    with open_store(path) as store:
        seed(store, "big", orjson.dumps(doc), root / "big-session")
        store.project("big")
    flip = {"i": 0}
    statuses = ("Complete", "Failed", "Implementing")

    def next_event() -> ItemStatusChanged:
        # Each event changes the file: a new item, or a status the item does not have.
        flip["i"] += 1
        return ItemStatusChanged(item_id=ids[(flip["i"] * 7919) % len(ids)],
                                 status=statuses[flip["i"] % len(statuses)])

    def one_more_event() -> None:
        with open_existing(path) as store:
            store.append("big", [next_event()])

    last: dict[str, Any] = {}

    def project() -> None:
        with open_existing(path) as store:
            last["r"] = store.project("big")

    target = root / "big-floor.json"

    def floor() -> None:
        atomic_write_by_hand(target, orjson.dumps(doc, option=orjson.OPT_INDENT_2))

    samples: dict[str, list[float]] = {"evstore": [], "floor": []}
    floor()  # warm-up: the floor's file exists, as the export's does
    for r in range(rounds):
        one_more_event()
        for name in (("evstore", "floor") if r % 2 else ("floor", "evstore")):
            started = time.perf_counter()
            (project if name == "evstore" else floor)()
            samples[name].append(time.perf_counter() - started)
    res = tasks_result(last["r"])
    assert res.action == "written" and res.events_applied == 1, res  # noqa: S101
    size = res.bytes
    label = f"{count_items(doc):,}-item"
    t = {k: med(v) for k, v in samples.items()}
    rows = [Row(f"6 store.project (fresh Store), {label} session, 1 new event", "time",
                t["evstore"], t["floor"], "orjson INDENT_2 + atomic write", "s", target=1.5,
                note=f"{size / 1e6:.0f} MB tasks.json; Store.open of the existing journal + "
                     f"project + close, every DEFAULT projection; median of {rounds}, taking "
                     "turns with the floor",
                samples=samples)]

    # The same as a user runs it: a whole `evstore project` process (interpreter, imports).
    evstore = str(Path(sys.executable).parent / "evstore")
    argv = [evstore, "--db", str(path), "project", "--session", "big", "--json"]
    # As a normal install runs: no EVSTORE_* overrides, bytecode cached (under root, not
    # in the repository), and one untimed run first to fill that cache.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EVSTORE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    process: list[float] = []
    for n in range(1 + max(3, rounds // 2)):
        one_more_event()
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=True)  # noqa: S603
        if n:
            process.append(time.perf_counter() - started)
        (tasks,) = [x for x in orjson.loads(done.stdout) if x["projection"] == "tasks"]
        assert tasks["action"] == "written", tasks  # noqa: S101
    rows.append(Row(f"6 `evstore project` process, {label} session, 1 new event", "info",
                    med(process), t["floor"], "orjson INDENT_2 + atomic write", "s",
                    note=f"the whole command: interpreter start, imports, the run; median of "
                         f"{len(process)}", samples={"evstore": process}))

    # Growth: `cycles` append+project cycles in one long-lived Store. Its connection stays
    # open, so the -wal is never removed at a close: its largest size is what it costs.
    rows += growth_rows(path, label, size, cycles, next_event)
    return rows


def growth_rows(path: Path, label: str, size: int, cycles: int, next_event: Any) -> list[Row]:
    """How the journal file and its -wal grow over `cycles` append+project cycles in one
    long-lived Store (as `evstore watch` or the MCP server runs), told apart: the cycles
    that saved a state snapshot (every SNAPSHOT_EVERY events) and all the others."""
    import time  # noqa: PLC0415

    wal = path.with_name(path.name + "-wal")

    def wal_size() -> int:
        return wal.stat().st_size if wal.exists() else 0

    before = path.stat().st_size
    wal_peak, times, grew, snapshot_cycles = 0, [], [], []
    with open_existing(path) as store:
        for n in range(cycles):
            start_size = path.stat().st_size
            store.append("big", [next_event()])
            started = time.perf_counter()
            store.project("big")
            times.append(time.perf_counter() - started)
            checkpoint = store.journal.checkpoint("tasks", "big", with_state=False)
            if checkpoint is not None and checkpoint.state_seq == checkpoint.seq:
                snapshot_cycles.append(n)
            grew.append(path.stat().st_size - start_size)
            wal_peak = max(wal_peak, wal_size())
        wal_end = wal_size()
    growth = path.stat().st_size - before
    plain = [g for n, g in enumerate(grew) if n not in snapshot_cycles]
    per_cycle = sum(plain) / max(len(plain), 1)
    at_snapshots = sum(grew[n] for n in snapshot_cycles)
    plain_times = [t for n, t in enumerate(times) if n not in snapshot_cycles] or times
    snap_ms = ", ".join(f"{times[n] * 1000:,.0f}" for n in snapshot_cycles) or "none"
    return [
        Row(f"6 journal file growth per append+project cycle, {label} session", "time",
            per_cycle, size, "tasks.json size", "B", target=0.01,
            note=f"{cycles:,} cycles in one Store: the journal file grew {growth / 1e6:,.1f} MB in "
                 f"all, {per_cycle:,.0f} B per cycle outside the {len(snapshot_cycles)} that "
                 f"saved a state snapshot (every {snapshot_every():,} events) and "
                 f"{at_snapshots / 1e6:,.1f} MB at those (a snapshot is written before the old "
                 "one is freed, so the file holds room for two; later snapshots reuse it); "
                 f"project per cycle: median {med(plain_times) * 1000:,.0f} ms, at the "
                 f"snapshots {snap_ms} ms",
            samples={"project": times, "growth": [float(g) for g in grew]}),
        Row(f"6 journal -wal peak over {cycles:,} cycles, {label} session", "info",
            wal_peak, size, "tasks.json size", "B",
            note=f"{wal_end / 1e6:,.1f} MB at the end; without a snapshot the -wal stays "
                 "within SQLite's 1,000-page autocheckpoint, a snapshot (the state, twice) "
                 "passes through it, and an open connection never shrinks the file"),
    ]


def open_existing(path: Path) -> Any:
    """The journal as `evstore project` opens it: it exists, so no `init` check (a
    `PRAGMA quick_check` of the whole file) runs."""
    from eventstore import Store  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    return Store.open(path, projections=DEFAULT)  # type: ignore[arg-type]


def snapshot_every() -> int:
    from eventstore.runner import SNAPSHOT_EVERY  # noqa: PLC0415

    return SNAPSHOT_EVERY


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logs()
    info = machine()
    print_header("project", info, quick=args.quick)
    if args.quick:
        params = {"events": 10_000, "rounds": 3, "incremental_runs": 3, "subtasks": 1_000,
                  "items": 5_000, "cycles": 10}
    else:
        params = {"events": 100_000, "rounds": 5, "incremental_runs": 9, "subtasks": 10_000,
                  "items": 100_000, "cycles": 1_000}
    rows: list[Row] = []
    with scratch("project") as root:
        rows += replay_cases(root, params["events"], params["rounds"], params["incremental_runs"])
        rows += export_cases(root, params["subtasks"], params["rounds"] + 2)
        rows += big_session_cases(root, params["items"], params["rounds"] + 2, params["cycles"])
    print_table("project: evstore vs baselines (same process, same journal, same file system)", rows)
    return finish(args, "project", info, params, rows)


if __name__ == "__main__":
    sys.exit(main())
