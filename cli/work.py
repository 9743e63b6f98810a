"""`evstore next`, `release`, `ready`, `blocked`: what an agent should take from the backlog."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from cli.options import json_option, pass_app, session_option
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext
    from eventstore.selection import WorkItem

status_option = click.option(
    "--status", "statuses", multiple=True, metavar="STATUS",
    help="A status that counts as pending (repeat or comma-separate; default Planned).",
)
level_option = click.option(
    "--level", type=click.Choice(["any", "task", "subtask"]), default="any", show_default=True,
    help="Which items may be taken: any level (pre-order), only tasks, or only subtasks.",
)


def _pending(statuses: tuple[str, ...]) -> tuple[str, ...]:
    split = tuple(s.strip() for value in statuses for s in value.split(",") if s.strip())
    return split or ("Planned",)


def _warn(warnings: tuple[str, ...] | list[str]) -> None:
    for warning in warnings:
        click.echo(f"evstore: warning: {warning}", err=True)


@click.command("next")
@session_option
@click.option("--claim", is_flag=True,
              help="Also mark it Implementing, in the same transaction: no one else gets it.")
@click.option("--owner", help="Who claims it (recorded in the event's meta). "
              "Default: user@host and the calling process's pid.")
@click.option("--reason", help="Recorded with the claim (default: claimed by OWNER).")
@status_option
@level_option
@json_option()
@pass_app
def next_(  # noqa: PLR0913 - one parameter per option
    obj: AppContext, *, session: str, statuses: tuple[str, ...], level: str,
    owner: str | None, reason: str | None, claim: bool, as_json: bool,
) -> None:
    """Print the next item to work on (nothing when none is ready).

    Depth-first, parent before children: the first pending item whose dependencies are
    all Complete. A parent whose children are all done is skipped. With --claim it is
    marked Implementing in the same write transaction, so agents racing for work each
    get a different item.

    \b
    Example:
      evstore next --session 001 --level subtask --claim --owner agent-7
    """
    store = obj.store()
    found = store.next_item(
        session, claim=claim, pending=_pending(statuses), level=level,
        owner=owner or _cli_owner(), reason=reason,
    )
    _warn(found.warnings)
    if as_json:
        emit_json(found.as_dict())
    elif found.item is not None:
        click.echo(found.item.id)


@click.command()
@click.argument("item")
@session_option
@click.option("--reason", required=True, help="Why the claim is given up (recorded).")
@click.option("--owner", help="Who releases it (recorded in the event's meta).")
@pass_app
def release(obj: AppContext, item: str, session: str, reason: str, owner: str | None) -> None:
    """Give a claimed (Implementing) item back: Planned, to be taken again.

    \b
    Example:
      evstore release P1.M1.T1.S1 --session 001 --reason "agent-7 timed out"
    """
    seq = obj.store().release(session, item, reason=reason, owner=owner or _cli_owner())
    click.echo(f"{session} {item} → Planned (seq {seq})")


@click.command()
@session_option
@status_option
@level_option
@json_option()
@pass_app
def ready(obj: AppContext, session: str, statuses: tuple[str, ...], level: str, *,
          as_json: bool) -> None:
    """List every item `next` could hand out, in the order it would.

    \b
    Example:
      evstore ready --session 001 --level subtask
    """
    items = obj.store().ready(session, pending=_pending(statuses), level=level)
    if as_json:
        emit_json([item.as_dict() for item in items])
        return
    for item in items:
        click.echo(f"{item.id:<16} {item.type:<9} {item.status:<12} {item.title}")


@click.command()
@session_option
@status_option
@level_option
@json_option()
@pass_app
def blocked(obj: AppContext, session: str, statuses: tuple[str, ...], level: str, *,
            as_json: bool) -> None:
    """List pending items held back by dependencies that are not Complete.

    \b
    Example:
      evstore blocked --session 001
    """
    from eventstore.selection import dependency_problems  # noqa: PLC0415

    store = obj.store()
    items = store.blocked(session, pending=_pending(statuses), level=level)
    _warn(dependency_problems(store.state(session, "tasks").doc))
    if as_json:
        emit_json([item.as_dict() for item in items])
        return
    for item in items:
        click.echo(f"{item.id:<16} waits for {_waits(item)}")


def _waits(item: WorkItem) -> str:
    return ", ".join(item.blocked_by)


def _cli_owner() -> str:
    from eventstore.work import default_owner  # noqa: PLC0415

    # The agent that ran `evstore` is our parent; our own pid dies with this command.
    return default_owner(os.getppid())
