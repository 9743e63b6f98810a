"""Import of a big tasks.json: `evstore import` beside the floor, as whole processes.

    python bench/importing.py            # 100,000 items (bench/big_backlog.py), 3 runs
    python bench/importing.py --quick    # 20,000 items, 1 run

Cases (targets in brackets):
  10 `evstore import FILE --session S` of a new session vs the floor: a Python process that
     reads the file, `orjson.loads` it, validates what import must (every item an object
     with string id and type, no id twice) and inserts it raw as one event, FULL
     durability                                                 [<= 2x the floor]
  10 the same file changed (1,000 statuses, one item added, one retitled), imported into
     the session again (the diff import: one event per change) vs the same floor
                                                                [<= 2x the floor]

The floor does not normalize numbers for JavaScript, check the pipeline's schema per item,
keep lookup entries or chain hashes: what evstore does beyond it is what the ratio shows.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from _common import (
    Row,
    finish,
    machine,
    parse_args,
    print_header,
    print_table,
    quiet_logs,
    raw_journal,
    scratch,
)
from big_backlog import big_backlog, subtask_ids

FLOOR = r"""
import sqlite3, sys, uuid, orjson
from datetime import UTC, datetime
data = open(sys.argv[2], "rb").read()
doc = orjson.loads(data)
seen = set()
stack = [doc["backlog"]]
while stack:
    for item in stack.pop():
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) \
                or not isinstance(item.get("type"), str) or item["id"] in seen:
            raise SystemExit("invalid")
        seen.add(item["id"])
        for key in ("milestones", "tasks", "subtasks"):
            if isinstance(item.get(key), list):
                stack.append(item[key])
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA synchronous=FULL")
conn.execute("BEGIN IMMEDIATE")
version = conn.execute("SELECT coalesce(max(version), 0) FROM events WHERE stream = ?",
                       (sys.argv[3],)).fetchone()[0]
conn.execute(
    "INSERT INTO events (stream, version, type, data, meta, recorded_at, event_id,"
    " schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    (sys.argv[3], version + 1, "BacklogImported",
     orjson.dumps({"backlog": doc, "source": sys.argv[2]}).decode(), "{}",
     datetime.now(UTC).isoformat(), str(uuid.uuid4()), 1))
conn.execute("COMMIT")
"""


def changed(doc: dict[str, Any], changes: int) -> dict[str, Any]:
    """`doc` as a pipeline leaves it after a while: statuses moved, one item added, one
    retitled."""
    out = orjson.loads(orjson.dumps(doc))
    by_id: dict[str, dict[str, Any]] = {}
    stack = list(out["backlog"])
    while stack:
        item = stack.pop()
        by_id[item["id"]] = item
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key) or [])
    for item_id in subtask_ids(out)[:changes]:
        by_id[item_id]["status"] = "Complete"
    task = by_id["P1.M1.T1"]
    task["subtasks"].append({**task["subtasks"][0], "id": "P1.M1.T1.S999", "status": "Planned"})
    by_id["P1.M1"]["title"] = by_id["P1.M1"]["title"] + " (revised)"
    return out


def run(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def evstore_command() -> str:
    exe = Path(sys.executable).parent / "evstore"
    return str(exe) if exe.exists() else "evstore"


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logs()
    info = machine()
    print_header("importing", info, quick=args.quick)
    params = ({"items": 20_000, "runs": 1, "changes": 1_000} if args.quick
              else {"items": 100_000, "runs": 3, "changes": 1_000})
    exe = evstore_command()
    rows: list[Row] = []
    with scratch("importing") as root:
        doc = big_backlog(params["items"])
        first = root / "tasks.json"
        first.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        second = root / "tasks-changed.json"
        second.write_bytes(orjson.dumps(changed(doc, params["changes"]),
                                        option=orjson.OPT_INDENT_2))
        samples: dict[str, list[float]] = {"new": [], "diff": [], "floor": [], "floor2": []}
        for attempt in range(params["runs"]):
            project = root / f"p{attempt}"
            project.mkdir()
            run([exe, "init"], project)
            samples["new"].append(run([exe, "-q", "import", str(first), "--session", "big"],
                                      project))
            samples["diff"].append(run([exe, "-q", "import", str(second), "--session", "big"],
                                       project))
            floor_db = root / f"floor{attempt}.db"
            raw_journal(floor_db, "full").close()
            samples["floor"].append(run([sys.executable, "-c", FLOOR, str(floor_db), str(first),
                                         "big"], root))
            samples["floor2"].append(run([sys.executable, "-c", FLOOR, str(floor_db),
                                          str(second), "big"], root))
        size = first.stat().st_size / 2**20
        label = f"{params['items']:,} items, {size:.0f} MiB"
        rows += [
            Row(f"10 evstore import, new session ({label})", "time",
                statistics.median(samples["new"]), statistics.median(samples["floor"]),
                "loads + validate + raw insert", "s", target=2.0,
                note=f"whole processes, median of {params['runs']}",
                samples={"evstore": samples["new"], "baseline": samples["floor"]}),
            Row(f"10 evstore import, changed file into the session ({label})", "time",
                statistics.median(samples["diff"]), statistics.median(samples["floor2"]),
                "loads + validate + raw insert", "s", target=2.0,
                note=f"{params['changes']:,} statuses changed, 1 item added, 1 retitled: "
                     "the diff import appends one event per change",
                samples={"evstore": samples["diff"], "baseline": samples["floor2"]}),
        ]
    print_table("importing: evstore import vs the floor (whole processes)", rows)
    return finish(args, "importing", info, params, rows)


if __name__ == "__main__":
    sys.exit(main())
