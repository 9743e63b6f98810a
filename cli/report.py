"""`evstore report`: the journal as one HTML page a person opens in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.options import optional_session, pass_app

if TYPE_CHECKING:
    from cli.context import AppContext


@click.command()
@optional_session("Only this session (default: every session).")
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
    from cli.progress import progress_bar  # noqa: PLC0415
    from cli.report_html import report_page  # noqa: PLC0415
    from eventstore.atomic import write_atomic  # noqa: PLC0415
    from eventstore.errors import ExportError  # noqa: PLC0415
    from eventstore.paths import refuse_protected  # noqa: PLC0415
    from eventstore.until import parse_until  # noqa: PLC0415

    store = obj.store(read_only=True)
    if session is not None:
        store.require_session(session)
    if out != "-":  # refused before the journal is read: nothing is written either way
        refuse_protected(store, [Path(out)], what=f"report -o {out}")
    until_seq = parse_until(store.journal, until) if until is not None else None
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
