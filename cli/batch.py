"""`evstore batch ...`: a batch orchestrator's progress as events (docs/design.md §8)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from cli.bounded import BoundedInt
from cli.options import json_option, pass_app, session_option
from cli.output import emit_json
from eventstore.numbers import MAX_PARALLEL, MAX_PID

if TYPE_CHECKING:
    from cli.context import AppContext
    from projections.batch_runs import BatchRun


def _run(obj: AppContext, session: str, *, create: bool = False,
         export_dir: str | None = None) -> BatchRun:
    from projections.batch_runs import BatchRun  # noqa: PLC0415 - lazy: fast --help

    return BatchRun(obj.store(), session, create=create, export_dir=export_dir)


@click.group()
def batch() -> None:
    """Run a batch that resumes after a crash (batch-progress.json).

    The owner of a batch is the process that runs it: by default the parent of `evstore`,
    i.e. the orchestrator that called it. A batch whose owner died is resumed by the next
    `batch start`; one whose owner is alive is refused (exit 3).

    \b
    Example:
      evstore batch start 001-a 002-b 003-c --session 001 --parallel 2
      evstore batch next --session 001          # prints 001-a and marks it in flight
      evstore batch done 001-a --session 001
    """


@batch.command("start")
@click.argument("items", nargs=-1, required=True)
@session_option
@click.option("--parallel", type=BoundedInt(1, MAX_PARALLEL), default=1, show_default=True,
              help=f"Items in flight at once, 1-{MAX_PARALLEL}.")
@click.option("--no-resume", is_flag=True,
              help="Abandon an unfinished batch (BatchAbandoned) and start afresh.")
@click.option("--retry-failed", is_flag=True, help="On resume, run failed items again too.")
@click.option("--owner-pid", type=BoundedInt(1, MAX_PID),
              help="The owning process (default: the parent of evstore).")
@click.option("--export-dir", type=click.Path(file_okay=False),
              help="For a new session: where batch-progress.json goes (default: the project root).")
@json_option("Print the outcome as JSON.")
@pass_app
def start(  # noqa: PLR0913 - one parameter per option
    obj: AppContext, items: tuple[str, ...], session: str, parallel: int, *,
    no_resume: bool, retry_failed: bool, owner_pid: int | None, export_dir: str | None,
    as_json: bool,
) -> None:
    """Start a batch of ITEMs, or resume the one whose owner died.

    A session that does not exist yet is created (a batch orchestrator needs no
    backlog); its files go to --export-dir, default the project root.

    \b
    Example:
      evstore batch start 001-a 002-b --session 001 --parallel 2
    """
    outcome = _run(obj, session, create=True, export_dir=export_dir).start(
        items, parallel=parallel, resume=not no_resume, retry_failed=retry_failed,
        owner_pid=owner_pid if owner_pid is not None else os.getppid(),
    )
    if as_json:
        emit_json({"batch_id": outcome.batch_id, "action": outcome.action,
                   "abandoned": outcome.abandoned, "remaining": outcome.remaining,
                   "warnings": outcome.warnings})
        return
    if outcome.abandoned:  # warnings (a stale batch, a different queue) are logged
        click.echo(f"abandoned batch {outcome.abandoned}")
    click.echo(
        f"{outcome.action} batch {outcome.batch_id}: {len(outcome.remaining)} item(s) to run"
    )


@batch.command("next")
@session_option
@json_option('Print {"item": ID or null, "batch_id": ...}.')
@pass_app
def next_(obj: AppContext, session: str, *, as_json: bool) -> None:
    """Take the next item, mark it in flight; prints its id, or nothing.

    Nothing is printed (exit 0) when the queue is empty or --parallel items are already
    in flight.

    \b
    Example:
      evstore batch next --session 001          # in a script: item=$(evstore batch next ...)
    """
    outcome = _run(obj, session).next()
    if as_json:
        emit_json({"item": outcome.item, "batch_id": outcome.batch_id,
                   "remaining": outcome.remaining, "in_flight": outcome.in_flight,
                   "held": outcome.held, "reason": outcome.reason})
    elif outcome.item is not None:
        click.echo(outcome.item)


@batch.command("done")
@click.argument("item")
@session_option
@pass_app
def done(obj: AppContext, item: str, session: str) -> None:
    """Mark an in-flight ITEM completed.

    \b
    Example:
      evstore batch done 001-a --session 001
    """
    _run(obj, session).done(item)


@batch.command("fail")
@click.argument("item")
@session_option
@click.option("--error", required=True, help="What went wrong.")
@pass_app
def fail(obj: AppContext, item: str, session: str, error: str) -> None:
    """Mark an in-flight ITEM failed.

    \b
    Example:
      evstore batch fail 001-a --session 001 --error "tests failed"
    """
    _run(obj, session).fail(item, error)


@batch.command("skip")
@click.argument("item")
@session_option
@click.option("--reason", required=True, help="Why it is skipped.")
@pass_app
def skip(obj: AppContext, item: str, session: str, reason: str) -> None:
    """Skip a waiting or in-flight ITEM.

    \b
    Example:
      evstore batch skip 003-c --session 001 --reason "already merged"
    """
    _run(obj, session).skip(item, reason)


@batch.command("heal")
@session_option
@pass_app
def heal(obj: AppContext, session: str) -> None:
    """Record a healing attempt (healing_attempts, last_healing_at).

    \b
    Example:
      evstore batch heal --session 001
    """
    click.echo(f"healing attempt {_run(obj, session).heal()}")


@batch.command("finish")
@session_option
@pass_app
def finish(obj: AppContext, session: str) -> None:
    """Finish the batch; batch-progress.json goes at the next export.

    \b
    Example:
      evstore batch finish --session 001
    """
    click.echo(f"finished batch {_run(obj, session).finish()}")


@batch.command("status")
@session_option
@json_option("The progress document plus remaining, in_flight, host and errors; null "
             "when none.")
@pass_app
def status(obj: AppContext, session: str, *, as_json: bool) -> None:
    """Show the unfinished batch: owner, queue, outcomes, what remains.

    \b
    Example:
      evstore batch status --session 001 --json
    """
    found: dict[str, Any] | None = _run(obj, session).status()
    if as_json:
        emit_json(found)
        return
    if found is None:
        click.echo(f"no unfinished batch in session {session}")
        return
    click.echo(
        f"batch {found['session_id']} (owner pid {found['pid']} on {found['host']}, parallel "
        f"{found['parallel']}, started {found['started_at']}, updated {found['updated_at']})\n"
        f"  queued {len(found['queued_items'])} · completed {len(found['completed'])} · failed "
        f"{len(found['failed'])} · skipped {len(found['skipped'])} · in flight "
        f"{', '.join(found['in_flight']) or 'none'} · remaining {len(found['remaining'])}"
    )
    for item, waiting in found["held"].items():
        click.echo(f"  held {item}: waits for {', '.join(waiting)}")
