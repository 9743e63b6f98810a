"""`evstore report` on a large journal, with the replay of the same journal beside it.

    python bench/report.py            # full run: 100,000 events (about a minute)
    python bench/report.py --quick    # smoke run: 10,000 events
    python bench/report.py --json bench/results/report.json

Cases (targets in brackets):
  R1 `evstore report -o FILE` as a user runs it (a new process: interpreter start, the
     journal read with meta, the report fold, the HTML, an atomic write) vs
     `evstore replay --out DIR` of the same journal, also a new process  [< 2 s]
  R2 the same work in one process: read + fold + render + write of the report vs
     `store.replay(out=...)`                                             [info]
  R3 `evstore report` of a generated 100,000-item backlog (bench/big_backlog.py) with
     1,000 updates, beside `evstore replay` of it                [< 3 s, page <= 5 MiB]
  R4 headless Chromium opening that page until it says it rendered      [< 5 s]

The report reads every event with its meta (who wrote it) and folds timelines, the
chart's counts, batch runs and fixes on top of the backlog; replay folds the backlog
and writes tasks.json. The ratio is the price of the page over a rebuild.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from _common import (
    SESSION,
    Row,
    build_journal,
    finish,
    interleaved,
    machine,
    med,
    parse_args,
    print_header,
    print_table,
    quiet_logs,
    scratch,
)

BUDGET_S = 2.0
sys.path.insert(0, str(Path(__file__).parent))


def evstore_bin() -> str:
    return str(Path(sys.executable).with_name("evstore"))


def cli_case(journal: Path, root: Path, label: str, rounds: int) -> Row:
    def command(*args: str) -> None:
        subprocess.run([evstore_bin(), "--db", str(journal), *args], check=True,  # noqa: S603
                       capture_output=True, cwd=root)

    samples = interleaved(
        {
            "report": lambda: command("report", "-o", str(root / "report.html")),
            "replay": lambda: command("replay", "--session", SESSION, "--out", str(root / "replayed")),
        },
        rounds=rounds,
    )
    size = (root / "report.html").stat().st_size
    return Row(f"R1 evstore report, {label} events (new process)", "abs", med(samples["report"]),
               med(samples["replay"]), "evstore replay", "s", target=BUDGET_S,
               note=f"page {size / 1024:.0f} KiB", samples=samples)


def library_case(journal: Path, root: Path, label: str, rounds: int) -> Row:
    from cli.report_html import render_report  # noqa: PLC0415
    from eventstore import Store  # noqa: PLC0415
    from eventstore.atomic import write_atomic  # noqa: PLC0415
    from eventstore.reports import error_summary  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415
    from projections.report import session_report  # noqa: PLC0415

    with Store.open(journal, projections=DEFAULT) as store:
        def report() -> None:
            data = session_report(SESSION, store.journal.read(SESSION), now=datetime.now(UTC))
            page = render_report({"title": "bench", "version": "", "journal": str(journal),
                                  "head": store.journal.head(), "until": None, "generated_at": "",
                                  "sessions": [data], "errors": error_summary(store)})
            write_atomic(root / "library.html", page)

        samples = interleaved(
            {"report": report, "replay": lambda: store.replay(SESSION, out=root / "lib-replayed")},
            rounds=rounds,
        )
    return Row(f"R2 report in one process, {label} events", "info", med(samples["report"]),
               med(samples["replay"]), "store.replay", "s", samples=samples)


BIG_PAGE_BYTES = 5 * 1024 * 1024
BIG_RENDER_S = 5.0
BIG_REPORT_S = 3.0


def big_backlog_case(root: Path, items: int, rounds: int) -> list[Row]:
    """R3/R4: a generated backlog of `items` items (bench/big_backlog.py) with 1,000 updates
    over it: `evstore report` as a process beside `evstore replay` of the same journal, the
    page's size, and (with Chromium) the time until the page says it is rendered."""
    import shutil  # noqa: PLC0415
    import time  # noqa: PLC0415

    from big_backlog import big_backlog, count_items, history  # noqa: PLC0415

    from eventstore import Store  # noqa: PLC0415
    from eventstore.events import ItemStatusChanged  # noqa: PLC0415
    from eventstore.jsonfmt import dumps  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    doc = big_backlog(items)
    plan = root / "big" / "plan"
    plan.mkdir(parents=True)
    (plan / "tasks.json").write_bytes(dumps(doc))
    journal = root / "big" / ".evstore" / "journal.db"
    with Store.open(journal, projections=DEFAULT, create=True, durability="normal") as store:
        from _common import seed  # noqa: PLC0415

        seed(store, "big", (plan / "tasks.json").read_bytes(), plan)
        store.append("big", [ItemStatusChanged(**u) for u in history(doc, 1_000)])

    def command(*args: str) -> None:
        subprocess.run([evstore_bin(), "--db", str(journal), *args], check=True,  # noqa: S603
                       capture_output=True, cwd=root / "big")

    page = root / "big" / "report.html"
    samples = interleaved(
        {"report": lambda: command("report", "-o", str(page)),
         "replay": lambda: command("replay", "--session", "big", "--out", str(root / "big" / "replayed"))},
        rounds=rounds,
    )
    label = f"{count_items(doc):,} items"
    size = page.stat().st_size
    rows = [Row(f"R3 evstore report, {label} + 1,000 updates (new process)", "abs", med(samples["report"]),
                med(samples["replay"]), "evstore replay", "s", target=BIG_REPORT_S,
                note=f"page {size / 1024 / 1024:.2f} MiB (target <= {BIG_PAGE_BYTES / 1024 / 1024:.0f} MiB)",
                samples=samples)]
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:
        def render() -> None:
            dom = subprocess.run(  # noqa: S603
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", f"--user-data-dir={root / 'chromium-profile'}",
                 "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
                capture_output=True, text=True, check=True, timeout=120).stdout
            assert 'data-rendered="ok"' in dom, "the page did not render"  # noqa: S101

        started = time.perf_counter()
        render()
        rows.append(Row(f"R4 headless Chromium until data-rendered=ok, {label}", "abs",
                        time.perf_counter() - started, None, "", "s", target=BIG_RENDER_S))
    return rows


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    quiet_logs()
    info = machine()
    print_header("report", info, quick=args.quick)
    params = {"events": 10_000, "rounds": 3} if args.quick else {"events": 100_000, "rounds": 7}
    label = f"{params['events']:,}"
    with scratch("report") as root:
        journal = root / "journal.db"
        build_journal(journal, root / "out", params["events"])
        rows = [cli_case(journal, root, label, params["rounds"]),
                library_case(journal, root, label, params["rounds"])]
        rows += big_backlog_case(root, 5_000 if args.quick else 100_000, 1 if args.quick else 3)
    print_table("report: evstore report vs a replay of the same journal", rows)
    return finish(args, "report", info, params, rows)


if __name__ == "__main__":
    sys.exit(main())
