"""`evstore report`: the journal as one HTML page a person opens in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.app import app
from cli.context import AppContext
from cli.write import _session_id

if TYPE_CHECKING:
    from eventstore.store import Store

pass_app = click.make_pass_decorator(AppContext)


@app.command()
@click.option("--session", "-s", callback=_session_id,
              help="Only this session (default: every session).")
@click.option(
    "--out",
    "-o",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write the page (- for stdout).",
)
@click.option("--until", metavar="SEQ|TIME",
              help="The journal as it was at this seq, or at the last event recorded at or before "
                   "this ISO 8601 time.")
@pass_app
def report(obj: AppContext, session: str | None, out: str, until: str | None) -> None:
    """Write one HTML report: backlog, status chart, timelines, errors.

    One file with nothing to fetch: the backlog tree with status counts, a chart of how
    many items held each status after every event, each item's timeline (click it),
    batch runs, fix-task history and the recorded errors.

    \b
    Example:
      evstore report --session 001 --out report.html
      evstore report --until 2026-01-13T12:00:00Z -o then.html
    """
    from cli.maintain import _parse_until  # noqa: PLC0415
    from cli.progress import progress_bar  # noqa: PLC0415
    from eventstore.atomic import write_atomic  # noqa: PLC0415
    from eventstore.errors import ExportError  # noqa: PLC0415
    from eventstore.paths import refuse_protected  # noqa: PLC0415

    store = obj.store(read_only=True)
    if session is not None:
        store.require_session(session)
    if out != "-":  # refused before the journal is read: nothing is written either way
        refuse_protected(store, [Path(out)], what=f"report -o {out}")
    until_seq = _parse_until(store, until) if until is not None else None
    sessions = [session] if session else store.sessions()
    with progress_bar("reading the journal") as bar:  # gone before the output
        page = report_page(store, sessions, until_seq, progress=bar.callback)
    if out == "-":
        click.echo(page, nl=False)  # bytes go to the binary stdout as they are
        return
    try:
        write_atomic(Path(out), page)
    except OSError as exc:
        raise ExportError(f"cannot write report {out}: {exc.strerror or exc}", path=out,
                          errno_code=exc.errno, attempts=1) from None
    click.echo(f"wrote {out} ({len(page) / 1024:.0f} KiB, {len(sessions)} session(s))")


def report_page(store: Store, sessions: list[str], until_seq: int | None, *,
                progress: Any = None) -> bytes:
    """The report of `sessions` as of `until_seq` (None: the head), as HTML bytes."""
    from cli.report_html import render_report  # noqa: PLC0415
    from eventstore._version import __version__  # noqa: PLC0415
    from eventstore.records import format_time, utc_now  # noqa: PLC0415
    from eventstore.reports import error_summary  # noqa: PLC0415
    from projections.batch_runs import parse_time  # noqa: PLC0415
    from projections.report import session_report  # noqa: PLC0415

    now = utc_now()
    if until_seq:  # an earlier state's current statuses held until its last event, not now
        last = next(store.journal.read(after=until_seq - 1, until=until_seq), None)
        now = parse_time(last.recorded_at) if last is not None else now
    counted = _counted(store, sessions, until_seq, progress)
    folded = [session_report(name, counted(name), now=now) for name in sessions]
    context: dict[str, Any] = {
        "title": f"evstore report: {', '.join(sessions) or 'empty journal'}",
        "version": __version__,
        "journal": store.journal.location,
        "head": store.journal.head(),
        "until": until_seq,
        "generated_at": format_time(utc_now()),
        "sessions": folded,
        "errors": error_summary(store, until=until_seq),
    }
    return render_report(context)


def _counted(store: Any, sessions: list[str], until: int | None, progress: Any) -> Any:
    """`events(session)`, counted for one bar over every session when there is a bar."""
    if progress is None:
        return lambda name: store.journal.read(name, until=until)
    from eventstore.progress import reporting, shares  # noqa: PLC0415

    sizes = {name: store.journal.count(name, until=until) for name in sessions}
    parts = dict(zip(sessions, shares(progress, list(sizes.values())), strict=True))
    return lambda name: reporting(store.journal.read(name, until=until), parts[name], sizes[name])
