"""`evstore fail`: fix-task recovery (docs/design.md §9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.bounded import BoundedInt
from cli.options import json_option, pass_app, session_option
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext


@click.command()
@click.argument("item")
@session_option
@click.option("--error", required=True, help="The failure; its first line titles the fix task.")
@click.option("--max-fix-tasks", type=BoundedInt(1, 10), default=3, show_default=True,
              help="Fix tasks allowed per original before giving up (exit 6).")
@json_option("Print the whole fix record as JSON.")
@pass_app
def fail(  # noqa: PLR0913 - one parameter per option
    obj: AppContext, *, item: str, session: str, error: str, max_fix_tasks: int, as_json: bool,
) -> None:
    """Record that ITEM failed and add its next fix subtask; prints its id.

    The fix subtask goes right after the failing one (after its previous fix, if any),
    with the next free id, status Planned and the error in its context_scope. Once
    --max-fix-tasks fixes were tried, exits 6 with the fix history instead.

    \b
    Example:
      evstore fail P1.M1.T1.S1 --session 001 --error "npm test: 3 failing"   # prints P1.M1.T1.S5
    """
    from projections.fix_tasks import record_failure  # noqa: PLC0415 - lazy: fast --help

    outcome = record_failure(obj.store(), session, item, error, max_fix_tasks=max_fix_tasks)
    if as_json:
        emit_json(outcome.as_dict())
    else:
        click.echo(outcome.fix_id)
