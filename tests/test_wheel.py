"""The built wheel is what users install: it must carry schema.sql and work on its own."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (found,) = out.glob("evstore-*.whl")
    return found


def test_wheel_carries_the_three_packages_and_schema_sql(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "eventstore/schema.sql" in names
    assert {"eventstore/py.typed", "projections/py.typed", "cli/py.typed"} <= set(names)
    assert {n.split("/")[0] for n in names if n.endswith(".py")} == {"eventstore", "projections", "cli"}
    assert zipfile.ZipFile(wheel).read("eventstore/schema.sql") == (ROOT / "schema.sql").read_bytes()
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "evstore = cli.entry:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_unpacked_wheel_creates_a_journal_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    """Run from the unpacked wheel only (the checkout is not on the path): the packaged
    schema.sql is what creates the tables."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path = [p for p in sys.path if p not in (%r, '')]; sys.path.insert(0, %r)\n"
        "import eventstore.schema as s, eventstore.sqlite as j\n"
        "assert s.__file__.startswith(%r), s.__file__\n"
        "journal = j.SQLiteJournal(%r, create=True)\n"
        "print(journal.schema_version)\n"
    ) % (str(ROOT), str(site), str(site), str(tmp_path / "j.db"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "6"


def test_the_unpacked_wheel_renders_a_report(wheel: Path, tmp_path: Path) -> None:
    """The report's template and chart library travel in the wheel, not only the checkout."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import sys; sys.path = [p for p in sys.path if p not in (%r, '')]; sys.path.insert(0, %r)\n"
        "import cli.report_html as r\n"
        "assert r.__file__.startswith(%r), r.__file__\n"
        "page = r.render_report({'title': 't', 'version': '', 'journal': 'j', 'head': 0, 'until': None,\n"
        "    'generated_at': '', 'sessions': [], 'errors': {'total': 0}})\n"
        "print(len(page), b'uPlot' in page)\n"
    ) % (str(ROOT), str(site), str(site))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr
    size, has_chart_library = out.stdout.split()
    assert int(size) > 50_000
    assert has_chart_library == "True"
