"""Fix-task recovery (docs/design.md §9): the Ralph loop's fix tasks as events and projections."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from eventstore import ConcurrencyError, InvalidInputError, Store
from eventstore.errors import FixLimitError
from eventstore.events import ItemStatusChanged
from eventstore.jsonfmt import loads
from projections.backlog import BacklogState
from projections.fix_tasks import record_failure
from support import FIXTURES, SESSION, snapshot

Cli = Callable[..., Result]
S1 = "P1.M1.T1.S1"
EXPORTS = Path("plan") / SESSION


def backlog(store: Store) -> BacklogState:
    state: BacklogState = store.state(SESSION, "tasks")
    return state


def sibling_ids(store: Store, item: str) -> list[str]:
    _, siblings, _ = backlog(store).index[item]
    return [s["id"] for s in siblings]


def test_a_task_that_fails_twice_then_passes(store: Store, project_dir: Path) -> None:
    """fail → fix #1, fail → fix #2, Complete → PASS; the fixes sit right after the
    original, in order, and both history files say so."""
    first = record_failure(store, SESSION, S1, "TypeError: x is undefined\n  at foo.ts:3")
    second = record_failure(store, SESSION, S1, "AssertionError: 2 != 3")
    assert (first.attempt, first.fix_id) == (1, "P1.M1.T1.S5")
    assert (second.attempt, second.fix_id) == (2, "P1.M1.T1.S6")
    assert sibling_ids(store, S1)[:3] == [S1, "P1.M1.T1.S5", "P1.M1.T1.S6"]
    fix = backlog(store).item("P1.M1.T1.S5")
    assert fix is not None
    assert list(fix) == ["type", "id", "title", "status", "story_points", "dependencies", "context_scope"]
    assert fix["title"] == f"[FIX {S1} #1] TypeError: x is undefined"
    assert fix["status"] == "Planned"
    assert fix["context_scope"].startswith("CONTRACT DEFINITION:\n")
    assert "TypeError: x is undefined\n  at foo.ts:3" in fix["context_scope"]
    store.append(SESSION, [ItemStatusChanged(item_id=S1, status="Complete")])
    store.project(SESSION)
    history = json.loads((project_dir / EXPORTS / "fix-history.json").read_bytes())
    assert history == {
        "recoveryMode": True,
        "maxFixTasksPerOriginal": 3,
        "fixTaskMap": {S1: {"attempts": 2, "fixTaskIds": ["P1.M1.T1.S5", "P1.M1.T1.S6"],
                            "lastError": "AssertionError: 2 != 3"}},
    }
    assert (project_dir / EXPORTS / "fix-history.md").read_text() == (
        "## Fix Task History\n\n"
        f"- Task {S1}: 2 fixes attempted (P1.M1.T1.S5, P1.M1.T1.S6) - Final: PASS\n"
    )
    tasks = loads((project_dir / EXPORTS / "tasks.json").read_bytes())
    assert BacklogState(tasks).item("P1.M1.T1.S6")["title"].startswith(f"[FIX {S1} #2]")  # type: ignore[index]


def test_a_task_that_always_fails_hits_the_limit(cli: Cli, project_dir: Path) -> None:
    """Limit 2: fix #1, fix #2, then exit 6 with the message and the history; FAIL."""
    cli("init")
    cli("import", str(EXPORTS / "tasks.json"), "-s", SESSION)
    ids = [cli("fail", S1, "-s", SESSION, "--error", f"exit 1 (run {n})", "--max-fix-tasks", "2") for n in (1, 2)]
    assert [r.stdout for r in ids] == ["P1.M1.T1.S5\n", "P1.M1.T1.S6\n"]
    before = cli("log", "--json").stdout.count("\n")
    third = cli("fail", S1, "-s", SESSION, "--error", "exit 1 (run 3)", "--max-fix-tasks", "2")
    assert third.exit_code == 6
    assert third.stdout == ""
    assert third.stderr.splitlines() == [
        f"evstore: error: Max fix tasks (2) reached for {S1}",
        f"- Task {S1}: 2 fixes attempted (P1.M1.T1.S5, P1.M1.T1.S6) - Final: FAIL",
    ]
    events = [json.loads(line) for line in cli("log", "--json").stdout.splitlines()]
    assert [e["type"] for e in events[before:]] == ["TaskFailed", "FixLimitReached"]
    assert events[-1]["data"] == {"original_id": S1, "attempts": 2, "last_error": "exit 1 (run 3)", "max_fix_tasks": 2}
    assert cli("project").exit_code == 0
    assert (project_dir / EXPORTS / "fix-history.md").read_text().endswith("- Final: FAIL\n")
    history = json.loads((project_dir / EXPORTS / "fix-history.json").read_bytes())
    assert history["maxFixTasksPerOriginal"] == 2
    assert history["fixTaskMap"][S1]["lastError"] == "exit 1 (run 3)"


def test_fail_json_prints_the_whole_record(cli: Cli) -> None:
    cli("init")
    cli("import", str(EXPORTS / "tasks.json"), "-s", SESSION)
    result = cli("fail", S1, "-s", SESSION, "--error", "boom", "--json")
    record = json.loads(result.stdout)
    assert record["fix_id"] == "P1.M1.T1.S5"
    assert record["attempt"] == 1
    assert record["fix_item"]["title"] == f"[FIX {S1} #1] boom"


def test_a_failed_task_gets_a_fix_subtask_inside_it(store: Store) -> None:
    """For a Task, the fix is its next subtask, after its last one."""
    outcome = record_failure(store, SESSION, "P1.M1.T1", "build broke")
    assert outcome.fix_id == "P1.M1.T1.S5"
    _, siblings, parent = backlog(store).index["P1.M1.T1.S5"]
    assert parent == "P1.M1.T1"
    assert siblings[-1]["id"] == "P1.M1.T1.S5"


def test_fix_ids_skip_ids_already_taken(store: Store) -> None:
    """The next free id: after the highest S<n> of that task."""
    record_failure(store, SESSION, "P1.M1.T1.S2", "one")
    outcome = record_failure(store, SESSION, "P1.M1.T1.S3", "two")
    assert outcome.fix_id == "P1.M1.T1.S6"
    assert sibling_ids(store, "P1.M1.T1.S3") == [S1, "P1.M1.T1.S2", "P1.M1.T1.S5", "P1.M1.T1.S3", "P1.M1.T1.S6", "P1.M1.T1.S4"]


def test_concurrent_failures_cannot_both_create_fix_2(store: Store) -> None:
    """Many threads, each with its own connection, fail the same item at once: every
    fix number is created once, and the limit holds."""
    barrier = threading.Barrier(6)
    outcomes: list[object] = []

    def worker(n: int) -> None:
        with Store.open(store.journal.path, projections=store.projections) as mine:
            barrier.wait()
            try:
                outcomes.append(record_failure(mine, SESSION, S1, f"thread {n}", max_fix_tasks=3))
            except (FixLimitError, ConcurrencyError) as exc:
                outcomes.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [o.attempt for o in outcomes if hasattr(o, "attempt")]  # type: ignore[attr-defined]
    assert sorted(created) == sorted(set(created))
    assert set(created) <= {1, 2, 3}
    events = store.read(SESSION, types=["FixTaskCreated"])
    assert sorted(e.data["attempt"] for e in events) == sorted(created)
    assert len({e.data["fix_id"] for e in events}) == len(events)


def test_concurrent_fail_processes(project_dir: Path, run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """Real processes racing on one item: distinct fix ids, each fix number once, every
    process exits 0 (it won), 3 (it lost three times) or 6 (limit)."""
    run("init", cwd=project_dir)
    run("import", str(EXPORTS / "tasks.json"), "-s", SESSION, cwd=project_dir)
    from support import evstore_bin

    procs = [subprocess.Popen([evstore_bin(), "fail", S1, "-s", SESSION, "--error", f"p{n}"],
                              cwd=project_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(5)]
    results = [(p.wait(timeout=60), p.stdout.read() if p.stdout else "") for p in procs]
    assert {code for code, _ in results} <= {0, 3, 6}
    fix_ids = [out.strip() for code, out in results if code == 0]
    assert len(fix_ids) == len(set(fix_ids)) >= 1
    log = run("log", "--json", cwd=project_dir).stdout.splitlines()
    attempts = [json.loads(line)["data"]["attempt"] for line in log if '"FixTaskCreated"' in line]
    assert sorted(attempts) == list(range(1, len(attempts) + 1))


@pytest.mark.parametrize(("args", "message"), [
    (["fail", "P9.M9", "-s", SESSION, "--error", "x"], "unknown item 'P9.M9'"),
    (["fail", "P1", "-s", SESSION, "--error", "x"], "item 'P1' is a Phase: fix tasks are made for tasks and subtasks"),
    (["fail", S1, "-s", SESSION, "--error", "x", "--max-fix-tasks", "11"], "'--max-fix-tasks': '11': expected a whole number from 1 to 10 (too large)"),
    (["fail", S1, "-s", SESSION, "--error", "x", "--max-fix-tasks", "0"], "'--max-fix-tasks': '0': expected a whole number from 1 to 10 (too small)"),
    (["fail", S1, "-s", SESSION, "--error", "   "], "fail needs --error MSG"),
    (["fail", S1, "-s", SESSION], "Missing option '--error'"),
    (["fail", S1, "-s", "nope", "--error", "x"], "unknown session 'nope'"),
])
def test_bad_fail_input_writes_nothing(cli: Cli, project_dir: Path, args: list[str], message: str) -> None:
    cli("init")
    cli("import", str(EXPORTS / "tasks.json"), "-s", SESSION)
    before = {k: v for k, v in snapshot(project_dir).items() if not k.endswith("-shm")}
    result = cli(*args)
    assert result.exit_code == 2
    assert result.stderr.startswith("evstore: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert {k: v for k, v in snapshot(project_dir).items() if not k.endswith("-shm")} == before


def test_fix_history_merges_into_a_real_ralph_state_file(store: Store, project_dir: Path) -> None:
    """`jq -s '.[0] * .[1]' state.json fix-history.json`: the recovery fields land in the
    state file with the same names and shapes it already uses."""
    record_failure(store, SESSION, S1, "boom", max_fix_tasks=2)
    store.project(SESSION)
    state = json.loads((FIXTURES / "smart-ralph" / "smart-ralph.test-recovery.ralph-state.4c26217.json").read_bytes())
    fixes = json.loads((project_dir / EXPORTS / "fix-history.json").read_bytes())
    assert set(fixes) <= set(state)
    assert {k: type(v) for k, v in fixes.items()} == {k: type(state[k]) for k in fixes}
    merged = {**state, **fixes}
    assert merged["recoveryMode"] is True
    assert merged["fixTaskMap"][S1]["fixTaskIds"] == ["P1.M1.T1.S5"]
    assert merged["specName"] == "test-recovery"


def test_replay_rebuilds_the_fix_history_files(store: Store, project_dir: Path) -> None:
    record_failure(store, SESSION, S1, "boom")
    store.project(SESSION)
    written = {n: (project_dir / EXPORTS / n).read_bytes() for n in ("tasks.json", "fix-history.json", "fix-history.md")}
    for name in written:
        (project_dir / EXPORTS / name).unlink()
    store.replay(SESSION)
    assert {n: (project_dir / EXPORTS / n).read_bytes() for n in written} == written


def test_no_fix_history_files_without_fixes(store: Store, project_dir: Path) -> None:
    store.project(SESSION)
    assert not (project_dir / EXPORTS / "fix-history.json").exists()
    assert not (project_dir / EXPORTS / "fix-history.md").exists()


def test_library_refuses_bad_limits(store: Store) -> None:
    with pytest.raises(InvalidInputError, match="--max-fix-tasks value 11"):
        record_failure(store, SESSION, S1, "x", max_fix_tasks=11)
