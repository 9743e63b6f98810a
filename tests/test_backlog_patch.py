"""Status changes patched into the last tasks.json give exactly the bytes a full render
gives, or nothing (then the runner folds): on every real fixture, on generated documents
with hostile ids and titles, and through `evstore project` on a real journal."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from support import TASKS_FILES

from eventstore.events import STATUSES
from eventstore.jsonfmt import dumps, loads
from projections.backlog import BacklogState
from projections.backlog_patch import MAX_PATCHED_EVENTS, patch_statuses


def full_render(doc: dict[str, Any], changes: list[tuple[str, str]]) -> bytes:
    state = BacklogState(orjson.loads(orjson.dumps(doc)))
    for item_id, status in changes:
        found = state.index.get(item_id)
        if found is not None:
            found[0]["status"] = status
    return dumps(state.doc)


def test_patching_every_real_fixture_matches_a_full_render() -> None:
    """Random status changes over each real tasks.json: patched bytes == rendered bytes."""
    rng = random.Random(3)
    for path in TASKS_FILES:
        doc = loads(path.read_bytes())
        ids = list(BacklogState(doc).index)
        before = dumps(doc)
        for _ in range(5):
            changes = [(rng.choice(ids), rng.choice(STATUSES)) for _ in range(rng.randint(1, 8))]
            patched = patch_statuses(before, changes)
            assert patched == full_render(doc, changes), path.name


def test_what_cannot_be_placed_is_left_to_the_fold() -> None:
    """An unknown id, an id twice, a missing or non-string status, too many changes: None."""
    doc = {"backlog": [
        {"type": "Phase", "id": "P1", "title": "a", "status": "Planned", "milestones": []},
        {"type": "Phase", "id": "P2", "title": "b", "milestones": []},
        {"type": "Phase", "id": "P3", "title": "c", "status": None, "milestones": []},
        {"type": "Phase", "id": "P4", "title": "d", "status": "Planned", "milestones": []},
        {"type": "Phase", "id": "P4", "title": "e", "status": "Planned", "milestones": []},
    ]}
    data = dumps(doc)
    assert patch_statuses(data, [("P1", "Complete")]) == full_render(doc, [("P1", "Complete")])
    for item_id in ("P9", "P2", "P3", "P4"):
        assert patch_statuses(data, [(item_id, "Complete")]) is None, item_id
    assert patch_statuses(data, [("P1", "Complete")] * (MAX_PATCHED_EVENTS + 1)) is None


ids = st.text(alphabet=st.sampled_from('P1.M"\\/é\u2028 x{}:,'), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    titles=st.lists(st.text(max_size=12), min_size=3, max_size=3),
    item_ids=st.lists(ids, min_size=3, max_size=3, unique=True),
    statuses=st.lists(st.text(max_size=6), min_size=3, max_size=3),
    changes=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(STATUSES)), min_size=1, max_size=6),
)
def test_hostile_ids_titles_and_statuses_patch_exactly_or_not_at_all(
    titles: list[str], item_ids: list[str], statuses: list[str], changes: list[tuple[int, str]]
) -> None:
    """Ids and titles with quotes, backslashes, braces and line separators; old statuses
    of any text: the patch is the full render's bytes, or None."""
    doc = {"backlog": [{
        "type": "Phase", "id": "P1", "title": "t", "status": "Planned", "milestones": [{
            "type": "Milestone", "id": "P1.M1", "title": "m", "status": "Planned", "tasks": [{
                "type": "Task", "id": "P1.M1.T1", "title": "k", "status": "Planned", "subtasks": [
                    {"type": "Subtask", "id": i, "title": t, "status": s, "dependencies": [i],
                     "context_scope": f'"id": {orjson.dumps(i).decode()}'}
                    for i, t, s in zip(item_ids, titles, statuses, strict=True)
                ],
            }],
        }],
    }]}
    wanted = [(item_ids[index], status) for index, status in changes]
    patched = patch_statuses(dumps(doc), wanted)
    if patched is not None:
        assert patched == full_render(doc, wanted)


def test_project_patches_and_stays_byte_exact(tmp_path: Path) -> None:
    """Through the store: a few updates exported by patch, then a replay writes the same."""
    from eventstore import Store  # noqa: PLC0415
    from eventstore.events import ItemStatusChanged  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415
    from support import INITIAL, seed  # noqa: PLC0415

    with Store.open(tmp_path / ".evstore" / "journal.db", projections=DEFAULT, create=True) as store:
        seed(store, "s", INITIAL, "out")
        store.project("s")
        ids = list(store.state("s", "tasks").index)
        rng = random.Random(9)
        for _ in range(6):
            store.append("s", [ItemStatusChanged(item_id=rng.choice(ids), status=rng.choice(STATUSES))  # type: ignore[arg-type]
                               for _ in range(rng.randint(1, 4))])
            store.project("s")
        store.replay("s", out=tmp_path / "replayed")
    assert (tmp_path / "out" / "tasks.json").read_bytes() == (tmp_path / "replayed" / "tasks.json").read_bytes()
