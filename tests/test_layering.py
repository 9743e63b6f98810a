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
