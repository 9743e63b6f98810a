"""Item 9: every backlog event is checked against the pipeline's schema before anything is
written, so `append --jsonl` cannot produce a tasks.json evstore (or the pipeline) would
refuse; `import` keeps a real file but names each problem; `doctor` reports them.

Real journals, real `evstore` processes; refusals leave every byte as it was."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import INITIAL, MIXED, SESSION, evstore_bin, snapshot

from eventstore import Store
from eventstore.errors import InvalidInputError
from eventstore.events import BacklogImported, ItemAdded

Run = Callable[..., subprocess.CompletedProcess[str]]
SCOPE = "CONTRACT DEFINITION:\n1. RESEARCH NOTE: r\n2. INPUT: i\n3. LOGIC: l\n4. OUTPUT: o"


def subtask(item_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "Subtask", "id": item_id, "title": "a new subtask", "status": "Planned",
            "story_points": 2, "dependencies": [], "context_scope": SCOPE, **fields}


def task(item_id: str, *subtasks: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "Task", "id": item_id, "title": "a new task", "status": "Planned",
            "description": "what it does", "subtasks": list(subtasks), **fields}


def added(item: dict[str, Any], parent: str | None, **extra: Any) -> dict[str, Any]:
    return {"type": "ItemAdded", "item": item, "parent_id": parent, **extra}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real backlog imported and projected by the real command, once per module."""
    root = tmp_path_factory.mktemp("template")
    (root / "plan" / SESSION).mkdir(parents=True)
    shutil.copyfile(INITIAL, root / "plan" / SESSION / "tasks.json")
    binary = evstore_bin()
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION], ["project"]):
        subprocess.run([binary, *args], cwd=root, check=True, capture_output=True)  # noqa: S603
    return root


@pytest.fixture
def seeded(template: Path, project_dir: Path) -> Path:
    shutil.rmtree(project_dir)
    shutil.copytree(template, project_dir)
    return project_dir


def append_lines(run: Run, root: Path, *events: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    lines = "".join(json.dumps(e) + "\n" for e in events)
    return run("append", "-s", SESSION, "--jsonl", "-", cwd=root, input=lines)


def refused(run: Run, root: Path, *events: dict[str, Any]) -> str:
    before = snapshot(root)
    result = append_lines(run, root, *events)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evstore: error: "), result.stderr
    assert snapshot(root) == before
    return lines[0]


def tasks_json(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / "plan" / SESSION / "tasks.json").read_text())
    return loaded


def ids(doc: Any) -> list[str]:
    found: list[str] = []
    stack = list(doc["backlog"])
    while stack:
        item = stack.pop()
        found.append(item["id"])
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key, []))
    return found


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (added(subtask("P1.M1.T1.S9", status="TotallyBogus"), "P1.M1.T1"), "'TotallyBogus'"),
        (added(task("P1.M1.T9", {k: v for k, v in subtask("P1.M1.T9.S1").items() if k != "type"}),
               "P1.M1"), "where a Subtask belongs"),
        (added(task("P1.M1.T9", subtask("P1.M1.T1.S1")), "P1.M1"), "'P1.M1.T1.S1'"),
        (added(task("P1.M1.T9", subtask("P1.M1.T9.S1"), subtask("P1.M1.T9.S1")), "P1.M1"),
         "used twice"),
        (added(subtask("P1.M1.T9"), "P1.M1"), "where a Task belongs"),
        (added(task("P1.M1.T1.S9"), "P1.M1.T1"), "where a Subtask belongs"),
        (added(subtask("P2.M1.T1.S9"), "P1.M1.T1"), "does not extend its parent's id 'P1.M1.T1'"),
        (added(subtask("P1.M1.T1.X9"), "P1.M1.T1"), "not in the Subtask format"),
        (added(subtask("P1.M1.T1.S9", story_points=0.5), "P1.M1.T1"), "story_points"),
        (added(subtask("P1.M1.T1.S9", context_scope="do it"), "P1.M1.T1"), "context_scope"),
        (added({k: v for k, v in subtask("P1.M1.T1.S9").items() if k != "title"}, "P1.M1.T1"),
         'missing "title"'),
        (added({k: v for k, v in task("P1.M1.T9").items() if k != "subtasks"}, "P1.M1"),
         'missing "subtasks"'),
        ({"type": "ItemUpdated", "item_id": "P1.M1.T1.S1", "changes": {"type": "Task"}},
         "cannot change type"),
        ({"type": "ItemUpdated", "item_id": "P1.M1.T1.S1", "changes": {"story_points": 100}},
         "story_points"),
        ({"type": "ItemUpdated", "item_id": "P1", "changes": {}, "removed": ["description"]},
         '"description" is required'),
        ({"type": "ItemUpdated", "item_id": "P1", "changes": {"id": "P9"}}, "cannot change id"),
        ({"type": "BacklogImported", "backlog": {"backlog": []}, "source": "x", "sha256": ""},
         "BacklogImported is not accepted here"),
    ],
    ids=["bogus-status", "child-without-type", "existing-id-nested", "id-twice-in-the-item",
         "subtask-where-a-task-goes", "task-where-a-subtask-goes", "id-not-extending-parent",
         "id-format", "story-points", "context-scope", "missing-title", "missing-children",
         "update-type", "update-story-points", "update-removes-required", "update-id",
         "wipe-the-backlog"],
)
def test_jsonl_events_breaking_the_schema_are_refused(
    seeded: Path, run: Run, event: dict[str, Any], says: str
) -> None:
    assert says in refused(run, seeded, {"item_id": "P1", "status": "Complete"}, event)


def test_a_backlog_imported_line_with_duplicate_ids_is_refused(seeded: Path, run: Run) -> None:
    doc = tasks_json(seeded)
    doc["backlog"].append(doc["backlog"][0])
    line = refused(run, seeded, {"type": "BacklogImported", "backlog": doc, "source": "x",
                                 "sha256": ""})
    assert "BacklogImported" in line


def test_events_keeping_the_schema_are_appended_and_exported(seeded: Path, run: Run) -> None:
    result = append_lines(
        run, seeded,
        added(task("P1.M1.T9", subtask("P1.M1.T9.S1")), "P1.M1", after_id="P1.M1.T1"),
        added(subtask("P1.M1.T1.S9"), "P1.M1.T1"),
        {"type": "ItemUpdated", "item_id": "P1.M1.T1.S1", "changes": {"story_points": 3}},
    )
    assert result.returncode == 0, result.stderr
    assert run("project", cwd=seeded).returncode == 0
    doc = tasks_json(seeded)
    assert len(ids(doc)) == len(set(ids(doc)))
    assert {"P1.M1.T9", "P1.M1.T9.S1", "P1.M1.T1.S9"} <= set(ids(doc))
    assert run("import", f"plan/{SESSION}/tasks.json", "-s", SESSION, "--strict",
               cwd=seeded).returncode == 0


def test_an_update_is_checked_on_what_it_changes_only(project_dir: Path, run: Run) -> None:
    """A real file with story_points 0.5 is kept; updating another field still works."""
    (project_dir / "plan" / SESSION / "tasks.json").write_bytes(MIXED.read_bytes())
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION]):
        assert run(*args, cwd=project_dir).returncode == 0
    doc = json.loads(MIXED.read_text())
    bad = next(i for i in _walk(doc) if i.get("story_points") == 0.5)
    result = append_lines(run, project_dir, {"type": "ItemUpdated", "item_id": bad["id"],
                                             "changes": {"title": "renamed"}})
    assert result.returncode == 0, result.stderr


def _walk(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = list(doc["backlog"])
    while stack:
        item = stack.pop()
        found.append(item)
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key, []))
    return found


def test_import_keeps_a_real_file_and_warns_per_problem_strict_refuses(
    project_dir: Path, run: Run
) -> None:
    (project_dir / "plan" / SESSION / "tasks.json").write_bytes(MIXED.read_bytes())
    assert run("init", cwd=project_dir).returncode == 0
    before = snapshot(project_dir)
    strict = run("import", f"plan/{SESSION}/tasks.json", "-s", SESSION, "--strict", cwd=project_dir)
    assert strict.returncode == 2
    assert strict.stderr.count("\n") == 1 and "breaks the pipeline's backlog schema (2 problem(s)" \
        in strict.stderr and "--strict" in strict.stderr
    assert snapshot(project_dir) == before
    kept = run("import", f"plan/{SESSION}/tasks.json", "-s", SESSION, "--json", cwd=project_dir)
    assert kept.returncode == 0, kept.stderr
    warnings = json.loads(kept.stdout)["warnings"]
    assert len(warnings) == 2 and all("story_points" in w and "kept as is" in w for w in warnings)
    assert run("project", cwd=project_dir).returncode == 0
    assert (project_dir / "plan" / SESSION / "tasks.json").read_bytes() == MIXED.read_bytes()


def test_doctor_reports_a_backlog_breaking_the_schema_as_not_fixable(
    project_dir: Path, run: Run
) -> None:
    (project_dir / "plan" / SESSION / "tasks.json").write_bytes(MIXED.read_bytes())
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION], ["project"]):
        assert run(*args, cwd=project_dir).returncode == 0
    for args in (["doctor", "--json"], ["doctor", "--fix", "--json"]):
        result = run(*args, cwd=project_dir)
        assert result.returncode == 1, result.stderr
        (problem,) = json.loads(result.stdout)["problems"]
        assert problem["code"] == "BACKLOG_INVALID" and problem["session"] == SESSION
        assert problem["fixable"] is False and problem["fixed"] is False
        assert "story_points" in problem["message"]


def test_doctor_is_quiet_about_a_backlog_keeping_the_schema(seeded: Path, run: Run) -> None:
    result = run("doctor", "--json", cwd=seeded)
    assert result.returncode == 0, result.stdout
    assert json.loads(result.stdout)["problems"] == []


def test_library_appends_are_checked_too(store: Store) -> None:
    """The projection checks every source, not only --jsonl: a BacklogImported that would
    fold two items under one id, or an ItemAdded breaking the schema, is refused."""
    doc = json.loads(INITIAL.read_text())
    doc["backlog"].append(copy.deepcopy(doc["backlog"][0]))
    head = store.journal.head()
    with pytest.raises(InvalidInputError, match="appears twice"):
        store.append(SESSION, [BacklogImported(backlog=doc, source="lib", sha256="")])
    with pytest.raises(InvalidInputError, match="TotallyBogus"):
        store.append(SESSION, [ItemAdded(item=subtask("P1.M1.T1.S9", status="TotallyBogus"),
                                         parent_id="P1.M1.T1")])
    assert store.journal.head() == head


def test_a_fix_task_for_a_long_error_keeps_the_schema(seeded: Path, run: Run) -> None:
    """Its title is cut to the pipeline's 200 characters; the whole error stays in its
    context_scope, so `fail` is not refused by the schema it must keep."""
    error = "x" * 300
    result = run("fail", "P1.M1.T1.S1", "-s", SESSION, "--error", error, "--json", cwd=seeded)
    assert result.returncode == 0, result.stderr
    assert run("project", cwd=seeded).returncode == 0
    fix = next(i for i in _walk(tasks_json(seeded)) if i["title"].startswith("[FIX"))
    assert len(fix["title"]) == 200 and fix["title"].endswith("…")
    assert error in fix["context_scope"]
    assert run("doctor", cwd=seeded).returncode == 0
