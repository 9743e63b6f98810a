"""The `evstore` command: a thin click layer over the library.

Heavy modules (pydantic, sqlite set-up, rich) load inside the commands that need them,
so `evstore --version` and `--help` start fast.
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

from cli import (
    agents,
    batch,
    doctor,
    maintain,
    ops,
    read,
    recovery,
    report,
    sessions,
    watch,
    work,
    write,
)
from cli.context import AppContext
from cli.logs import configure_logging
from eventstore._version import __version__
from eventstore.logs import forget_pending_setup

WRITE = ("init", "import", "append", "next", "release", "fail", "batch")
READ = ("show", "ready", "blocked", "log", "history", "report", "status", "errors")
MAINTAIN = ("project", "replay", "watch", "doctor", "session", "mcp")


class EvstoreGroup(click.Group):
    """Turns every failure into one line on stderr and the documented exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002 - click's signature
        return [*WRITE, *READ, *MAINTAIN, *sorted(set(self.commands) - {*WRITE, *READ, *MAINTAIN})]

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter  # noqa: ARG002 - click's signature
    ) -> None:
        for title, names in (("Write", WRITE), ("Read", READ), ("Maintain", MAINTAIN)):
            rows = [
                (name, self.commands[name].get_short_help_str(limit=70))
                for name in names
                if name in self.commands
            ]
            if rows:
                with formatter.section(f"{title} commands"):
                    formatter.write_dl(rows)

    def main(self, *args: Any, **kwargs: Any) -> Any:  # noqa: C901 - one branch per exit code
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "evstore"
            _fail(f"{exc.format_message()} (see `{command} --help`)", 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except BrokenPipeError:
            sys.exit(0)  # `evstore log | head` is not an error
        except MemoryError as exc:
            # Whatever ran out rolled back with it: say so, not "bad input" or a traceback.
            doing = f" ({exc})" if str(exc) else ""
            _fail(f"out of memory{doing}: nothing was written; free memory, raise the "
                  "limit (ulimit -v) or split the input", 5)
        except Exception as exc:  # noqa: BLE001 - the last line of defence prints one line
            from eventstore.errors import EvstoreError  # noqa: PLC0415 - error path only

            if isinstance(exc, EvstoreError):
                click.echo(f"evstore: error: {exc}", err=True)
                for line in getattr(exc, "history", ()):  # FixLimitError: what was tried
                    click.echo(line, err=True)
                sys.exit(exc.exit_code)
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                # A resource of the machine, not a bug: the same command works once the
                # limit allows it. Exit 5, as when the journal itself cannot be opened.
                where = f" at {exc.filename}" if exc.filename else ""
                _fail(f"too many open files{where} ({errno.errorcode[exc.errno]}): raise the "
                      "open-file limit (ulimit -n) and run the command again", 5)
            from cli.logs import reapply_logging  # noqa: PLC0415
            from eventstore.logs import get_logger  # noqa: PLC0415

            reapply_logging()
            get_logger("evstore.cli").exception("unexpected_error")
            _fail(f"unexpected {type(exc).__name__}: {exc} (please report it)", 1)
        sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(f"evstore: error: {message}", err=True)
    sys.exit(code)


@click.group(cls=EvstoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="evstore")
@click.option(
    "--db",
    envvar="EVSTORE_DB",
    type=click.Path(dir_okay=False),
    help="Journal file, or a postgresql:// URL. Default: .evstore/journal.db in this "
    "directory or the nearest parent.",
)
@click.option(
    "--durability",
    type=click.Choice(["full", "normal"]),
    default="full",
    show_default=True,
    help="full: every acknowledged append survives power loss. normal: faster, "
    "survives a crash of evstore but not of the machine.",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default="console",
    show_default=True,
    help="Logs on stderr: console for people, json (one object per line) for machines.",
)
@click.option("-v", "--verbose", count=True, help="More logs (-v info, -vv debug).")
@click.option("-q", "--quiet", is_flag=True, help="Errors only.")
@click.pass_context
def app(  # noqa: PLR0913 - global options
    ctx: click.Context,
    *,
    db: str | None,
    durability: str,
    log_format: str,
    verbose: int,
    quiet: bool,
) -> None:
    """evstore: every status update is an event in a journal; every file is a projection.

    \b
    Example:
      evstore init
      evstore import plan/001/tasks.json --session 001
      evstore append --session 001 P1.M1.T1.S1 Complete
      evstore project
    """
    configure_logging(log_format=log_format, verbosity=-1 if quiet else verbose)
    ctx.obj = AppContext(db=db, durability=durability)
    ctx.call_on_close(ctx.obj.close)
    # A run that logged nothing must not leave its set-up to fire in a later, unrelated
    # caller of the library in this process (tests, or an app embedding the CLI).
    ctx.call_on_close(forget_pending_setup)


def main() -> None:
    app.main(prog_name="evstore")


# The command modules define their commands and import nothing of this module: it adds them
# to the group (in any order: `list_commands` orders them for --help).
for _command in (
    write.init, write.import_, write.append, batch.batch, recovery.fail,
    work.next_, work.release, work.ready, work.blocked,
    read.show, read.log, read.history, report.report, ops.status, ops.errors,
    maintain.project, maintain.replay, watch.watch, doctor.doctor, sessions.session, agents.mcp,
):
    app.add_command(_command)
