"""A big backlog in the real schema, for the benchmarks that must not grow with it.

    from big_backlog import big_backlog, history
    doc = big_backlog(100_000)          # Phase > Milestone > Task > Subtask, ~100,000 items
    updates = history(doc, 1_000)       # status changes over it, as an agent makes them

Titles and context scopes are sampled from the real backlog in tests/fixtures (so their
lengths and characters are real); ids follow the pipeline's scheme (P1.M1.T1.S1), and every
subtask depends on the one before it in its task, as the real plans do. Deterministic for a
given seed.

    python bench/big_backlog.py 100000 > big-tasks.json   # the file, as JSON.stringify writes it
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests/fixtures/hacky-hack/001_14b9dc2a33c7.tasks.49991f1.initial.json"
UPDATE_STATUSES = ("Researching", "Implementing", "Complete", "Failed", "Retrying", "Complete")


def _samples() -> dict[str, list[str]]:
    doc = orjson.loads(FIXTURE.read_bytes())
    found: dict[str, list[str]] = {"title": [], "description": [], "context_scope": []}
    stack = list(doc["backlog"])
    while stack:
        item = stack.pop()
        for key, values in found.items():
            if isinstance(item.get(key), str):
                values.append(item[key])
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key) or [])
    return found


def big_backlog(items: int = 100_000, *, seed: int = 7) -> dict[str, Any]:
    """About `items` items: 10 phases × 10 milestones × 10 tasks, the rest subtasks."""
    rng = random.Random(seed)
    text = _samples()
    phases, milestones, tasks = 10, 10, 10
    parents = phases + phases * milestones + phases * milestones * tasks
    per_task = max(1, (items - parents) // (phases * milestones * tasks))

    def node(kind: str, item_id: str) -> dict[str, Any]:
        return {"type": kind, "id": item_id, "title": rng.choice(text["title"]), "status": "Planned",
                "description": rng.choice(text["description"])}

    backlog = []
    for p in range(1, phases + 1):
        phase = node("Phase", f"P{p}")
        phase["milestones"] = []
        for m in range(1, milestones + 1):
            milestone = node("Milestone", f"P{p}.M{m}")
            milestone["tasks"] = []
            for t in range(1, tasks + 1):
                task = node("Task", f"P{p}.M{m}.T{t}")
                task["subtasks"] = [
                    {"type": "Subtask", "id": f"{task['id']}.S{s}", "title": rng.choice(text["title"]),
                     "status": "Planned", "story_points": rng.choice((1, 2, 3, 5)),
                     "dependencies": [f"{task['id']}.S{s - 1}"] if s > 1 else [],
                     "context_scope": rng.choice(text["context_scope"])}
                    for s in range(1, per_task + 1)
                ]
                milestone["tasks"].append(task)
            phase["milestones"].append(milestone)
        backlog.append(phase)
    return {"backlog": backlog}


def subtask_ids(doc: dict[str, Any]) -> list[str]:
    return [s["id"] for p in doc["backlog"] for m in p["milestones"] for t in m["tasks"]
            for s in t["subtasks"]]


def history(doc: dict[str, Any], updates: int = 1_000, *, seed: int = 11) -> Iterator[dict[str, str]]:
    """`updates` status changes ({"item_id", "status"}) spread over the subtasks."""
    rng = random.Random(seed)
    ids = subtask_ids(doc)
    for _ in range(updates):
        yield {"item_id": rng.choice(ids), "status": rng.choice(UPDATE_STATUSES)}


def count_items(doc: dict[str, Any]) -> int:
    total, stack = 0, list(doc["backlog"])
    while stack:
        item = stack.pop()
        total += 1
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key) or [])
    return total


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from eventstore.jsonfmt import dumps  # noqa: PLC0415 - JSON.stringify(doc, null, 2)

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    sys.stdout.buffer.write(dumps(big_backlog(size)))
