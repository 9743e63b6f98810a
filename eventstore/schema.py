"""Reads the migrations of one backend out of schema.sql, the only place DDL lives."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

_BACKEND = re.compile(r"^--\s*backend:\s*(\w+)\s*$")
_MIGRATION = re.compile(r"^--\s*migration:\s*(\d+)\s*$")
# PostgreSQL lexemes that may hide a `;`: comments, quoted strings and identifiers, and
# dollar-quoted bodies ($$ ... $$ or $tag$ ... $tag$) of functions.
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")
# SQLite's one compound statement: a trigger's body holds `;`, and only `END;` ends it.
_TRIGGER = re.compile(r"^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TRIGGER\b", re.IGNORECASE)
_TRIGGER_END = re.compile(r"\bEND\s*;\s*$", re.IGNORECASE)


def schema_text() -> str:
    # An installed wheel carries schema.sql inside the package; a source checkout keeps
    # it at the repository root, one level above this package.
    packaged = resources.files("eventstore").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


@cache
def migrations(backend: str) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """`((version, statements), ...)` in order for `backend`; versions run 1, 2, 3..."""
    texts: dict[int, list[str]] = {}
    current_backend: str | None = None
    current: int | None = None
    for line in schema_text().splitlines():
        if match := _BACKEND.match(line):
            current_backend, current = match.group(1), None
            continue
        if match := _MIGRATION.match(line):
            current = int(match.group(1))
            if current_backend == backend:
                if current in texts:
                    msg = f"schema.sql: {backend} migration {current} appears twice"
                    raise RuntimeError(msg)
                texts[current] = []
            continue
        if current_backend == backend and current is not None:
            texts[current].append(line)
    split = split_postgres if backend == "postgresql" else split_sqlite
    blocks = {version: split("\n".join(lines)) for version, lines in texts.items()}
    versions = sorted(blocks)
    if versions != list(range(1, len(versions) + 1)):
        msg = f"schema.sql: {backend} migrations must be numbered 1..N, found {versions}"
        raise RuntimeError(msg)
    return tuple((version, tuple(blocks[version])) for version in versions)


def latest_version(backend: str) -> int:
    return len(migrations(backend))


def split_sqlite(text: str) -> list[str]:
    """Statements of an SQLite block, as SQLite itself delimits them (triggers' bodies
    hold `;`); whole-line `--` comments are dropped. A statement ends with a line ending
    in `;`, a trigger with `END;`: what sqlite3.complete_statement says of schema.sql
    (tests/test_layering.py compares them), without this module needing the driver."""
    statements: list[str] = []
    buffer = ""
    for line in text.splitlines():
        if line.lstrip().startswith("--"):
            continue
        buffer += line + "\n"
        if _complete(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        msg = f"schema.sql: unterminated SQLite statement: {buffer.strip()[:60]!r}"
        raise RuntimeError(msg)
    return statements


def _complete(buffer: str) -> bool:
    text = buffer.rstrip()
    if not text.endswith(";"):
        return False
    return not _TRIGGER.match(text) or bool(_TRIGGER_END.search(text))


def split_postgres(text: str) -> list[str]:  # noqa: C901, PLR0912, PLR0915 - one small lexer
    """Statements of a PostgreSQL block: split on `;` outside comments, quotes and
    dollar-quoted bodies (`$$ ... $$`, `$tag$ ... $tag$`). Comments outside statements'
    text are dropped; a function's body is kept exactly as written."""
    statements: list[str] = []
    out: list[str] = []  # the current statement, comments outside bodies removed
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):  # a line comment: dropped
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):  # a block comment (they nest in PostgreSQL): dropped
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            if depth:
                raise RuntimeError("schema.sql: unterminated /* comment in a PostgreSQL block")
            out.append(" ")
            continue
        if ch in "'\"":  # a string or quoted identifier ('' and "" escape the quote)
            j = i + 1
            while True:
                j = text.find(ch, j)
                if j < 0:
                    raise RuntimeError(f"schema.sql: unterminated {ch} quote in a PostgreSQL block")
                if text.startswith(ch * 2, j):
                    j += 2
                    continue
                break
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if ch == "$" and (tag := _DOLLAR_TAG.match(text, i)) and not _in_word(out):
            end = text.find(tag.group(0), tag.end())
            if end < 0:
                msg = f"schema.sql: unterminated {tag.group(0)} body in a PostgreSQL block"
                raise RuntimeError(msg)
            end += len(tag.group(0))
            out.append(text[i:end])
            i = end
            continue
        if ch == ";":
            statement = "".join(out).strip()
            if statement:
                statements.append(statement)
            out = []
            i += 1
            continue
        out.append(ch)
        i += 1
    if "".join(out).strip():
        msg = f"schema.sql: PostgreSQL statement without a final ';': {''.join(out).strip()[:60]!r}"
        raise RuntimeError(msg)
    return statements


def _in_word(out: list[str]) -> bool:
    # `$1` parameters and identifiers like a$b are not dollar quotes; only a `$` that
    # does not continue a word can open one.
    return bool(out) and bool(out[-1]) and (out[-1][-1].isalnum() or out[-1][-1] == "_")
