"""Where evstore may write: guards against one file or directory serving two owners.

Two rules (docs/design.md §5, §6), both comparing paths once `..` and symlinks are resolved,
since two spellings of one file are one file:

- A file evstore writes that is not a projection it owns (`report -o`, `replay --out`, a
  drift copy, a file moved to lost+found) never replaces the journal, its `-wal`/`-shm`, or
  a file some session projects to.
- An export directory belongs to one session. Two sessions collide when their export
  directories are the same directory: every projection's file name would be written by
  both. A directory inside another session's one holds different files and is allowed.
  Sessions of another journal count too when that journal's project encloses the
  directory (a project nested in another's export dir, or the other way round).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from eventstore.backends import export_dirs_in_file
from eventstore.errors import InvalidInputError
from eventstore.locate import JOURNAL_NAME, STATE_DIR

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from eventstore.store import Store

JOURNAL_SIDE_FILES = {
    "": "the journal",
    "-wal": "the journal's write-ahead log",
    "-shm": "the journal's shared-memory index",
    "-journal": "the journal's rollback journal",
}


def resolved(path: Path) -> Path:
    """`path` with symlinks and `..` resolved, even when (part of) it does not exist yet."""
    return path.expanduser().resolve(strict=False)


def journal_files(store: Store) -> list[Path]:
    """The journal file and the files SQLite keeps beside it (none for a server journal)."""
    if store.journal.file is None:
        return []
    base = resolved(store.journal.file)
    return [base.with_name(base.name + suffix) for suffix in JOURNAL_SIDE_FILES]


def protected_files(store: Store) -> dict[Path, str]:
    """Every file no side output may replace, resolved, with what it is (for messages)."""
    owners = dict(zip(journal_files(store), JOURNAL_SIDE_FILES.values(), strict=False))
    for session, export_dir in store.export_dirs().items():
        directory = resolved(export_dir)
        for projection in store.projections:
            owners[directory / projection.file_name] = (
                f"{projection.file_name}, projected by session {session}"
            )
    return owners


def refuse_protected(
    store: Store, targets: Iterable[Path], *, what: str, protected: Mapping[Path, str] | None = None
) -> None:
    """InvalidInputError (exit 2) naming the first of `targets` that is protected."""
    owners = protected_files(store) if protected is None else protected
    for target in targets:
        owner = owners.get(resolved(target))
        if owner is not None:
            raise InvalidInputError(
                f"{what}: {target} is {owner}, which evstore never overwrites: choose another path"
            )


def export_dir_owner(store: Store, export_dir: Path, *, claimant: str) -> str | None:
    """The session other than `claimant` whose export directory is `export_dir`, if any."""
    wanted = resolved(export_dir)
    for session, directory in store.export_dirs().items():
        if session != claimant and resolved(directory) == wanted:
            return session
    return None


def foreign_owner(store: Store, export_dir: Path) -> tuple[Path, str] | None:
    """(journal, session) of another SQLite journal whose project encloses `export_dir`
    (found as `.evstore/journal.db` in it or a parent) and whose session exports there."""
    own = resolved(store.journal.file) if store.journal.file is not None else None
    wanted = resolved(export_dir)
    for directory in (wanted, *wanted.parents):
        journal = directory / STATE_DIR / JOURNAL_NAME
        if not journal.is_file() or resolved(journal) == own:
            continue
        for session, recorded in export_dirs_in_file(journal).items():
            path = Path(recorded)
            if resolved(path if path.is_absolute() else directory / path) == wanted:
                return journal, session
    return None


def shared_export_dirs(store: Store) -> dict[Path, list[str]]:
    """Resolved export directories claimed by more than one session, with the sessions."""
    by_dir: dict[Path, list[str]] = {}
    for session, directory in store.export_dirs().items():
        by_dir.setdefault(resolved(directory), []).append(session)
    return {directory: names for directory, names in by_dir.items() if len(names) > 1}
