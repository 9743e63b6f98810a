"""Issue 11, item 18 on PostgreSQL: `append --jsonl` goes through the same staged path
(parse, validate and stage line by line), then PostgreSQL's own append."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import orjson
from support import INITIAL, SESSION, evstore_bin, seed

from eventstore import Store
from projections import DEFAULT

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["pgserver"]  # pg_url: a fresh database on a throwaway server (or a skip)


def test_a_jsonl_append_to_postgresql_is_staged_then_written_whole(
    pg_url: str, project_dir: Path
) -> None:
    with Store.open(pg_url, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
    lines = project_dir / "u.jsonl"
    lines.write_bytes(b"".join(
        orjson.dumps({"item_id": "P1.M1.T1.S1", "status": status, "event_id": f"e{n}"}) + b"\n"
        for n, status in enumerate(["Researching", "Implementing", "Complete"] * 400)
    ))
    env = {**os.environ, "EVSTORE_DB": pg_url}
    argv = [evstore_bin(), "append", "--session", SESSION, "--jsonl", str(lines)]
    first = subprocess.run(argv, cwd=project_dir, env=env, capture_output=True, text=True,
                           check=False)
    assert first.returncode == 0, first.stderr
    assert "appended 1200 event(s)" in first.stdout
    again = subprocess.run(argv, cwd=project_dir, env=env, capture_output=True, text=True,
                           check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already appended (seq 3..1202)")
    with Store.open(pg_url, projections=DEFAULT) as store:
        assert store.journal.head() == 1202
        assert store.state(SESSION, "tasks").item("P1.M1.T1.S1")["status"] == "Complete"
        assert [e.event_id for e in store.read(SESSION, after=2, limit=2)] == ["e0", "e1"]
