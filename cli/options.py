"""What the command modules share: the context they are handed, and the options several of
them spell alike (so each is defined, checked and worded once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cli.context import AppContext

if TYPE_CHECKING:
    from collections.abc import Callable

    Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

pass_app = click.make_pass_decorator(AppContext)


def check_session_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """A session id as given, refused (exit 2) when it could not name a session."""
    if value is None:
        return None
    from eventstore.events import validate_session_id  # noqa: PLC0415 - lazy: fast --help

    return validate_session_id(value)


session_option = click.option(
    "--session", "-s", "session", required=True, callback=check_session_id,
    help="Session id (the PRP session, e.g. 001_14b9dc2a33c7).",
)


def optional_session(help: str = "Only this session (default: all).") -> Decorator:  # noqa: A002 - click's word
    """`--session` for commands that otherwise act on every session (or find the one)."""
    return click.option("--session", "-s", callback=check_session_id, help=help)


def json_option(help: str = "Print the result as JSON.") -> Decorator:  # noqa: A002 - click's word
    return click.option("--json", "as_json", is_flag=True, help=help)


def _retries(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int:
    from eventstore.retry import DEFAULT_RETRIES, parse_retries  # noqa: PLC0415

    return DEFAULT_RETRIES if value is None else parse_retries(value)


flush_retries_option = click.option(
    "--flush-retries",
    envvar="EVSTORE_FLUSH_RETRIES",
    callback=_retries,
    metavar="N",
    help="Retries after the first attempt for transient write errors (EBUSY, EAGAIN, EIO, "
    "ENFILE), 0-10. Default 3; env EVSTORE_FLUSH_RETRIES.",
)
