"""Shared helpers for the benchmarks: timing, the machine header, the result table, JSON.

Every case runs evstore beside a baseline doing the same work in the same process, on the
same file system, with the same SQLite schema and durability. Rates are medians over
interleaved rounds (evstore, then the baselines, the order rotating each round) so a
slow patch of the disk does not land on one side only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/x.py` from anywhere, venv or not
    sys.path.insert(0, str(REPO))

FIXTURE = REPO / "tests" / "fixtures" / "hacky-hack" / "001_14b9dc2a33c7.tasks.49991f1.initial.json"
SESSION = "001_14b9dc2a33c7"
STATUS_CYCLE = ("Implementing", "Complete", "Researching", "Planned", "Retrying", "Failed")
INSERT_SQL = (
    "INSERT INTO events (stream, version, type, data, meta, recorded_at, event_id,"
    " schema_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# What evstore writes into `meta` (host, user, tool, pid): the raw baselines store a
# row of the same shape so both sides write the same bytes per event.
RAW_META = json.dumps(
    {"pid": os.getpid(), "host": platform.node(), "user": "bench", "tool": "raw-sqlite3"}
)


# --- set-up --------------------------------------------------------------------------------


def quiet_logs() -> None:
    """Logging as the CLI sets it by default (warnings and up, on stderr)."""
    from cli.logs import configure_logging  # noqa: PLC0415

    configure_logging(log_format="console", verbosity=0)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to PATH as JSON")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any case misses its target"
    )
    return parser.parse_args()


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory on the default temp file system, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"evstore-bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fs_type(path: Path) -> str:
    """The file system type of `path` (from /proc/mounts), e.g. ext4 or tmpfs."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and (resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind


def code_state() -> str:
    """The commit benchmarked, and which library files differ from it (if any)."""
    import subprocess  # noqa: PLC0415

    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True,
                                  text=True, check=False, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip("\n") if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [
        line[3:] for line in git("status", "--porcelain", "--", "eventstore", "projections",
                                 "cli", "schema.sql").splitlines()
    ]
    return head + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    import orjson  # noqa: PLC0415
    import pydantic  # noqa: PLC0415

    from eventstore._version import __version__  # noqa: PLC0415

    from projections import DEFAULT  # noqa: PLC0415

    tmp = Path(tempfile.gettempdir())
    return {
        "code": code_state(),
        "projections": [p.name for p in DEFAULT],
        "loadavg_start": load_average(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "orjson": orjson.__version__,
        "pydantic": pydantic.__version__,
        "evstore": __version__,
        "tempdir": str(tmp),
        "tempdir_fs": fs_type(tmp),
    }


def print_header(title: str, info: dict[str, Any], *, quick: bool) -> None:
    print(f"evstore benchmark: {title}{'  [--quick]' if quick else ''}")
    print(
        f"machine: nproc={info['nproc']}  python={info['python']} ({info['implementation']})"
        f"  sqlite={info['sqlite']}  orjson={info['orjson']}  pydantic={info['pydantic']}"
        f"  evstore={info['evstore']}"
    )
    print(f"         {info['platform']}  temp dir {info['tempdir']} ({info['tempdir_fs']})")
    print(f"code:    {info['code']}")
    print(f"store:   Store.open(..., projections=DEFAULT) = {', '.join(info['projections'])}")
    print(f"load average at start: {info['loadavg_start']} (other work on the machine skews every number)")
    print()


# --- the real backlog ----------------------------------------------------------------------------


def backlog_bytes() -> bytes:
    return FIXTURE.read_bytes()


def seed(store: Any, session: str, data: bytes, export_dir: Path, source: str = "bench") -> None:
    """Start `session` as tests/conftest.py does: SessionCreated + the imported backlog."""
    from eventstore.events import SessionCreated  # noqa: PLC0415
    from projections.imports import import_event, parse_backlog  # noqa: PLC0415

    parsed = parse_backlog(data, source=source)
    store.append(
        session,
        [SessionCreated(export_dir=str(export_dir)), import_event(parsed, source=source)],
        expected_version=0,
    )


def build_journal(path: Path, export_dir: Path, events: int) -> None:
    """A session holding the real backlog, then `events` status changes, appended by
    evstore itself in batches of 10,000 (durability only affects how fast this builds)."""
    from eventstore import Store  # noqa: PLC0415
    from eventstore.events import ItemStatusChanged  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    with Store.open(path, projections=DEFAULT, create=True, durability="normal") as store:
        seed(store, SESSION, backlog_bytes(), export_dir)
        ids = item_ids(store.state(SESSION, "tasks").doc)
        step = 10_000
        for start in range(0, events, step):
            payloads = status_payloads(ids, min(step, events - start), start)
            store.append(SESSION, [ItemStatusChanged(**p) for p in payloads])
        assert store.journal.head() == events + 2  # noqa: S101


def item_ids(doc: dict[str, Any]) -> list[str]:
    from projections.backlog import BacklogState  # noqa: PLC0415

    return list(BacklogState(doc).index)


def status_payloads(ids: Sequence[str], count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` status changes cycling over the items and the statuses, shaped exactly as
    evstore stores an ItemStatusChanged payload (`reason` included, null)."""
    n = len(ids)
    return [
        {
            "item_id": ids[i % n],
            "status": STATUS_CYCLE[(i // n + i) % len(STATUS_CYCLE)],
            "reason": None,
        }
        for i in range(start, start + count)
    ]


# --- the raw baseline's journal -----------------------------------------------------------------


def raw_journal(path: Path, durability: str) -> sqlite3.Connection:
    """A journal with evstore's exact schema (created by SQLiteJournal itself), opened as a
    plain sqlite3 connection in autocommit mode, WAL, the same `synchronous`."""
    from eventstore.sqlite import SQLiteJournal  # noqa: PLC0415

    SQLiteJournal(path, create=True, durability=durability).close()  # type: ignore[arg-type]
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={durability.upper()}")
    return conn


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    return str(uuid.uuid4())


# --- timing ----------------------------------------------------------------------------------------


def clock(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(
    fn: Callable[[], Any],
    *,
    repeat: int,
    warmup: int = 1,
    setup: Callable[[], Any] | None = None,
) -> tuple[float, list[float]]:
    """Median wall time of `fn` over `repeat` runs after `warmup` untimed ones;
    `setup` runs untimed before each run."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    samples = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        samples.append(clock(fn))
    return statistics.median(samples), samples


def interleaved(
    contenders: dict[str, Callable[[], Any]], *, rounds: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds per run of each contender over `rounds`, taking turns, the order rotating."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            samples[name].append(clock(contenders[name]))
    return samples


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- results ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. `kind` says how to read the numbers:

    rate  events/s, higher is better; ratio = evstore / baseline, target is a minimum
    time  seconds, lower is better; ratio = evstore / baseline, target is a maximum
    abs   seconds, an absolute budget for evstore; the baseline is context only
    info  no target: a reference line (the ratio still reads evstore / baseline)
    """

    case: str
    kind: str
    evstore: float | None
    baseline: float | None
    baseline_name: str
    unit: str
    target: float | None = None
    ratio: float | None = None
    passed: bool | None = None
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.evstore is not None and self.baseline:
            self.ratio = self.evstore / self.baseline
        if self.target is None:
            self.passed = None
        elif self.kind == "rate":
            self.passed = self.ratio is not None and self.ratio >= self.target
        elif self.kind == "time":
            self.passed = self.ratio is not None and self.ratio <= self.target
        elif self.kind == "abs":
            self.passed = self.evstore is not None and self.evstore < self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "info"
        if self.kind == "rate":
            return f">= {self.target:.2f}x"
        if self.kind == "time":
            return f"<= {self.target * 100:.0f}%" if self.target < 0.1 else f"<= {self.target:.2f}x"
        if self.unit == "MB":
            return f"<= {self.target:.0f} MB"
        return f"< {self.target * 1000:.0f} ms"

    @property
    def result_text(self) -> str:
        if self.passed is None:
            return "-"
        return "PASS" if self.passed else "MISS"


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ev/s":
        return f"{value:,.0f} ev/s"
    if unit == "s":
        ms = value * 1000
        return f"{ms:,.1f} ms" if ms < 1000 else f"{value:,.2f} s"
    if unit == "B":  # a size: in the unit that keeps it readable
        for scale, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if value >= scale:
                return f"{value / scale:,.1f} {name}"
        return f"{value:,.0f} B"
    return f"{value:,.3g} {unit}"


def fmt_ratio(row: Row) -> str:
    if row.ratio is None:
        return "-"
    if row.kind == "time" and row.target is not None and row.target < 0.1:
        return f"{row.ratio * 100:.2f}%"
    return f"{row.ratio:.2f}x"


def print_table(title: str, rows: Sequence[Row]) -> None:
    table = [
        (
            r.case,
            fmt_value(r.evstore, r.unit),
            r.baseline_name,
            fmt_value(r.baseline, r.unit),
            fmt_ratio(r),
            r.target_text,
            r.result_text,
        )
        for r in rows
    ]
    head = ("case", "evstore", "baseline", "baseline value", "ratio", "target", "result")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table, strict=True)]
    right = {1, 3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(title)
    print(line(head))
    print(line(["-" * w for w in widths]))
    for cells in table:
        print(line(cells))
    notes = [(r.case, r.note) for r in rows if r.note]
    if notes:
        print()
        for case, note in notes:
            print(f"  {case}: {note}")
    print()


def finish(
    args: argparse.Namespace, script: str, info: dict[str, Any], params: dict[str, Any], rows: list[Row]
) -> int:
    info["loadavg_end"] = load_average()
    print(f"load average at end: {info['loadavg_end']}")
    missed = [r.case for r in rows if r.passed is False]
    print(f"{sum(r.passed is True for r in rows)} PASS, {len(missed)} MISS"
          + (f": {', '.join(missed)}" if missed else ""))
    if args.json:
        payload = {
            "script": script,
            "quick": args.quick,
            "machine": info,
            "params": params,
            "cases": [
                {**asdict(r), "ratio": r.ratio, "passed": r.passed, "target_text": r.target_text,
                 "result": r.result_text}
                for r in rows
            ],
        }
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 1 if args.strict and missed else 0
