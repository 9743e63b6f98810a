"""Commands that write projections: project, replay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import flush_retries_option, json_option, optional_session, pass_app
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext
    from eventstore.runner import ExportResult


@click.command()
@optional_session()
@flush_retries_option
@json_option("Print the results as JSON.")
@pass_app
def project(obj: AppContext, session: str | None, flush_retries: int, *, as_json: bool) -> None:
    """Bring every projected file (tasks.json, ...) up to the journal head.

    Incremental: only events since the last export are folded, and a file whose bytes
    would not change is not rewritten. Every session is exported even when one fails;
    exit 4 when any file cannot be written (each failure is named; the journal is
    intact; run it again once the cause is fixed).

    \b
    Example:
      evstore project --flush-retries 3
    """
    from cli.progress import progress_bar  # noqa: PLC0415
    from eventstore.errors import ProjectFailedError  # noqa: PLC0415

    store = obj.store(flush_retries=flush_retries)
    title = f"projecting {session or 'every session'}"
    try:
        with progress_bar(title) as bar:  # gone before the output
            results = store.project(session, progress=bar.callback)
    except ProjectFailedError as exc:
        # What was exported is said first: the sessions that failed did not stop the others.
        if exc.results or as_json:
            _report(exc.results, as_json=as_json)
        if len(exc.failures) > 1:
            for name, failure in exc.failures.items():
                click.echo(f"evstore: error: session {name}: {failure}", err=True)
        raise
    _report(results, as_json=as_json)


@click.command()
@optional_session()
@click.option("--until", metavar="SEQ|TIME",
              help="Stop at this seq, or at the last event recorded at or before this ISO 8601 "
                   "time. Needs --out.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write here instead of the export dirs (DIR/<session>/ for all sessions, DIR/ "
                   "for one).")
@json_option("Print the results as JSON.")
@pass_app
def replay(
    obj: AppContext, session: str | None, until: str | None, out: str | None, *, as_json: bool
) -> None:
    """Rebuild files from the journal alone, ignoring checkpoints.

    Replaces the legacy tasks.json.failed recovery: whatever was acknowledged is in the
    journal, and this writes it out again. With --until, an earlier state into --out.

    \b
    Example:
      evstore replay
      evstore replay --session 001 --until 2026-01-13T12:00:00Z --out /tmp/then
    """
    from cli.progress import progress_bar  # noqa: PLC0415
    from eventstore.until import parse_until  # noqa: PLC0415

    store = obj.store(read_only=out is not None)  # --out writes files, not the journal
    until_seq = parse_until(store.journal, until) if until is not None else None
    with progress_bar(f"replaying {session or 'every session'}") as bar:  # gone before the output
        results = store.replay(session, until=until_seq, out=out, progress=bar.callback)
    _report(results, as_json=as_json)


def _report(results: list[ExportResult], *, as_json: bool) -> None:
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    if not results:
        click.echo("no sessions")
    for r in results:
        if r.action == "absent":
            continue  # a projection with nothing to write (no batch running, no fixes)
        click.echo(f"{r.session}: {r.path} {r.action} (seq {r.seq}, +{r.events_applied} event(s))")
