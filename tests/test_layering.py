"""The layers point down only: cli → projections → eventstore."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import imports_of

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


def test_schema_sql_is_the_only_ddl() -> None:
    """No CREATE TABLE/TRIGGER/INDEX outside schema.sql."""
    found = [
        str(path.relative_to(ROOT))
        for package in ("eventstore", "projections", "cli")
        for path in (ROOT / package).glob("*.py")
        if any(word in path.read_text() for word in ("CREATE TABLE", "CREATE TRIGGER", "CREATE INDEX"))
    ]
    assert found == []
