"""Commands for operating evstore: status, errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import json_option, pass_app
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext
    from projections.status import StatusReport


@click.command()
@json_option("Print the whole report as JSON.")
@pass_app
def status(obj: AppContext, *, as_json: bool) -> None:
    """Where everything stands; exit 1 when any projection lags or failed.

    Journal path, size and head seq; each session with its event count and, per
    projection, the checkpoint, the lag (events not exported yet) and the last export
    time; the last recorded error with its class; unfinished batches with their owner;
    the circuit breaker of each directory `evstore watch` exports to.

    \b
    Example:
      evstore status || evstore project
    """
    from projections.status import status_report  # noqa: PLC0415 - lazy: fast --help

    report = status_report(obj.store(read_only=True))
    if as_json:
        emit_json(report.as_dict())
    else:
        _print_status(report)
    if not report.current:
        raise click.exceptions.Exit(1)


def _print_status(report: StatusReport) -> None:
    journal = report.journal
    size = f"{journal.bytes:,} bytes, " if journal.bytes is not None else ""
    schema = f"schema {journal.schema_version}"
    if journal.outdated:
        from eventstore.persistence import outdated_note  # noqa: PLC0415 - only for an old journal

        schema = outdated_note(journal.schema_version)
    click.echo(f"journal {journal.path} ({size}{schema}, head seq {journal.head_seq})")
    for session in report.sessions:
        click.echo(f"session {session.session}: {session.events} events → {session.export_dir}")
        if session.shared_with:
            click.echo(f"  export dir shared with session(s) {', '.join(session.shared_with)}: "
                       "not exported until one moves (`evstore doctor` says how)")
        for p in session.projections:
            state = (
                "current"
                if p.current
                else (
                    f"{p.lag} event(s) behind"
                    if p.checkpoint_seq is not None
                    else f"never exported ({p.lag} event(s))"
                )
            )
            click.echo(
                f"  {p.name:<18} {state}" + (f", exported {p.exported_at}" if p.exported_at else "")
            )
        batch = session.batch
        if batch:
            owner = "alive" if batch.owner_alive else "not running here"
            click.echo(f"  batch {batch.batch_id}: owner pid {batch.owner_pid} on "
                       f"{batch.owner_host} ({owner}), "
                       f"{batch.remaining} remaining, in flight: "
                       f"{', '.join(batch.in_flight) or 'none'}")
    for directory, breaker in report.breakers.items():
        click.echo(f"breaker {directory}: {breaker['state']} since {breaker['since']}")
    error = report.last_error
    if error:
        click.echo(f"last error (seq {error['seq']}, {error['recorded_at']}): {error['component']} "
                   f"{error['operation']} "
                   f"{error['errno'] or ''} [{error['error_type']}/{error['severity']}] "
                   f"{'recovered' if error['recovery_success'] else 'failed'}: {error['message']}")
    lag = "some projections lag: run `evstore project`"
    click.echo("all projections current" if report.current else lag)


@click.command()
@click.option("--since", metavar="SEQ|TIME",
              help="Only errors after this seq, or recorded after this ISO 8601 time.")
@json_option("Print the summary as JSON.")
@pass_app
def errors(obj: AppContext, since: str | None, *, as_json: bool) -> None:
    """Summarize recorded failures: counts, retries, resolution, the last 10.

    Every failure evstore handles (an export that failed or needed retries, a busy
    journal that came free, breaker transitions of `evstore watch`) is recorded as an
    ErrorRecorded event; refused input (exit 2) is not.

    \b
    Example:
      evstore errors --since 2026-11-22T00:00:00Z --json
    """
    from eventstore.reports import error_summary  # noqa: PLC0415
    from eventstore.until import parse_until  # noqa: PLC0415

    store = obj.store(read_only=True)
    after = parse_until(store.journal, since, option="--since") if since is not None else 0
    summary = error_summary(store, after=after)
    if as_json:
        emit_json(summary)
        return
    if not summary["total"]:
        click.echo("no errors recorded" + (f" since seq {after}" if after else ""))
        return
    rate = summary["retry_success_rate"]
    click.echo(f"{summary['total']} error(s) recorded" + (f" since seq {after}" if after else ""))
    for title, key in (
        ("by component", "by_component"),
        ("by errno", "by_errno"),
        ("by class", "by_class"),
    ):
        click.echo(
            f"  {title}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(summary[key].items(), key=lambda kv: -kv[1]))
        )
    click.echo(f"  retried {summary['retried']}, retry success rate "
               f"{'-' if rate is None else f'{rate:.0%}'}; "
               f"resolution mean {summary['mean_resolution_ms']} ms, worst "
               f"{summary['worst_resolution_ms']} ms")
    click.echo("last failures:")
    for r in summary["last"]:
        outcome = "recovered" if r["recovery_success"] else "failed"
        click.echo(f"  {r['seq']:>6} {r['recorded_at']} {r['component']}/{r['operation']} "
                   f"{r['errno'] or '-'} "
                   f"[{r['error_type']}/{r['severity']}] {outcome} after {r['retry_count']} "
                   f"retr{'y' if r['retry_count'] == 1 else 'ies'}: {r['message']}")
