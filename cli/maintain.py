"""Commands that write projections: project, replay."""

from __future__ import annotations

from typing import Any

import click

from cli.app import app
from cli.context import AppContext
from cli.output import emit_json
from cli.write import _session_id

pass_app = click.make_pass_decorator(AppContext)


def _retries(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int:
    from eventstore.retry import DEFAULT_RETRIES, parse_retries  # noqa: PLC0415

    return DEFAULT_RETRIES if value is None else parse_retries(value)


@app.command()
@click.option("--session", "-s", callback=_session_id, help="Only this session (default: all).")
@click.option(
    "--flush-retries",
    envvar="EVSTORE_FLUSH_RETRIES",
    callback=_retries,
    metavar="N",
    help="Retries after the first attempt for transient write errors (EBUSY, EAGAIN, EIO, "
    "ENFILE), 0-10. Default 3; env EVSTORE_FLUSH_RETRIES.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
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


@app.command()
@click.option("--session", "-s", callback=_session_id, help="Only this session (default: all).")
@click.option("--until", metavar="SEQ|TIME",
              help="Stop at this seq, or at the last event recorded at or before this ISO 8601 "
                   "time. Needs --out.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Write here instead of the export dirs (DIR/<session>/ for all sessions, DIR/ "
                   "for one).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
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

    store = obj.store(read_only=out is not None)  # --out writes files, not the journal
    until_seq = _parse_until(store, until) if until is not None else None
    with progress_bar(f"replaying {session or 'every session'}") as bar:  # gone before the output
        results = store.replay(session, until=until_seq, out=out, progress=bar.callback)
    _report(results, as_json=as_json)


_MAX_SEQ = 2**63 - 1


def _parse_until(store: Any, value: str, *, option: str = "--until") -> int:
    from datetime import UTC, datetime  # noqa: PLC0415

    from eventstore.errors import InvalidInputError  # noqa: PLC0415
    from eventstore.numbers import whole_number  # noqa: PLC0415

    text = value.strip()
    if text.isascii() and text.isdigit():  # not "²", which isdigit() also accepts
        # Past the largest seq a journal can hold (SQLite's and PostgreSQL's bigint) is
        # simply "to the end", not a number the database would refuse.
        return whole_number(text, name=option, low=0, high=_MAX_SEQ, clamp=True)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"invalid {option} value {value!r}: expected a seq number or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(store.journal.seq_at(moment))


def _report(results: list[Any], *, as_json: bool) -> None:
    if as_json:
        emit_json(
            [
                {
                    "session": r.session,
                    "projection": r.projection,
                    "path": str(r.path),
                    "seq": r.seq,
                    "action": r.action,
                    "events_applied": r.events_applied,
                    "bytes": r.bytes,
                }
                for r in results
            ]
        )
        return
    if not results:
        click.echo("no sessions")
    for r in results:
        if r.action == "absent":
            continue  # a projection with nothing to write (no batch running, no fixes)
        click.echo(f"{r.session}: {r.path} {r.action} (seq {r.seq}, +{r.events_applied} event(s))")
