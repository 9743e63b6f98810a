"""Incremental projection (checkpoint + new events) always equals a full replay."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventstore import STATUSES, InvalidInputError, Store
from eventstore.events import ItemAdded, ItemRemoved, ItemStatusChanged, ItemUpdated
from eventstore.jsonfmt import loads
from projections import DEFAULT
from projections.backlog import BacklogState
from support import MIXED

ITEMS = list(BacklogState(loads(MIXED.read_bytes())).index)
SUBTASK_PARENTS = [i for i in ITEMS if i.count(".") == 2]

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
status_change = st.builds(
    lambda item, status: ItemStatusChanged(item_id=item, status=status),
    st.sampled_from(ITEMS), st.sampled_from(STATUSES),
)
field_update = st.builds(
    lambda item, key, value: ItemUpdated(item_id=item, changes={key: value}),
    st.sampled_from(ITEMS), st.sampled_from(["title", "description", "note", "ünïcode"]),
    st.one_of(text, st.integers(-(2**53), 2**53), st.booleans(), st.none(), st.lists(text, max_size=3)),
)
addition = st.builds(
    lambda parent, n: ItemAdded(
        item={"type": "Subtask", "id": f"{parent}.X{n}", "title": f"added {n}", "status": "Planned",
              "story_points": 1, "dependencies": [], "context_scope": "CONTRACT DEFINITION:\nx"},
        parent_id=parent,
    ),
    st.sampled_from(SUBTASK_PARENTS), st.integers(0, 10**6),
)
removal = st.builds(lambda item: ItemRemoved(item_id=item), st.sampled_from(ITEMS))
event = st.one_of(status_change, status_change, field_update, addition, removal)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(event, min_size=1, max_size=6), min_size=1, max_size=6))
def test_incremental_project_equals_full_replay(batches: list[list[object]]) -> None:
    """After any sequence of appends, each followed by an incremental `project`, the file
    on disk is byte-identical to replaying the whole journal from nothing."""
    root = Path(tempfile.mkdtemp())
    try:
        with Store.open(root / "j.db", projections=DEFAULT, create=True) as store:
            from support import seed

            seed(store, "s", MIXED, str(root / "live"))
            store.project("s")
            for batch in batches:
                for candidate in batch:
                    # Events that no longer fit (a removed item, a duplicate add) are refused.
                    with contextlib.suppress(InvalidInputError):
                        store.append("s", [candidate])  # type: ignore[list-item]
                store.project("s")
            store.replay("s", out=root / "replayed")
            live = (root / "live" / "tasks.json").read_bytes()
            assert live == (root / "replayed" / "tasks.json").read_bytes()
            assert store.state("s", "tasks").doc == loads(live)
    finally:
        shutil.rmtree(root)
