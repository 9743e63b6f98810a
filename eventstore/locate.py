"""Where the journal is: `--db`, `EVSTORE_DB`, or `.evstore/` found as git finds `.git/`.

`--db` (or `EVSTORE_DB`) may also be a PostgreSQL URL (`postgresql://` or `postgres://`,
or libpq's `key=value` form):
the journal then lives on a server, and the project root (where relative export dirs
resolve) is found from the working directory instead of from the journal's path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from eventstore.errors import JournalNotFoundError

STATE_DIR = ".evstore"
JOURNAL_NAME = "journal.db"
URL_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^(?:postgresql|postgres)://", re.IGNORECASE)
_PASSWORD_PARAM = re.compile(r"(?i)((?:^|[?&])password=)[^&]*")
# libpq's `key=value` connection strings ("host=db user=u password=s dbname=j"): told
# from a file name by a leading libpq keyword and `=`.
_CONNINFO = re.compile(
    r"^\s*(?:host|hostaddr|port|dbname|user|password|passfile|service|sslmode|"
    r"connect_timeout|application_name|options|target_session_attrs)\s*=",
    re.IGNORECASE,
)
_CONNINFO_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


def is_url(db: str | os.PathLike[str] | None) -> bool:
    """Whether `db` names a PostgreSQL journal (a URL, or a libpq `key=value` string)
    rather than an SQLite file."""
    return isinstance(db, str) and bool(_URL.match(db) or _CONNINFO.match(db))


def redact_url(url: str) -> str:
    """`url` with its password hidden (`postgresql://user:***@host/db`), also one given
    as a `password=` query parameter: what errors and logs may show. Nothing else of
    the URL changes."""
    if _CONNINFO.match(url):
        return _CONNINFO_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in authority:
        userinfo, _, hosts = authority.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        authority = f"{userinfo}@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query = _PASSWORD_PARAM.sub(r"\1***", query)
    return f"{scheme}{sep}{authority}{path}{qmark}{query}"


def journal_from_env() -> str | None:
    """`EVSTORE_DB` as given (a path or a URL), or None when unset or empty."""
    return os.environ.get("EVSTORE_DB") or None


def find_journal(start: Path) -> Path:
    """`EVSTORE_DB` if set, else `.evstore/journal.db` in `start` or its nearest ancestor."""
    env = journal_from_env()
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


def enclosing_journal(directory: Path) -> Path | None:
    """The journal of the project `directory` lies inside (a `.evstore/` in a parent,
    not in `directory` itself), or None: where a new journal would shadow another."""
    here = directory.resolve()
    for parent in here.parents:
        if (parent / STATE_DIR).is_dir():
            return parent / STATE_DIR / JOURNAL_NAME
    return None


def default_journal(directory: Path) -> Path:
    return directory / STATE_DIR / JOURNAL_NAME


def project_root(journal: Path) -> Path:
    """The directory relative export dirs resolve against: the one holding `.evstore/`,
    or the journal's own directory when it lives elsewhere."""
    journal = journal.resolve()
    if journal.parent.name == STATE_DIR:
        return journal.parent.parent
    return journal.parent


def find_project_root(start: Path) -> Path:
    """The project root of a journal that is not a file (PostgreSQL): the nearest
    directory at or above `start` that holds `.evstore/` (as git finds `.git/`), else
    `start` itself. Every host running a pipeline resolves relative export dirs against
    its own checkout this way."""
    here = start.resolve()
    for directory in (here, *here.parents):
        if (directory / STATE_DIR).is_dir():
            return directory
    return here
