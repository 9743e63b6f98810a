"""The layers point down only: cli → projections → eventstore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import imports_of, names_imported

ROOT = Path(__file__).parent.parent


def test_importing_eventstore_loads_neither_projections_nor_cli() -> None:
    """`import eventstore` (and its whole public API) must not pull the upper layers in."""
    code = (
        "import sys, eventstore\n"
        "from eventstore import Store, Journal, Event, RetryPolicy, ExportError\n"
        "import eventstore.runner, eventstore.store\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('projections', 'cli'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(("package", "forbidden"), [("eventstore", {"projections", "cli"}), ("projections", {"cli"})])
def test_no_module_imports_an_upper_layer(package: str, forbidden: set[str]) -> None:
    """Static check over every module, including imports done lazily inside functions."""
    offenders = [
        f"{path.name}: {module}"
        for path in (ROOT / package).glob("*.py")
        for _, module in imports_of(path)
        if module.split(".")[0] in forbidden
    ]
    assert offenders == []


def _cli_imports() -> dict[str, set[str]]:
    """Each cli module and the cli modules it imports (statically, lazy imports included;
    `from cli import write` imports cli.write)."""
    modules = {f"cli.{path.stem}": path for path in (ROOT / "cli").glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = {module for _, module in imports_of(path)}
        found |= {f"{module}.{item}" for _, module, item in names_imported(path)}
        graph[name] = {module for module in found if module in modules and module != name}
    return graph


def test_no_import_cycle_among_cli_modules() -> None:
    """The group imports the command modules; none of them imports it (or each other) back."""
    graph = _cli_imports()
    assert graph["cli.app"] >= {"cli.write", "cli.ops", "cli.maintain"}  # the graph sees them
    cycles = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(" → ".join([*path[path.index(module):], module]))
            return
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


def test_no_cli_module_imports_a_private_name_of_another() -> None:
    """What command modules share is public (cli/options.py), never another's `_helper`."""
    offenders = [
        f"{path.name}:{line}: from {module} import {name}"
        for path in (ROOT / "cli").glob("*.py")
        for line, module, name in names_imported(path)
        if module.split(".")[0] == "cli" and name.startswith("_")
    ]
    assert offenders == []


def test_schema_sql_is_the_only_ddl() -> None:
    """No CREATE TABLE/TRIGGER/INDEX outside schema.sql."""
    found = [
        str(path.relative_to(ROOT))
        for package in ("eventstore", "projections", "cli")
        for path in (ROOT / package).glob("*.py")
        if any(word in path.read_text() for word in ("CREATE TABLE", "CREATE TRIGGER", "CREATE INDEX"))
    ]
    assert found == []


# --- the journal interface and its backends (docs/design.md §3) ---------------------------

SQLITE_BACKEND = {"eventstore.sqlite", "eventstore.sqlite_file", "eventstore.sqlite_detach"}
POSTGRES_BACKEND = {"eventstore.postgres"}
# The registry that picks a backend for a location, and the package's lazy export table.
KNOWS_BACKENDS = {"eventstore.backends", "eventstore"}
# The classifier maps exceptions of both drivers to errno-like classes.
DRIVER_MAY_BE_NAMED = {"eventstore.classify"}
LIBRARY = ("eventstore", "projections", "cli")


def _modules() -> dict[str, Path]:
    found = {}
    for package in LIBRARY:
        for path in (ROOT / package).glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def test_no_backend_imports_the_other() -> None:
    offenders = [
        f"{name} imports {module}"
        for backend, other in ((SQLITE_BACKEND, POSTGRES_BACKEND), (POSTGRES_BACKEND, SQLITE_BACKEND))
        for name in backend
        for _, module in imports_of(_modules()[name])
        if module in other
    ]
    assert offenders == []


@pytest.mark.parametrize(("driver", "owners"), [
    ("sqlite3", SQLITE_BACKEND | DRIVER_MAY_BE_NAMED),
    ("psycopg", POSTGRES_BACKEND | DRIVER_MAY_BE_NAMED),
])
def test_a_database_driver_is_imported_only_by_its_backend(driver: str, owners: set[str]) -> None:
    offenders = [
        f"{name}:{line} imports {module}"
        for name, path in _modules().items()
        if name not in owners
        for line, module in imports_of(path)
        if module.split(".")[0] == driver
    ]
    assert offenders == []


def test_only_the_backends_and_their_registry_import_a_backend_module() -> None:
    backends = SQLITE_BACKEND | POSTGRES_BACKEND
    offenders = [
        f"{name}:{line} imports {module}"
        for name, path in _modules().items()
        if name not in backends | KNOWS_BACKENDS
        for line, module in imports_of(path)
        if module in backends
    ]
    assert offenders == []


def test_no_module_outside_the_backends_names_a_backend_class() -> None:
    """Everything else is written against `Journal`: naming SQLiteJournal or
    PostgresJournal (an isinstance check, a cast, a type) would make it backend-shaped."""
    offenders = [
        f"{name}: {word}"
        for name, path in _modules().items()
        if name not in SQLITE_BACKEND | POSTGRES_BACKEND | KNOWS_BACKENDS
        for word in ("SQLiteJournal", "PostgresJournal", "PgLocation")
        if word in path.read_text()
    ]
    assert offenders == []


def test_the_package_journal_is_the_interface_both_backends_implement() -> None:
    code = (
        "import eventstore, eventstore.persistence as p, eventstore.sqlite as s\n"
        "import eventstore.postgres as g\n"
        "assert eventstore.Journal is p.Journal\n"
        "assert issubclass(s.SQLiteJournal, p.Journal) and issubclass(g.PostgresJournal, p.Journal)\n"
        "assert not hasattr(g, 'PgLocation')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_the_sqlite_statement_splitter_agrees_with_sqlite_itself() -> None:
    """schema.py splits SQLite's migrations without the driver; sqlite3.complete_statement
    is the authority it must agree with, statement by statement."""
    import sqlite3  # noqa: PLC0415 - the authority, in the test only

    from eventstore import schema  # noqa: PLC0415

    for _, statements in schema.migrations("sqlite"):
        for statement in statements:
            assert sqlite3.complete_statement(statement), statement
            # No shorter prefix ending at a line end is already complete (else it split late).
            lines = statement.splitlines()
            for cut in range(1, len(lines)):
                prefix = "\n".join(line for line in lines[:cut] if not line.lstrip().startswith("--"))
                assert not sqlite3.complete_statement(prefix + "\n"), (statement, cut)


MAX_LINES = 600
# Over the limit until their own split lands; nothing else may join this list.
TOO_LONG_FOR_NOW = {
    # The two backends: each one class implementing the whole Journal contract.
    "eventstore/sqlite.py",
    "eventstore/postgres.py",
    # Still to be split.
    "eventstore/runner.py",
    "eventstore/store.py",
}


def test_no_module_is_longer_than_600_lines() -> None:
    """Small modules, one job each: a module past 600 lines holds more than one."""
    long_modules = {
        f"{package}/{path.name}": len(path.read_text().splitlines())
        for package in ("eventstore", "projections", "cli")
        for path in (ROOT / package).glob("*.py")
        if len(path.read_text().splitlines()) > MAX_LINES
    }
    assert {name for name in long_modules if name not in TOO_LONG_FOR_NOW} == set(), long_modules
    assert TOO_LONG_FOR_NOW <= set(long_modules), "split: take it off TOO_LONG_FOR_NOW"


def test_only_the_backends_import_what_they_write() -> None:
    """eventstore.writes is the backends' shared write path: the rest goes through
    Journal, or two ways of writing would drift apart."""
    offenders = [
        f"{name}:{line}"
        for name, path in _modules().items()
        if name not in SQLITE_BACKEND | POSTGRES_BACKEND
        for line, module in imports_of(path)
        if module == "eventstore.writes"
    ]
    assert offenders == []
