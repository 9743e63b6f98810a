"""`evstore mcp`: the journal as a Model Context Protocol server for agents (stdio)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import optional_session, pass_app

if TYPE_CHECKING:
    from cli.context import AppContext


@click.command()
@optional_session("The session tools act on when a call names none.")
@click.option("--project/--no-project", default=True, show_default=True,
              help="Export the session's files after each write (with a circuit breaker).")
@click.option("--flush-retries", type=click.IntRange(0, 10), default=3, show_default=True,
              envvar="EVSTORE_FLUSH_RETRIES", help="Retries of a failed export (transient errors).")
@pass_app
def mcp(obj: AppContext, session: str | None, flush_retries: int, *, project: bool) -> None:
    """Serve the journal to agents over MCP (stdio): status, claims, history.

    Needs the MCP extra: pip install 'evstore[mcp]'. Logs go to stderr; stdout is the
    protocol. Configure a client with the command `evstore` and the arguments
    `mcp --session S`.

    \b
    Example:
      evstore mcp --session 001_14b9dc2a33c7
    """
    try:
        from cli.mcp_server import Server, build  # noqa: PLC0415 - the SDK only here
    except ImportError as exc:
        raise click.UsageError(
            f"evstore mcp needs the MCP SDK ({exc}): pip install 'evstore[mcp]'"
        ) from None
    store = obj.store(flush_retries=flush_retries, tool="evstore-mcp")
    if session is not None:
        store.require_session(session)
    build(Server(store, session=session, project=project)).run("stdio")
