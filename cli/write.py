"""Commands that append to the journal: init, import, append."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from cli.bounded import BoundedInt
from cli.options import json_option, pass_app, session_option
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext
    from eventstore.records import AppendResult


@click.command()
@click.option("--force", is_flag=True,
              help="Make a separate project here even inside another project's directory.")
@pass_app
def init(obj: AppContext, *, force: bool) -> None:
    """Create the journal (.evstore/journal.db here, or --db).

    Only where no file exists: an existing journal is checked (quick_check; exit 5 when
    damaged) and migrated, never replaced. Inside another project (a parent directory
    holds .evstore/) it refuses, naming that journal: commands run below would find the
    new one instead. --force makes the separate project anyway.

    \b
    Example:
      evstore init
    """
    from eventstore.locate import default_journal, enclosing_journal, is_url  # noqa: PLC0415

    if is_url(obj.db):  # a PostgreSQL URL: the schema version tells
        store = obj.store(create=True)
        events = store.journal.head()
        verb = "Initialized" if events == 0 else "Reinitialized existing"
        click.echo(f"{verb} evstore journal in {store.journal.location}")
        return
    path = Path(obj.db) if obj.db else default_journal(Path.cwd())
    outer = None if obj.db or force else enclosing_journal(Path.cwd())
    if outer is not None:
        from eventstore.errors import InvalidInputError  # noqa: PLC0415

        raise InvalidInputError(
            f"{Path.cwd()} is inside the project of {outer}: a journal here would shadow "
            "it for every command run below: run evstore from that project, or pass "
            "--force to make a separate project here"
        )
    existed = path.exists()
    store = obj.store(create=True)
    verb = "Reinitialized existing" if existed else "Initialized empty"
    click.echo(f"{verb} evstore journal in {path.resolve()}")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=False), required=False)
@session_option
@click.option(
    "--batch-progress",
    type=click.Path(dir_okay=False),
    help="A legacy batch-progress.json to continue under evstore (instead of FILE).",
)
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False),
    help="Where this session's files are written (default: FILE's directory). "
    "Relative paths resolve against the project root.",
)
@click.option("--strict", is_flag=True, help="Refuse (exit 2) a file that breaks the pipeline's "
              "backlog schema, instead of importing it with a warning per problem.")
@json_option()
@pass_app
def import_(  # noqa: PLR0913 - one parameter per option
    obj: AppContext, file: str | None, session: str, batch_progress: str | None,
    export_dir: str | None, *, strict: bool, as_json: bool,
) -> None:
    """Import a tasks.json (or a legacy tasks.json.failed) into a session.

    A new session is seeded with the whole document. Into an existing session, only the
    differences are appended (status changes, edits, added or removed items), so a file
    edited by hand, or the pending updates of a legacy recovery file, join the history.

    With --batch-progress, a legacy batch-progress.json becomes the session's unfinished
    batch, so a run begun before evstore resumes under it.

    \b
    Example:
      evstore import plan/001_14b9dc2a33c7/tasks.json --session 001_14b9dc2a33c7
      evstore import plan/001/tasks.json.failed --session 001
      evstore import --batch-progress .wreckit/batch-progress.json --session wreckit
    """
    from cli.progress import progress_bar  # noqa: PLC0415
    from projections.importer import import_batch_progress, import_file  # noqa: PLC0415

    if (file is None) == (batch_progress is None):
        raise click.UsageError("give FILE or --batch-progress FILE, one of them")
    store = obj.store()
    if batch_progress is not None:
        outcome = import_batch_progress(store, Path(batch_progress), session, export_dir)
        shown = batch_progress
    else:
        assert file is not None  # noqa: S101 - checked above
        with progress_bar(f"importing {file}") as bar:  # gone before the output
            outcome = import_file(store, Path(file), session, export_dir, strict=strict,
                                  progress=bar.callback, stage=bar.stage)
        shown = file
    if as_json:
        emit_json(outcome.as_dict())
        return
    for warning in outcome.warnings:
        click.echo(f"evstore: warning: {warning}", err=True)
    if outcome.events == 0:
        click.echo(f"{shown}: no changes to session {session}")
    else:
        click.echo(
            f"imported {shown} into session {session}: {outcome.events} event(s), "
            f"seq {outcome.first_seq}..{outcome.last_seq}, export dir {outcome.export_dir}"
        )


@click.command()
@click.argument("item", required=False)
@click.argument("status", required=False)
@session_option
@click.option("--jsonl", type=click.File("rb"),
              help="Append one event per line of FILE (- for stdin), all or nothing.")
@click.option("--reason", help="Why the status changed (kept in the event).")
@click.option("--event-id",
              help="Idempotency key: an append with an id already present writes nothing.")
@click.option("--expected-version", type=BoundedInt(0),
              help="Refuse (exit 3) unless the session is at this version.")
@json_option()
@pass_app
def append(  # noqa: PLR0913 - one option per knob of an append
    obj: AppContext,
    *,
    item: str | None,
    status: str | None,
    session: str,
    jsonl: IO[bytes] | None,
    reason: str | None,
    event_id: str | None,
    expected_version: int | None,
    as_json: bool,
) -> None:
    """Append a status change (ITEM STATUS), or many events with --jsonl.

    With --jsonl each line is an event object with a "type" (fields at the top level, or
    under "data" as `evstore log --json` prints them), or the shorthand
    {"item_id": ..., "status": ...}. Blank lines are skipped; one bad line refuses the
    whole batch, naming its line number.

    \b
    Example:
      evstore append --session 001 P1.M1.T1.S1 Complete
      evstore append --session 001 --jsonl updates.jsonl
    """
    from eventstore.events import ItemStatusChanged, validate_status  # noqa: PLC0415
    from eventstore.session import FlushStats  # noqa: PLC0415

    with contextlib.ExitStack() as scope:  # a progress bar for --jsonl, gone before the output
        if jsonl is not None:
            if item is not None or status is not None:
                raise click.UsageError("give ITEM STATUS or --jsonl, not both")
            if event_id is not None:
                raise click.UsageError(
                    "--event-id goes with ITEM STATUS; put event_id on each JSONL line")
            result, count = _append_jsonl(obj, scope, jsonl, session, expected_version)
        else:
            if item is None or status is None:
                raise click.UsageError("missing ITEM STATUS (or --jsonl FILE)")
            validate_status(status)
            events = [ItemStatusChanged(item_id=item, status=status, reason=reason)]
            result = obj.store().append(session, events, expected_version=expected_version,
                                        event_ids=[event_id])
            count = 1
    # A duplicate wrote nothing: no items, no write saved, whatever was handed in.
    stats = FlushStats.of(0 if result.duplicate else count, result)
    payload: dict[str, Any] = {
        "session": session,
        "first_seq": result.first_seq,
        "last_seq": result.last_seq,
        "version": result.last_version,
        "duplicate": result.duplicate,
        "items_written": stats.items_written,
        "write_ops_saved": stats.write_ops_saved,
        "efficiency": stats.efficiency,
    }
    if as_json:
        emit_json(payload)
    elif result.duplicate:
        click.echo(f"already appended (seq {result.first_seq}..{result.last_seq}): nothing written")
    elif jsonl is not None:
        click.echo(
            f"appended {stats.items_written} event(s) to {session} in one transaction "
            f"(seq {result.first_seq}..{result.last_seq}, version {result.last_version}); "
            f"write_ops_saved={stats.write_ops_saved} efficiency={stats.efficiency}"
        )
    else:
        click.echo(f"{session} {item} → {status} (seq {result.last_seq}, version "
                   f"{result.last_version})")


def _append_jsonl(
    obj: AppContext, scope: contextlib.ExitStack, jsonl: IO[bytes], session: str,
    expected_version: int | None,
) -> tuple[AppendResult, int]:
    """The lines of `jsonl` (a file, a pipe or someone typing) appended, with a bar."""
    from cli.progress import progress_bar  # noqa: PLC0415
    from eventstore.jsonl import append_jsonl, count_lines  # noqa: PLC0415

    stdin = jsonl is sys.stdin.buffer or getattr(jsonl, "name", "-") == "-"
    name = "<stdin>" if stdin else str(jsonl.name)
    lines: IO[bytes] = jsonl
    if stdin and jsonl.isatty():
        lines = io.BytesIO(jsonl.read())  # before the bar: someone is typing
    total = count_lines(lines)  # None for a pipe: the bar then counts without an end
    store = obj.store()
    bar = scope.enter_context(progress_bar(f"parsing {name}"))
    return append_jsonl(store, session, lines, source=name, expected_version=expected_version,
                        lines_total=total, progress=bar.callback, stage=bar.stage)
