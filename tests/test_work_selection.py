"""Work selection (issue 13): `next` picks what the PRP orchestrator picks, claims are
race-free across real processes, `release`, `ready` and `blocked` answer from the journal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import INITIAL, SESSION, evstore_bin, snapshot

from eventstore import Store
from eventstore.errors import InvalidInputError
from eventstore.events import ItemStatusChanged
from eventstore.selection import select_next
from projections import DEFAULT


def prp_next_pending(doc: dict[str, Any]) -> str | None:
    """The PRP pipeline's getNextPendingItem, transcribed as its nested loops: the oracle
    for plain pre-order (no dependencies, no finished parents involved)."""
    for phase in doc["backlog"]:
        if phase["status"] == "Planned":
            return phase["id"]
        for milestone in phase["milestones"]:
            if milestone["status"] == "Planned":
                return milestone["id"]
            for task in milestone["tasks"]:
                if task["status"] == "Planned":
                    return task["id"]
                for subtask in task["subtasks"]:
                    if subtask["status"] == "Planned":
                        return subtask["id"]
    return None


CONTRACT = ("CONTRACT DEFINITION:\n1. RESEARCH NOTE: none\n2. INPUT: none\n3. LOGIC: do it\n"
            "4. OUTPUT: done")


def subtask(sid: str, status: str = "Planned", deps: list[str] | None = None) -> dict[str, Any]:
    """A subtask as the pipeline's schema has it (so only dependencies can be wrong)."""
    return {"type": "Subtask", "id": sid, "title": f"do {sid}", "status": status,
            "story_points": 1, "dependencies": deps or [], "context_scope": CONTRACT}


def backlog(tasks: dict[str, list[dict[str, Any]]], *, parents: str = "Ready") -> dict[str, Any]:
    """One phase, one milestone, the given tasks (id → subtasks); parents not Planned, so
    selection reaches the subtasks unless a test says otherwise."""
    return {"backlog": [{
        "type": "Phase", "id": "P1", "title": "Phase", "status": parents, "description": "d",
        "milestones": [{
            "type": "Milestone", "id": "P1.M1", "title": "Milestone", "status": parents,
            "description": "d",
            "tasks": [
                {"type": "Task", "id": tid, "title": tid, "status": parents, "description": "d",
                 "subtasks": subs}
                for tid, subs in tasks.items()
            ],
        }],
    }]}


def open_project(root: Path, doc: dict[str, Any]) -> Store:
    plan = root / "plan" / "s"
    plan.mkdir(parents=True, exist_ok=True)
    (plan / "tasks.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    store = Store.open(root / ".evstore" / "journal.db", projections=DEFAULT, create=True)
    from projections.imports import import_event, parse_backlog  # noqa: PLC0415
    from eventstore.events import SessionCreated  # noqa: PLC0415

    parsed = parse_backlog((plan / "tasks.json").read_bytes(), source="tasks.json")
    store.append("s", [SessionCreated(export_dir="plan/s"), import_event(parsed, source="t")],
                 expected_version=0)
    return store


def test_next_matches_the_prp_orchestrator_on_the_real_backlog(store: Store) -> None:
    """Pre-order, first Planned: the same answer as the PRP pipeline's own loop, after
    every step of taking items one by one (each taken item marked Complete)."""
    for _ in range(12):
        doc = store.state(SESSION, "tasks").doc
        expected = prp_next_pending(doc)
        found = store.next_item(SESSION)
        assert (found.item.id if found.item else None) == expected
        if expected is None:
            break
        store.append(SESSION, [ItemStatusChanged(item_id=expected, status="Complete")])


def test_a_subtask_waits_for_its_dependencies(tmp_path: Path) -> None:
    """A subtask whose dependency is not Complete is skipped and named as blocked."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1", "Implementing"),
                                subtask("P1.M1.T1.S2", deps=["P1.M1.T1.S1"]),
                                subtask("P1.M1.T1.S3")]})
    with open_project(tmp_path, doc) as store:
        found = store.next_item("s")
        assert found.item is not None
        assert found.item.id == "P1.M1.T1.S3"
        assert found.skipped is not None
        assert (found.skipped.id, found.skipped.blocked_by) == ("P1.M1.T1.S2", ("P1.M1.T1.S1",))
        store.append("s", [ItemStatusChanged(item_id="P1.M1.T1.S1", status="Complete")])
        assert store.next_item("s").item.id == "P1.M1.T1.S2"  # type: ignore[union-attr]


def test_a_parent_whose_children_are_done_is_not_next(tmp_path: Path) -> None:
    """A Planned task whose subtasks are all Complete lags in status; it is not work."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1", "Complete")],
                   "P1.M1.T2": [subtask("P1.M1.T2.S1")]})
    doc["backlog"][0]["milestones"][0]["tasks"][0]["status"] = "Planned"
    with open_project(tmp_path, doc) as store:
        assert store.next_item("s").item.id == "P1.M1.T2.S1"  # type: ignore[union-attr]


def test_status_and_level_choose_the_candidates(tmp_path: Path) -> None:
    """--status widens what counts as pending; --level narrows which items qualify."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1", "Failed"), subtask("P1.M1.T1.S2")]},
                  parents="Planned")
    with open_project(tmp_path, doc) as store:
        assert store.next_item("s").item.id == "P1"  # type: ignore[union-attr]
        assert store.next_item("s", level="task").item.id == "P1.M1.T1"  # type: ignore[union-attr]
        assert store.next_item("s", level="subtask").item.id == "P1.M1.T1.S2"  # type: ignore[union-attr]
        found = store.next_item("s", level="subtask", pending=("Failed", "Planned"))
        assert found.item.id == "P1.M1.T1.S1"  # type: ignore[union-attr]
        with pytest.raises(InvalidInputError, match="invalid status"):
            store.next_item("s", pending=("Bogus",))


def test_missing_dependencies_and_cycles_are_warnings_not_hangs(tmp_path: Path) -> None:
    """A dependency on no item does not block (as canExecute ignores it) but is reported;
    a cycle blocks its members and is reported; neither crashes or loops."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1", deps=["P1.M1.T1.S2"]),
                                subtask("P1.M1.T1.S2", deps=["P1.M1.T1.S1"]),
                                subtask("P1.M1.T1.S3", deps=["P9.M9.T9.S9"])]})
    with open_project(tmp_path, doc) as store:
        found = store.next_item("s")
        assert found.item.id == "P1.M1.T1.S3"  # type: ignore[union-attr]
        assert found.item.missing == ("P9.M9.T9.S9",)  # type: ignore[union-attr]
        joined = " | ".join(found.warnings)
        assert "P1.M1.T1.S3 depends on missing item(s) P9.M9.T9.S9" in joined
        assert "dependency cycle: P1.M1.T1.S1 -> P1.M1.T1.S2 -> P1.M1.T1.S1" in joined
        assert [i.id for i in store.blocked("s")] == ["P1.M1.T1.S1", "P1.M1.T1.S2"]


def test_a_deep_dependency_chain_is_walked_without_recursion() -> None:
    """Cycle detection over 50,000 chained items stays iterative (no RecursionError)."""
    subs = [subtask(f"P1.M1.T1.S{n}", deps=[f"P1.M1.T1.S{n + 1}"]) for n in range(1, 50_001)]
    found = select_next(backlog({"P1.M1.T1": subs}))
    assert found.item is not None
    assert found.item.id == "P1.M1.T1.S50000"


def test_claim_marks_it_implementing_with_the_owner_in_meta(tmp_path: Path) -> None:
    """next --claim appends one ItemStatusChanged to Implementing, owner in the meta; the
    next claim gets the next item."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1"), subtask("P1.M1.T1.S2")]})
    with open_project(tmp_path, doc) as store:
        first = store.next_item("s", claim=True, owner="agent-1")
        second = store.next_item("s", claim=True, owner="agent-2")
        assert (first.item.id, second.item.id) == ("P1.M1.T1.S1", "P1.M1.T1.S2")  # type: ignore[union-attr]
        assert store.next_item("s", claim=True).item is None
        events = store.read("s")[-2:]
        assert [(e.data["item_id"], e.data["status"], e.meta["owner"]) for e in events] == [
            ("P1.M1.T1.S1", "Implementing", "agent-1"), ("P1.M1.T1.S2", "Implementing", "agent-2"),
        ]
        assert events[0].data["reason"] == "claimed by agent-1"
        assert first.seq == events[0].seq
        assert first.item.status == "Implementing"  # type: ignore[union-attr]  # as it is now


def test_release_puts_a_claim_back_and_refuses_unclaimed_items(tmp_path: Path) -> None:
    """release: Implementing → Planned with the reason; an item not claimed is refused and
    nothing is written."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1"), subtask("P1.M1.T1.S2")]})
    with open_project(tmp_path, doc) as store:
        store.next_item("s", claim=True)
        seq = store.release("s", "P1.M1.T1.S1", reason="agent died")
        (event,) = store.read("s", after=seq - 1)
        assert (event.data["status"], event.data["reason"]) == ("Planned", "agent died")
        head = store.journal.head()
        with pytest.raises(InvalidInputError, match="is not claimed"):
            store.release("s", "P1.M1.T1.S2", reason="x")
        assert store.journal.head() == head
        assert store.next_item("s").item.id == "P1.M1.T1.S1"  # type: ignore[union-attr]


def _cli_project(root: Path, doc: dict[str, Any]) -> None:
    open_project(root, doc).close()


def test_eight_processes_claiming_at_once_get_distinct_items(tmp_path: Path) -> None:
    """8 real `evstore next --claim` loops on 40 ready subtasks: 40 claims, none twice."""
    tasks = {f"P1.M1.T{t}": [subtask(f"P1.M1.T{t}.S{s}") for s in range(1, 11)]
             for t in range(1, 5)}
    _cli_project(tmp_path, backlog(tasks))
    loop = (
        f'while id=$("{evstore_bin()}" next -s s --level subtask --claim --owner w$0) '
        '&& [ -n "$id" ]; do echo "$id"; done'
    )
    workers = [
        subprocess.Popen(["bash", "-c", loop, str(n)], cwd=tmp_path, stdout=subprocess.PIPE,  # noqa: S607
                         stderr=subprocess.PIPE, text=True)
        for n in range(8)
    ]
    claimed: list[str] = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        claimed.extend(out.split())
    assert len(claimed) == 40
    assert sorted(claimed) == sorted({s["id"] for subs in tasks.values() for s in subs})
    with Store.open(tmp_path / ".evstore" / "journal.db", projections=DEFAULT) as store:
        claims = [e for e in store.read("s") if e.type == "ItemStatusChanged"]
        assert sorted(e.data["item_id"] for e in claims) == sorted(claimed)


def test_cli_next_ready_blocked_and_release(tmp_path: Path) -> None:
    """The commands as a pipeline runs them: id alone, JSON, lists, one-line errors."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1"),
                                subtask("P1.M1.T1.S2", deps=["P1.M1.T1.S1"])]})
    _cli_project(tmp_path, doc)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([evstore_bin(), *args], cwd=tmp_path, capture_output=True,  # noqa: S603
                              text=True, check=False, timeout=60)

    assert run("next", "-s", "s").stdout == "P1.M1.T1.S1\n"
    ready = json.loads(run("ready", "-s", "s", "--json").stdout)
    assert [i["id"] for i in ready] == ["P1.M1.T1.S1"]
    blocked = json.loads(run("blocked", "-s", "s", "--json").stdout)
    assert [(i["id"], i["blocked_by"]) for i in blocked] == [("P1.M1.T1.S2", ["P1.M1.T1.S1"])]
    assert run("blocked", "-s", "s").stdout == "P1.M1.T1.S2      waits for P1.M1.T1.S1\n"
    claim = json.loads(run("next", "-s", "s", "--claim", "--owner", "me", "--json").stdout)
    assert (claim["item"]["id"], claim["claimed"], claim["owner"]) == ("P1.M1.T1.S1", True, "me")
    assert claim["item"]["path"] == ["P1", "P1.M1", "P1.M1.T1"]
    nothing = run("next", "-s", "s")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    before = snapshot(tmp_path)
    refused = run("release", "P1.M1.T1.S2", "-s", "s", "--reason", "x")
    assert refused.returncode == 2
    assert refused.stderr == (
        "evstore: error: item 'P1.M1.T1.S2' is not claimed (status 'Planned'): "
        "only an Implementing item can be released\n"
    )
    assert snapshot(tmp_path) == before
    released = run("release", "P1.M1.T1.S1", "-s", "s", "--reason", "timed out")
    assert released.returncode == 0, released.stderr
    assert run("next", "-s", "s").stdout == "P1.M1.T1.S1\n"
    history = run("history", "P1.M1.T1.S1", "-s", "s")
    assert "timed out" in history.stdout


def test_next_on_an_unknown_session_is_exit_2(tmp_path: Path) -> None:
    """An unknown session is a one-line error naming it, exit 2."""
    _cli_project(tmp_path, backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1")]}))
    done = subprocess.run([evstore_bin(), "next", "-s", "nope"], cwd=tmp_path,  # noqa: S603
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == "evstore: error: unknown session 'nope' (known: s)\n"


@pytest.mark.parametrize("source", [INITIAL])
def test_ready_is_every_item_next_would_return_in_order(store: Store, source: Path) -> None:
    """Taking items one at a time, each `next` is the head of the `ready` list before it."""
    assert source.exists()
    for _ in range(8):
        ready = store.ready(SESSION, level="subtask")
        found = store.next_item(SESSION, level="subtask", claim=True)
        if not ready:
            assert found.item is None
            break
        assert found.item is not None
        assert found.item.id == ready[0].id
        store.append(SESSION, [ItemStatusChanged(item_id=found.item.id, status="Complete")])


def test_doctor_reports_broken_dependencies(tmp_path: Path) -> None:
    """doctor: BACKLOG_DEPENDENCY names the missing id and the cycle; not fixable; a
    healthy backlog has none."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1", deps=["P1.M1.T1.S2"]),
                                subtask("P1.M1.T1.S2", deps=["P1.M1.T1.S1"]),
                                subtask("P1.M1.T1.S3", deps=["P9.M9.T9.S9"])]})
    _cli_project(tmp_path, doc)
    subprocess.run([evstore_bin(), "project"], cwd=tmp_path, check=True, capture_output=True)  # noqa: S603
    done = subprocess.run([evstore_bin(), "doctor", "--json"], cwd=tmp_path, capture_output=True,  # noqa: S603
                          text=True, check=False)
    assert done.returncode == 1
    (problem,) = json.loads(done.stdout)["problems"]
    assert (problem["code"], problem["fixable"], problem["session"]) == ("BACKLOG_DEPENDENCY", False, "s")
    assert "P1.M1.T1.S3 depends on missing item(s) P9.M9.T9.S9" in problem["message"]
    assert "dependency cycle: P1.M1.T1.S1 -> P1.M1.T1.S2 -> P1.M1.T1.S1" in problem["message"]


def test_doctor_is_quiet_about_a_sound_backlog(tmp_path: Path) -> None:
    """No BACKLOG_DEPENDENCY when every dependency names an item and none loops."""
    doc = backlog({"P1.M1.T1": [subtask("P1.M1.T1.S1"), subtask("P1.M1.T1.S2", deps=["P1.M1.T1.S1"])]})
    _cli_project(tmp_path, doc)
    subprocess.run([evstore_bin(), "project"], cwd=tmp_path, check=True, capture_output=True)  # noqa: S603
    done = subprocess.run([evstore_bin(), "doctor", "--json"], cwd=tmp_path, capture_output=True,  # noqa: S603
                          text=True, check=False)
    assert (done.returncode, json.loads(done.stdout)["problems"]) == (0, [])
