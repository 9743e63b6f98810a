"""Item 9's property: whatever evstore accepts (a real file breaking the schema in any
way, then any events `append --jsonl` lets through), re-importing the tasks.json it
exports always works, changes nothing, and seeds an identical new session.

In-process CLI (CliRunner) on real journals and directories: hypothesis runs many cases."""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import INITIAL, SESSION

from cli.app import app
from eventstore.events import STATUSES

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
BASE = json.loads(INITIAL.read_text())
SCOPE = "CONTRACT DEFINITION:\n1. RESEARCH NOTE: r\n2. INPUT: i\n3. LOGIC: l\n4. OUTPUT: o"
FIELDS = ["type", "id", "title", "status", "description", "story_points", "dependencies",
          "context_scope", "milestones", "tasks", "subtasks", "extra"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 30), st.sampled_from([0.5, 1e20]),
                    st.text(max_size=8), st.sampled_from([*STATUSES, "TotallyBogus", SCOPE]))
values = st.one_of(scalars, st.lists(scalars, max_size=2))
# (item position in the walk, field, new value or None to delete it)
mutations = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(FIELDS[2:8] + ["extra"]),
                               st.one_of(st.none(), values)), max_size=6)


def walk(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = list(reversed(doc["backlog"]))
    while stack:
        item = stack.pop()
        found.append(item)
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(reversed(item.get(key, [])))
    return found


def mutated(changes: list[tuple[int, str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    items = walk(doc)
    for position, key, value in changes:
        item = items[position % len(items)]
        if value is None:
            item.pop(key, None)
        else:
            item[key] = value
    return doc


def event_lines(doc: dict[str, Any]) -> st.SearchStrategy[list[dict[str, Any]]]:
    items = walk(doc)
    ids = [i["id"] for i in items]
    tasks = [i["id"] for i in items if i.get("type") == "Task"]
    status = st.builds(lambda i, s: {"item_id": i, "status": s}, st.sampled_from(ids),
                       st.sampled_from(STATUSES))
    update = st.builds(lambda i, k, v: {"type": "ItemUpdated", "item_id": i, "changes": {k: v}},
                       st.sampled_from(ids), st.sampled_from(FIELDS[2:8] + ["extra"]), values)
    removal = st.builds(lambda i: {"type": "ItemRemoved", "item_id": i}, st.sampled_from(ids))
    addition = st.builds(
        lambda parent, n, key, value: {"type": "ItemAdded", "parent_id": parent, "item": {
            "type": "Subtask", "id": f"{parent}.S{n}", "title": "new", "status": "Planned",
            "story_points": 2, "dependencies": [], "context_scope": SCOPE, key: value}},
        st.sampled_from(tasks), st.integers(1, 12), st.sampled_from(FIELDS), values)
    return st.lists(st.one_of(status, update, removal, addition), max_size=6)


@contextmanager
def project() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="evstore-reimport-"))
    (root / "plan" / SESSION).mkdir(parents=True)
    old = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(old)
        shutil.rmtree(root, ignore_errors=True)


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, catch_exceptions=False)


@SETTINGS
@given(data=st.data(), changes=mutations)
def test_reimporting_evstores_own_projection_always_works(
    data: st.DataObject, changes: list[tuple[int, str, Any]]
) -> None:
    doc = mutated(changes)
    with project() as root:
        tasks = root / "plan" / SESSION / "tasks.json"
        tasks.write_text(json.dumps(doc, indent=2))
        assert invoke("init").exit_code == 0
        first = invoke("import", str(tasks), "-s", SESSION)
        assert first.exit_code == 0, first.stderr  # a real file is kept, whatever it breaks
        for event in data.draw(event_lines(doc)):
            result = invoke("append", "-s", SESSION, "--jsonl", "-", stdin=json.dumps(event))
            assert result.exit_code in (0, 2), result.stderr
        assert invoke("project").exit_code == 0
        exported = tasks.read_bytes()

        again = invoke("import", str(tasks), "-s", SESSION, "--json")
        assert again.exit_code == 0, again.stderr
        assert json.loads(again.stdout)["events"] == 0
        copy_dir = root / "copy"
        copy_dir.mkdir()
        (copy_dir / "tasks.json").write_bytes(exported)
        seeded = invoke("import", str(copy_dir / "tasks.json"), "-s", "copy")
        assert seeded.exit_code == 0, seeded.stderr
        assert invoke("project").exit_code == 0
        assert (copy_dir / "tasks.json").read_bytes() == exported
