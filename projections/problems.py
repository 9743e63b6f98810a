"""What `evstore doctor` reports: its codes, each problem found, and the report of a check or
a fix (docs/design.md §10).

A `Problem` is data: the checks make them, the repairs fill in `outcome` or `error`, and
the CLI prints them (`as_dict` is the `--json` form).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

JOURNAL_CORRUPT = "JOURNAL_CORRUPT"
JOURNAL_SCHEMA_OUTDATED = "JOURNAL_SCHEMA_OUTDATED"
PROJECTION_STALE = "PROJECTION_STALE"
PROJECTION_MISSING = "PROJECTION_MISSING"
PROJECTION_DRIFT = "PROJECTION_DRIFT"
BATCH_PROGRESS_CORRUPT = "BATCH_PROGRESS_CORRUPT"
STALE_BATCH_PROGRESS = "STALE_BATCH_PROGRESS"
ORPHAN_TEMP_FILE = "ORPHAN_TEMP_FILE"
LEGACY_RECOVERY_FILE = "LEGACY_RECOVERY_FILE"
BACKLOG_DEPENDENCY = "BACKLOG_DEPENDENCY"
JOURNAL_CHAIN_BROKEN = "JOURNAL_CHAIN_BROKEN"
EXPORT_DIR_SHARED = "EXPORT_DIR_SHARED"
BACKLOG_INVALID = "BACKLOG_INVALID"
CODES = (
    JOURNAL_CORRUPT, JOURNAL_SCHEMA_OUTDATED, PROJECTION_STALE, PROJECTION_MISSING,
    PROJECTION_DRIFT, BATCH_PROGRESS_CORRUPT, STALE_BATCH_PROGRESS, ORPHAN_TEMP_FILE,
    LEGACY_RECOVERY_FILE, BACKLOG_DEPENDENCY, JOURNAL_CHAIN_BROKEN, EXPORT_DIR_SHARED,
    BACKLOG_INVALID,
)
# The remedy of JOURNAL_CHAIN_BROKEN, whether the chain or a checkpoint shows the loss.
LOST_EVENTS = ("stop every evstore process, set this journal aside and restore the one "
               "holding the lost events (a backup, or the -wal file that was removed); the "
               "files exported from them are kept as .drift- copies that `evstore import` "
               "can bring back")


@dataclass
class Problem:
    """One finding. `remedy` is what `fix()` does when `fixable`, else what to do by hand;
    after `fix()`, `outcome` says what was done and `error` why it could not be."""

    code: str
    message: str
    fixable: bool
    remedy: str
    path: Path | None = None
    session: str | None = None
    fixed: bool = False
    outcome: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return self.code, self.session, str(self.path) if self.path is not None else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path is not None:
            out["path"] = str(self.path)
        if self.session is not None:
            out["session"] = self.session
        out |= {"fixable": self.fixable, "fixed": self.fixed, "remedy": self.remedy}
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class Report:
    """What `check()` found, or what `fix()` found, did and left. `remaining` is what a
    check after the repairs still finds (for `check()`, every problem)."""

    journal: Path
    root: Path
    fix: bool
    schema_version: int | None
    latest_schema_version: int
    sessions: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    remaining: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.remaining

    def as_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "fix": self.fix,
            "journal": str(self.journal),
            "schema_version": self.schema_version,
            "latest_schema_version": self.latest_schema_version,
            "sessions": list(self.sessions),
            "problems": [p.as_dict() for p in self.problems],
            "found": len(self.problems),
            "fixed": sum(p.fixed for p in self.problems),
            "remaining": len(self.remaining),
            "skipped": list(self.skipped),
        }

    def show(self, path: Path) -> str:
        """`path` relative to the project root when inside it (for people)."""
        return shown(path, self.root)


def shown(path: Path, root: Path) -> str:
    """`path` relative to the project `root` when inside it: what people read."""
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def grouped(problems: list[Problem], key: Callable[[Problem], Any]) -> dict[Any, list[Problem]]:
    groups: dict[Any, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(key(problem), []).append(problem)
    return groups
