"""Crash torture, CI mode: 200 rounds of SIGKILL at random moments (bench/torture.py).

Each round, 1-4 library processes append single events and small batches to one journal
and export now and then; each is SIGKILLed 5-80 ms after they were released together.
After every round (bench/torture.py lists them all): integrity, a gap-free seq and
contiguous versions, every acknowledged append present at its seq, whole batches only,
no batch that nobody was writing, a killed writer's unacknowledged batch re-sent by its
successor is a duplicate exactly when it had been committed, every exported file parses
and is the projection of a prefix of the journal no older than the last export, temp
files only ever `.<name>.<16 hex>.tmp`, and the next project reaches the head and equals
the journal's fold (and replay).

EVSTORE_TORTURE_SEED=N reproduces a run; EVSTORE_TORTURE_ROUNDS=N changes its length.
The long mode is `python bench/torture.py --rounds 2000`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
from pathlib import Path
from types import ModuleType  # noqa: TC003

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("EVSTORE_TORTURE_ROUNDS", "200"))


def load_torture() -> ModuleType:
    name = "evstore_bench_torture"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "torture.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
    return sys.modules[name]


torture = load_torture()


def test_sigkill_torture_200_rounds(tmp_path: Path) -> None:
    seed = int(os.environ.get("EVSTORE_TORTURE_SEED", "0")) or random.SystemRandom().randrange(
        1, 2**31
    )
    print(f"torture seed {seed} (EVSTORE_TORTURE_SEED={seed} reproduces it)")  # noqa: T201
    stats = torture.torture(ROUNDS, seed=seed, work=tmp_path)  # raises on any violation
    print(stats.summary())  # noqa: T201 - shown with -s
    assert stats.rounds == ROUNDS
    assert stats.violations == []
    assert stats.events_lost == 0
    assert stats.batches_partial == 0
    assert stats.phantom_batches == 0
    assert stats.files_invalid == 0
    assert stats.files_behind == 0
    assert stats.temp_files_malformed == 0
    assert stats.projects_to_head == ROUNDS
    # Every child was killed, and the kills landed where they matter: inside appends
    # (some after the commit, before the acknowledgement), inside exports, inside the
    # re-send of a killed writer's batch, which found it committed or not.
    assert stats.kills >= ROUNDS
    if ROUNDS >= 100:
        assert stats.kills_mid_append > ROUNDS // 10, stats.summary()
        assert stats.kills_mid_project > ROUNDS // 10, stats.summary()
        assert stats.committed_unacknowledged > 0, stats.summary()
        assert stats.retries_duplicate > 0, stats.summary()
        assert stats.retries_fresh > 0, stats.summary()
        assert stats.spawned_children > 0
        assert stats.events_acknowledged_checked > ROUNDS, stats.summary()


def test_torture_catches_a_lost_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker is not vacuous: an acknowledgement the journal does not hold fails it."""
    real = torture.read_journal

    def forgetful(db: Path) -> object:
        facts = real(db)
        for event_id in [e for e in facts.by_id if ":" in e]:
            del facts.by_id[event_id]
        return facts

    monkeypatch.setattr(torture, "read_journal", forgetful)
    with pytest.raises(torture.Violation, match="lost"):
        torture.torture(5, seed=1, work=tmp_path, spawn_every=0)


def test_torture_catches_a_file_that_is_no_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """...and neither is the file check: bytes no prefix renders to are reported invalid."""
    original = torture.Torture._check_files  # noqa: SLF001

    def tamper(self: object, number: int) -> list[str]:
        path = torture.export_dir(self.db) / "tasks.json"  # type: ignore[attr-defined]
        path.write_bytes(path.read_bytes().replace(b'"Planned"', b'"Complete"', 1) + b" ")
        return original(self, number)

    monkeypatch.setattr(torture.Torture, "_check_files", tamper)
    with pytest.raises(torture.Violation, match="not the projection of any prefix"):
        torture.torture(2, seed=1, work=tmp_path, spawn_every=0)


# A library client killed (SIGKILL, by itself) at the one moment between an export's
# rename and its checkpoint save: tasks.json already holds the new bytes, the checkpoint
# still names the old ones.
KILLED_BEFORE_CHECKPOINT = r"""
import os, signal, sys
from eventstore import Store
from projections import DEFAULT
with Store.open(sys.argv[1], projections=DEFAULT) as store:
    store.journal.save_checkpoints = lambda checkpoints: os.kill(os.getpid(), signal.SIGKILL)
    store.project(sys.argv[2])
"""


def test_kill_between_rename_and_checkpoint_is_not_reported_as_drift(tmp_path: Path) -> None:
    """BUG (found by the torture, which counts these warnings): a file evstore itself wrote
    just before being killed is later called "changed outside evstore" once more events
    arrive: `project` logs projection_drift_overwritten and `doctor` reports
    PROJECTION_DRIFT (its --fix would set the file aside as a `.drift-` copy).

    eventstore/runner.py ProjectionRunner._export_one and projections/doctor_files.py
    (FileChecks._session) both take `on_disk not in (checkpoint sha, head sha)` for an outside edit;
    bytes equal to the rendering of a prefix between the checkpoint and the head are
    evstore's own interrupted export. Fix: in that (rare) branch only, re-fold from the
    checkpoint rendering each step and treat a match as ours (stale, not drift); or record
    the sha being written before the rename (e.g. a pending_sha256 beside the checkpoint).
    """
    import subprocess  # noqa: PLC0415

    from support import evstore_bin  # noqa: PLC0415

    from eventstore import Store  # noqa: PLC0415
    from projections import DEFAULT  # noqa: PLC0415

    db = torture.new_project(tmp_path / "p")
    items = torture.item_ids()
    with Store.open(db, projections=DEFAULT) as store:
        store.project(torture.SESSION)
        store.append(torture.SESSION, torture.make_events("a", 3, items))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BEFORE_CHECKPOINT, str(db), torture.SESSION],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    with Store.open(db, projections=DEFAULT) as store:  # the pipeline goes on appending
        store.append(torture.SESSION, torture.make_events("b", 3, items))

    root = db.parent.parent
    doctor = subprocess.run(
        [evstore_bin(), "doctor", "--json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = [p["code"] for p in json.loads(doctor.stdout)["problems"]]
    project = subprocess.run(
        [evstore_bin(), "project"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert project.returncode == 0, project.stderr
    assert "projection_drift_overwritten" not in project.stderr
    assert "PROJECTION_DRIFT" not in codes, doctor.stdout
