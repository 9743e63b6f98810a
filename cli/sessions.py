"""`evstore session move`: where a session's files go."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import check_session_id, pass_app

if TYPE_CHECKING:
    from cli.context import AppContext


@click.group()
def session() -> None:
    """Manage sessions: where their files are exported.

    An export directory belongs to one session; `move` gives a session another one.

    \b
    Example:
      evstore session move 002 plan/002
    """


@session.command()
@click.argument("session_id", metavar="SESSION", callback=check_session_id)
@click.argument("export_dir", metavar="DIR", type=click.Path(file_okay=False))
@pass_app
def move(obj: AppContext, session_id: str, export_dir: str) -> None:
    """Export SESSION to DIR from now on (recorded as a SessionMoved event).

    DIR must not be another session's export dir (exit 2). The next `evstore project`
    writes every file of SESSION into DIR; files in the old directory are left as they
    are (a tool may still read them): remove them once nothing does.

    \b
    Example:
      evstore session move 002 plan/002
    """
    store = obj.store()
    store.require_session(session_id)
    old = store.export_dir(session_id)
    result = store.move_session(session_id, export_dir)
    new = store.export_dir(session_id)
    click.echo(f"session {session_id} now exports to {new} (seq {result.last_seq}); files in "
               f"{old} were left as they are: run `evstore project`, then remove them once "
               "nothing reads them")
