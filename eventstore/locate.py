"""Where the journal is: `--db`, `EVSTORE_DB`, or `.evstore/` found as git finds `.git/`."""

from __future__ import annotations

import os
from pathlib import Path

from eventstore.errors import JournalNotFoundError

STATE_DIR = ".evstore"
JOURNAL_NAME = "journal.db"


def find_journal(start: Path) -> Path:
    """`EVSTORE_DB` if set, else `.evstore/journal.db` in `start` or its nearest ancestor."""
    env = os.environ.get("EVSTORE_DB")
    if env:
        return Path(env)
    here = start.resolve()
    for directory in (here, *here.parents):
        if (directory / STATE_DIR).is_dir():
            return directory / STATE_DIR / JOURNAL_NAME
    raise JournalNotFoundError(
        f"no {STATE_DIR}/ in {here} or any parent: run `evstore init` in the project root, "
        "or pass --db"
    )


def default_journal(directory: Path) -> Path:
    return directory / STATE_DIR / JOURNAL_NAME


def project_root(journal: Path) -> Path:
    """The directory relative export dirs resolve against: the one holding `.evstore/`,
    or the journal's own directory when it lives elsewhere."""
    journal = journal.resolve()
    if journal.parent.name == STATE_DIR:
        return journal.parent.parent
    return journal.parent
