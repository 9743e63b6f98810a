"""Constants and helpers shared by the tests (importable: pytest puts tests/ on the path)."""

from __future__ import annotations

import ast
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from eventstore import Store
from eventstore.atomic import write_atomic
from eventstore.events import SessionCreated
from eventstore.sqlite import SQLiteJournal
from eventstore.retry import RetryPolicy
from projections import DEFAULT
from projections.imports import import_event, parse_backlog

FIXTURES = Path(__file__).parent / "fixtures"
HACKY = FIXTURES / "hacky-hack"
TASKS_FILES = sorted(HACKY.glob("*.tasks.*.json"))
INITIAL = HACKY / "001_14b9dc2a33c7.tasks.49991f1.initial.json"
MIXED = HACKY / "003_b3d3efdaf0ed.tasks.c7994eb.mixed-failed-ready.json"  # JSON.stringify-exact
SESSION = "001_14b9dc2a33c7"


def evstore_bin() -> str:
    """The installed console script beside this interpreter (what users run)."""
    candidate = Path(sys.executable).parent / "evstore"
    found = str(candidate) if candidate.exists() else shutil.which("evstore")
    assert found, "the evstore console script is not installed (pip install -e .)"
    return found


def seed(store: Store, session: str, source: Path, export_dir: str) -> None:
    parsed = parse_backlog(source.read_bytes(), source=str(source))
    store.append(
        session,
        [SessionCreated(export_dir=export_dir), import_event(parsed, source=str(source))],
        expected_version=0,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` (journal, WAL, exports) as bytes, for no-partial-write checks."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".evstore.lock"
    }


def tasks_of(results: list[object]) -> object:
    """The tasks.json result among a project/replay run's results (one per projection)."""
    (found,) = [r for r in results if getattr(r, "projection", None) == "tasks"]
    return found


def failing_store(root: Path, failures: list[int]) -> Store:
    """A Store on root's journal whose file writes fail with these errnos first (the one
    injection seam), retrying without sleeping."""

    def write(path: Path, data: bytes) -> None:
        if failures:
            code = failures.pop(0)
            raise OSError(code, os.strerror(code), str(path))
        write_atomic(path, data)

    journal = SQLiteJournal(root / ".evstore" / "journal.db")
    return Store(journal, projections=DEFAULT, policy=RetryPolicy(retries=3, sleep=lambda _: None),
                 write_file=write)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in a source file, lazy ones inside functions too."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module


def names_imported(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, module, name) of every `from module import name` in a source file, lazy
    ones inside functions too (relative imports are not used here, so none are skipped)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield from ((node.lineno, node.module, alias.name) for alias in node.names)
