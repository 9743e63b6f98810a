"""Reads the migrations of one backend out of schema.sql, the only place DDL lives."""

from __future__ import annotations

import re
import sqlite3
from functools import cache
from importlib import resources
from pathlib import Path

_BACKEND = re.compile(r"^--\s*backend:\s*(\w+)\s*$")
_MIGRATION = re.compile(r"^--\s*migration:\s*(\d+)\s*$")


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
    blocks: dict[int, list[str]] = {}
    current_backend: str | None = None
    current: int | None = None
    buffer = ""
    for line in schema_text().splitlines():
        if match := _BACKEND.match(line):
            current_backend, current = match.group(1), None
            continue
        if match := _MIGRATION.match(line):
            current = int(match.group(1))
            if current_backend == backend:
                blocks.setdefault(current, [])
            continue
        if current_backend != backend or current is None or line.lstrip().startswith("--"):
            continue
        buffer += line + "\n"
        if sqlite3.complete_statement(buffer):
            blocks[current].append(buffer.strip())
            buffer = ""
    versions = sorted(blocks)
    if versions != list(range(1, len(versions) + 1)):
        msg = f"schema.sql: {backend} migrations must be numbered 1..N, found {versions}"
        raise RuntimeError(msg)
    return tuple((version, tuple(blocks[version])) for version in versions)


def latest_version(backend: str) -> int:
    return len(migrations(backend))
