"""`evstore doctor`: check the journal and every session's files; repair with --fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cli.options import json_option, pass_app
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext
    from projections.doctor import Problem, Report


@click.command()
@click.option("--fix", is_flag=True, help="Repair what can be repaired (migrate, append, "
              "re-export, move aside), then check again.")
@json_option("Print the report as JSON (fields below).")
@pass_app
def doctor(obj: AppContext, *, fix: bool, as_json: bool) -> None:
    """Check the journal and every session's files; with --fix, repair them.

    \b
    Checks (code: what --fix does):
      JOURNAL_CORRUPT          not fixable: restore the journal from a backup
      JOURNAL_SCHEMA_OUTDATED  migrate the journal (events kept as they are)
      PROJECTION_STALE         export: the file is behind the journal
      PROJECTION_MISSING       export: the file should exist but does not
      PROJECTION_DRIFT         keep the edited file as <name>.drift-<UTC time>, re-export
      BATCH_PROGRESS_CORRUPT   move the file to lost+found, re-export from the journal
      STALE_BATCH_PROGRESS     append BatchAbandoned ("doctor: stale"): owner dead, >24 h
      ORPHAN_TEMP_FILE         move a temp file of an interrupted export to lost+found
      LEGACY_RECOVERY_FILE     import a tasks.json.failed as events, move it to lost+found

    A fix never destroys information: the journal is only migrated or appended to,
    files are re-exported from it, and anything set aside goes to
    .evstore/lost+found/ (or beside the file, for a drift copy). A legacy
    tasks.json.failed brings only the updates the journal has not superseded since
    it was written. Checking alone writes nothing.

    Exit 0 when healthy (or when everything found was fixed), 1 when problems
    remain, 5 when there is no journal, it is from a newer evstore, or it cannot be read
    (an I/O error that outlasted its retries: no verdict on the file).

    \b
    --json prints one object:
      healthy     true when no problem remains
      fix         whether --fix was given
      journal     the journal's path; schema_version, latest_schema_version
      sessions    the session ids checked
      problems    [{code, message, path?, session?, fixable, fixed, remedy,
                  outcome?, error?}]: remedy is what --fix does when fixable,
                  else what to do yourself; outcome what --fix did; error why
                  the fix failed
      found, fixed, remaining   counts
      skipped     checks not run, and why

    \b
    Example:
      evstore doctor
      evstore doctor --fix --json
    """
    from pathlib import Path  # noqa: PLC0415 - lazy: fast --help

    from cli.progress import progress_bar  # noqa: PLC0415
    from eventstore.locate import find_journal, is_url  # noqa: PLC0415
    from projections.doctor import Doctor  # noqa: PLC0415

    # A PostgreSQL URL is checked through its own integrity check; files the same way.

    target = obj.db if is_url(obj.db) else (Path(obj.db) if obj.db else find_journal(Path.cwd()))
    what = "checking and repairing" if fix else "checking"
    with progress_bar(f"doctor: {what} the journal and its files") as bar:  # gone before the output
        doc = Doctor(target, durability=obj.durability, tool="evstore-cli",  # type: ignore[arg-type]
                     progress=bar.callback)
        report = doc.fix() if fix else doc.check()
    if as_json:
        emit_json(report.as_dict())
    else:
        for problem in report.problems:
            click.echo(f"{problem.code}  {problem.message}  ({_state(problem)})")
        for note in report.skipped:
            click.echo(f"skipped: {note}")
        click.echo(_summary(report))
    if not report.healthy:
        click.get_current_context().exit(1)


def _state(problem: Problem) -> str:
    if problem.fixed:
        return f"fixed: {problem.outcome}" if problem.outcome else "fixed"
    if problem.error is not None:
        return f"not fixed: {problem.error}"
    if problem.fixable:
        return f"fixable with --fix: {problem.remedy}"
    return f"not fixable: {problem.remedy}"


def _summary(report: Report) -> str:
    where = f"journal {report.show(report.journal)}"
    if report.schema_version is not None:
        where += f", schema {report.schema_version}"
    if report.sessions or not report.skipped:  # sessions are not listed when not checked
        where += f", {len(report.sessions)} session{'s' if len(report.sessions) != 1 else ''}"
    found = len(report.problems)
    if not found:
        return f"healthy: no problems ({where})"
    plural = "s" if found != 1 else ""
    if report.fix:
        fixed = sum(p.fixed for p in report.problems)
        if report.healthy:
            return f"{found} problem{plural} found, all fixed: healthy ({where})"
        left = len(report.remaining)
        return f"{found} problem{plural} found, {fixed} fixed, {left} remain ({where})"
    fixable = sum(p.fixable for p in report.problems)
    return (f"{found} problem{plural} found: {fixable} fixable with --fix, "
            f"{found - fixable} not fixable ({where})")
