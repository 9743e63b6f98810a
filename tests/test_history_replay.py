"""The real workload: 84 committed versions of one tasks.json, replayed as events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from eventstore import Store
from eventstore.events import BacklogImported
from eventstore.jsonfmt import dumps, loads
from projections.imports import diff_backlogs, import_event, parse_backlog
from support import SESSION, seed, tasks_of


def versions(history_dir: Path) -> list[Path]:
    found = sorted(history_dir.glob("[0-9][0-9][0-9]_*.json"))
    assert len(found) == 84
    return found


def manifest_exact(history_dir: Path) -> dict[str, bool]:
    """MANIFEST.tsv says which versions JSON.stringify(doc, null, 2) wrote exactly."""
    lines = (history_dir / "MANIFEST.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]
    return {f"{int(r['order']):03d}_{r['commit'][:7]}.json": r["py_indent2_exact"] == "yes" for r in rows}


@pytest.fixture
def replayed(project_dir: Path, history_dir: Path) -> tuple[Store, list[tuple[Path, int, int]]]:
    """Import version 1, append each step's differences, projecting after every step.

    Returns the store and, per version, (file, seq after its events, events it took)."""
    files = versions(history_dir)
    store = Store.open(project_dir / ".evstore" / "journal.db", projections=__import__("projections").DEFAULT, create=True)
    seed(store, SESSION, files[0], "out")
    steps = [(files[0], store.journal.head(), 2)]
    for path in files[1:]:
        current = store.state(SESSION, "tasks").doc
        parsed = parse_backlog(path.read_bytes(), source=path.name)
        events = diff_backlogs(current, parsed.doc, fallback=import_event(parsed, source=path.name))
        if events:
            store.append(SESSION, events)
        steps.append((path, store.journal.head(), len(events)))
    return store, steps


def test_every_committed_version_is_reproduced(replayed: tuple[Store, list[tuple[Path, int, int]]], history_dir: Path, tmp_path: Path) -> None:
    """After each step the projection equals the committed file: the same bytes where the
    pipeline wrote it as JSON.stringify(doc, null, 2), the same document (keys in order)
    everywhere; and replaying --until that step's seq gives the same bytes again."""
    store, steps = replayed
    exact = manifest_exact(history_dir)
    byte_identical = 0
    for path, seq, _ in steps:
        original = path.read_bytes()
        result = tasks_of(store.replay(SESSION, until=seq, out=tmp_path / path.stem))
        projected = result.path.read_bytes()
        assert orjson.dumps(loads(projected)) == orjson.dumps(loads(original)), path.name
        if exact[path.name]:
            assert projected == original, path.name
            byte_identical += 1
        else:
            assert projected == dumps(loads(original)), path.name
    assert byte_identical == sum(exact.values()) == 78  # MANIFEST: 78 of 84 are stringify-exact


def test_history_becomes_status_events_only(replayed: tuple[Store, list[tuple[Path, int, int]]]) -> None:
    """Consecutive versions differ by statuses only: no step needs a re-import, and some
    steps move items backwards (Complete → Planned), which the journal keeps."""
    store, _ = replayed
    types = Counter(e.type for e in store.journal.read(SESSION))
    assert types["BacklogImported"] == 1
    assert set(types) == {"SessionCreated", "BacklogImported", "ItemStatusChanged"}
    changes = [e.data for e in store.journal.read(SESSION, types=["ItemStatusChanged"])]
    assert len(changes) == types["ItemStatusChanged"] > 135


def test_incremental_project_at_every_step_matches(project_dir: Path, history_dir: Path) -> None:
    """Projecting incrementally after each step (checkpoint + new events) writes the same
    file as a fresh replay at that point: the live tasks.json never drifts."""
    files = versions(history_dir)
    from projections import DEFAULT

    store = Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT, create=True)
    seed(store, SESSION, files[0], "live")
    live = project_dir / "live" / "tasks.json"
    for path in files[1:]:
        parsed = parse_backlog(path.read_bytes(), source=path.name)
        current = store.state(SESSION, "tasks").doc
        events = diff_backlogs(current, parsed.doc, fallback=BacklogImported(backlog=parsed.doc, source="", sha256=""))
        if events:
            store.append(SESSION, events)
        store.project(SESSION)
        assert orjson.dumps(loads(live.read_bytes())) == orjson.dumps(parsed.doc), path.name
    store.close()
