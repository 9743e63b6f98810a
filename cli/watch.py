"""`evstore watch`: keep the projected files current as the journal grows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import flush_retries_option, json_option, optional_session, pass_app

if TYPE_CHECKING:
    from cli.context import AppContext
    from eventstore.runner import ExportResult


def _interval(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int:
    from eventstore.watch import DEFAULT_INTERVAL_MS, parse_interval  # noqa: PLC0415

    return DEFAULT_INTERVAL_MS if value is None else parse_interval(value)


@click.command()
@optional_session("Only this session (default: all, including sessions imported while it runs).")
@click.option(
    "--interval",
    callback=_interval,
    metavar="MS",
    help="Milliseconds between polls of the journal, 10-86400000. Default 500.",
)
@flush_retries_option
@json_option("Print each file written as a JSON line.")
@pass_app
def watch(
    obj: AppContext, session: str | None, interval: int, flush_retries: int, *, as_json: bool
) -> None:
    """Export new events as they arrive, until SIGINT or SIGTERM.

    Polls the journal every --interval ms (it never spins); a burst of appends between
    two polls costs one export. A failed export is tried again at the next poll; after
    5 consecutive failures a circuit breaker leaves that export directory alone for
    30 s, then lets up to 3 trial exports through (one success closes it). Every
    breaker transition is logged and recorded (see `evstore errors`); appends keep
    working meanwhile. SIGINT or SIGTERM stops it once the export in progress is
    written: exit 0.

    \b
    Example:
      evstore watch --interval 250 &
      evstore append --session 001 P1.M1.T1.S1 Complete   # tasks.json follows
    """
    from eventstore.watch import Watcher, stop_on_signals  # noqa: PLC0415

    store = obj.store(flush_retries=flush_retries)
    watcher = Watcher(
        store,
        session=session,
        interval_s=interval / 1000,
        on_export=lambda _session, results: _report(results, as_json=as_json),
    )
    with stop_on_signals(watcher):
        watcher.run()


def _report(results: list[ExportResult], *, as_json: bool) -> None:
    for r in results:
        if r.action not in ("written", "removed"):
            continue  # unchanged bytes, or a projection with nothing to write
        if as_json:
            from cli.output import emit_json  # noqa: PLC0415

            emit_json(r.as_dict(), pretty=False)
        else:
            click.echo(
                f"{r.session}: {r.path} {r.action} (seq {r.seq}, +{r.events_applied} event(s))"
            )
