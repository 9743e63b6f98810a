"""Item 12: `evstore import` into a live session decides its events inside the write
transaction, so appends committed meanwhile never make it fail (exit 3) or starve it.

Real processes: a writer appending status changes as fast as it can, and `evstore
import` run again and again beside it, each import changing the backlog."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import SESSION

pytest_plugins = ["pgserver"]  # the pg_url fixture: a fresh database on a real server

Run = Callable[..., subprocess.CompletedProcess[str]]

WRITER = """
import sys, time
from pathlib import Path
from eventstore import Store
from eventstore.events import ItemStatusChanged
from projections import DEFAULT
db, session, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with Store.open(db, projections=DEFAULT) as store:
    n = 0
    while not stop.exists():
        status = ("Implementing", "Complete")[n % 2]
        store.append(session, [ItemStatusChanged(item_id="P1.M1.T1.S1", status=status)])
        n += 1
        if n == 1:
            Path(sys.argv[3] + ".started").touch()
    print(n)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, project_dir: Path) -> str:
    if request.param == "sqlite":
        return str(project_dir / ".evstore" / "journal.db")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def busy_writer(project_dir: Path, run: Run, db: str) -> Iterator[Path]:
    """The session imported, and a process appending to it until the test ends."""
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION]):
        assert run("--db", db, *args, cwd=project_dir).returncode == 0
    stop = project_dir / "stop"
    writer = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", WRITER, db, SESSION, str(stop)], stdout=subprocess.PIPE, text=True,
    )
    started = Path(f"{stop}.started")
    deadline = time.monotonic() + 30
    while not started.exists() and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), "the writer did not start"
    try:
        yield project_dir
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=60)
        assert writer.returncode == 0
        assert int(out) > 0


def test_imports_beside_a_busy_writer_all_succeed(busy_writer: Path, run: Run, db: str) -> None:
    root = busy_writer
    doc = json.loads((root / "plan" / SESSION / "tasks.json").read_text())
    versions = []
    for attempt in range(8):
        doc["backlog"][-1]["title"] = f"renamed {attempt}"  # each import has a change to make
        (root / "update.json").write_text(json.dumps(doc, indent=2))
        result = run("--db", db, "import", "update.json", "-s", SESSION, "--json", cwd=root)
        assert result.returncode == 0, f"import {attempt}: {result.stderr}"
        outcome = json.loads(result.stdout)
        assert outcome["events"] >= 1
        versions.append(outcome["version"])
    assert versions == sorted(versions)
    shown = run("--db", db, "log", "-s", SESSION, "--json", cwd=root)
    titles = [json.loads(line)["data"].get("changes", {}).get("title")
              for line in shown.stdout.splitlines() if '"ItemUpdated"' in line]
    assert [t for t in titles if t] == [f"renamed {n}" for n in range(8)]
