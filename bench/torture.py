#!/usr/bin/env python
# ruff: noqa: E501, C901, PLR0912, PLR0915, N818, PTH110
"""Crash torture and concurrency proof (issue 5): SIGKILL at random moments, many writers.

    python bench/torture.py --rounds 2000 --seed 7      # the long mode
    python bench/torture.py --rounds 50 --json out.json

Each round starts 1-4 library processes on one journal. Each loops: append a single
event or a small batch (every event id names its batch and its position in it:
`<writer>g<round>b<n>:<pos>/<size>`), and now and then `store.project(...)`. Each writes
an intent line before an append and an acknowledgement after it returned, with
os.write to its own file (the kernel keeps what was written when the process is killed).
The parent SIGKILLs each of them 5-80 ms after they were released together, then checks:

- the journal passes `PRAGMA integrity_check`; `seq` is 1..head without a gap; versions
  are 1..n without a gap in every stream;
- every acknowledged append is there, at the seq it was acknowledged with;
- every batch is whole (all its positions, at consecutive seqs) or absent; a batch that
  appeared is one a process acknowledged or the one it was writing when killed;
- a process that replaces a killed one first re-sends the killed one's unacknowledged
  batch with the same ids: it is reported a duplicate exactly when it was committed;
- every file in the export directory parses, and tasks.json is byte for byte the
  projection of some prefix of the session no older than the last one exported (files
  never go back); leftover temp files have exactly the shape `.<name>.<16 hex>.tmp`;
- the next `project` brings tasks.json to the session's head and equals an independent
  fold of the journal (and, every few rounds, `replay`).

Most children are forked from this process once it has imported evstore (a spawned
interpreter costs ~0.4 s, a fork ~2 ms): hundreds of rounds take a minute. Every
`--spawn-every` rounds one child is a fresh interpreter instead. A fresh journal is
started every `--journal-rounds` rounds so a round's cost stays flat.

The concurrency checks (several writers on one journal, expected_version races,
concurrent exporters) live here too, for tests/test_concurrency_scale.py and
bench/reliability.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections.abc import Iterator  # noqa: TC003 - runtime annotation of a generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/torture.py` from anywhere
    sys.path.insert(0, str(REPO))

from eventstore import ConcurrencyError, Store  # noqa: E402
from eventstore.events import STATUSES, ItemStatusChanged, SessionCreated  # noqa: E402
from projections import DEFAULT  # noqa: E402
from projections.backlog import BacklogState, TasksProjection  # noqa: E402
from projections.imports import import_event, parse_backlog  # noqa: E402

THIS = Path(__file__).resolve()
FIXTURE = REPO / "tests" / "fixtures" / "hacky-hack" / "001_14b9dc2a33c7.tasks.49991f1.initial.json"
SESSION = "001_14b9dc2a33c7"
PROJECTED = frozenset(p.file_name for p in DEFAULT)
TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}\.tmp$")
LOCK_NAME = ".evstore.lock"
JOURNAL_FILES = frozenset({"journal.db", "journal.db-wal", "journal.db-shm"})
ID_RE = re.compile(r"^(?P<key>.+):(?P<pos>\d+)/(?P<size>\d+)$")


# --- shared helpers ------------------------------------------------------------------------


def item_ids() -> list[str]:
    return list(BacklogState(json.loads(FIXTURE.read_bytes())).index)


def batch_ids(key: str, size: int) -> list[str]:
    return [f"{key}:{pos}/{size}" for pos in range(size)]


def make_events(key: str, size: int, items: list[str]) -> list[ItemStatusChanged]:
    """The events of batch `key`, a function of its ids alone (so a retry re-sends the same)."""
    events = []
    for event_id in batch_ids(key, size):
        h = zlib.crc32(event_id.encode())
        events.append(
            ItemStatusChanged(
                item_id=items[h % len(items)],
                status=STATUSES[(h >> 8) % len(STATUSES)],  # type: ignore[arg-type]
            )
        )
    return events


def new_project(root: Path) -> Path:
    """A project root with plan/<SESSION>/tasks.json imported into a new journal; its db."""
    plan = root / "plan" / SESSION
    plan.mkdir(parents=True)
    shutil.copyfile(FIXTURE, plan / "tasks.json")
    db = root / ".evstore" / "journal.db"
    with Store.open(db, projections=DEFAULT, create=True) as store:
        parsed = parse_backlog(FIXTURE.read_bytes(), source=str(FIXTURE))
        store.append(
            SESSION,
            [
                SessionCreated(export_dir=f"plan/{SESSION}"),
                import_event(parsed, source=str(FIXTURE)),
            ],
            expected_version=0,
        )
    return db


def export_dir(db: Path) -> Path:
    return db.parent.parent / "plan" / SESSION


def evstore_bin() -> str:
    candidate = Path(sys.executable).parent / "evstore"
    found = str(candidate) if candidate.exists() else shutil.which("evstore")
    if not found:
        raise RuntimeError("the evstore console script is not installed (pip install -e .)")
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class JournalFacts:
    head: int
    rows: list[tuple[int, str, int, str]]  # seq, stream, version, event_id
    by_id: dict[str, tuple[int, str, int]]
    batches: dict[str, list[tuple[int, int, int]]]  # key -> [(pos, size, seq)]
    versions: dict[str, int]


class Violation(AssertionError):
    """An invariant did not hold."""


def read_journal(db: Path) -> JournalFacts:
    """Read every row and check what holds for any journal: integrity, a gap-free seq,
    contiguous versions per stream, whole batches."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        integrity = con.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            raise Violation(f"integrity_check: {integrity}")
        rows = con.execute(
            "SELECT seq, stream, version, event_id FROM events ORDER BY seq"
        ).fetchall()
    finally:
        con.close()
    for expected, row in enumerate(rows, start=1):
        if row[0] != expected:
            raise Violation(f"seq gap: expected {expected}, found {row[0]}")
    versions: dict[str, int] = {}
    by_id: dict[str, tuple[int, str, int]] = {}
    batches: dict[str, list[tuple[int, int, int]]] = {}
    for seq, stream, version, event_id in rows:
        if version != versions.get(stream, 0) + 1:
            raise Violation(
                f"version gap in {stream}: {version} after {versions.get(stream, 0)} (seq {seq})"
            )
        versions[stream] = version
        by_id[event_id] = (seq, stream, version)
        found = ID_RE.match(event_id)
        if found:
            batches.setdefault(found["key"], []).append(
                (int(found["pos"]), int(found["size"]), seq)
            )
    return JournalFacts(len(rows), rows, by_id, batches, versions)


def partial_batches(facts: JournalFacts) -> list[str]:
    """Batches not whole: a position missing or repeated, or seqs not consecutive."""
    bad = []
    for key, parts in facts.batches.items():
        size = parts[0][1]
        positions = [pos for pos, _, _ in parts]
        seqs = [seq for _, _, seq in parts]
        if (
            positions != list(range(size))
            or any(s != size for _, s, _ in parts)
            or seqs != list(range(seqs[0], seqs[0] + size))
        ):
            bad.append(f"{key}: positions {positions} of {size} at seqs {seqs}")
    return bad


def check_ack(facts: JournalFacts, key: str, size: int, first: int, last: int) -> str | None:
    """None if the acknowledged batch is in the journal at the seqs it was acknowledged with."""
    if last - first + 1 != size:
        return f"{key}: acknowledged {first}..{last} for {size} events"
    for offset, event_id in enumerate(batch_ids(key, size)):
        found = facts.by_id.get(event_id)
        if found is None or found[0] != first + offset or found[1] != SESSION:
            return (
                f"{key}: acknowledged event {event_id} at seq {first + offset}, journal has {found}"
            )
    return None


def read_lines(path: Path) -> list[list[str]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    # One write(2) per line, but a SIGKILL can cut a write that crosses a page boundary:
    # a torn last line was never said (an acknowledgement cut short is no acknowledgement).
    lines.pop()
    return [line.split() for line in lines]


# --- the children ------------------------------------------------------------------------------


def _say(fd: int, *words: object) -> None:
    os.write(fd, (" ".join(str(w) for w in words) + "\n").encode())


def _wait_for(path: str) -> None:
    while not os.path.exists(path):
        time.sleep(0.0005)


def child_main(spec: dict[str, Any]) -> None:
    """A library client. `mode`: torture (loop until killed), writer (N events), racer."""
    fd = os.open(spec["ack"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    rng = random.Random(spec["seed"])
    items = item_ids()[: spec.get("items", 60)]
    with Store.open(spec["db"], projections=DEFAULT) as store:
        if spec["mode"] == "torture":
            for projection in DEFAULT:  # live state at the head: kills land in appends,
                store.state(SESSION, projection.name)  # not in the first catch-up
        _say(fd, "R")
        if spec["mode"] == "racer":
            _racer(store, spec, fd, items)
            return
        _wait_for(spec["go"])
        if spec["mode"] == "writer":
            _writer(store, spec, fd, rng, items)
            return
        retry = spec.get("retry")
        if retry:
            _append_batch(store, fd, retry[0], retry[1], items)
        p_project, count = spec["p_project"], 0
        while True:
            if rng.random() < p_project:
                _say(fd, "P")
                (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
                _say(fd, "p", tasks.seq, tasks.action)
                continue
            size = 1 if rng.random() < 0.5 else rng.randint(2, 8)
            _append_batch(store, fd, f"{spec['key']}b{count}", size, items)
            count += 1


def _append_batch(store: Store, fd: int, key: str, size: int, items: list[str]) -> None:
    _say(fd, "I", key, size)
    result = store.append(SESSION, make_events(key, size, items), event_ids=batch_ids(key, size))
    _say(fd, "A", key, size, result.first_seq, result.last_seq, int(result.duplicate))


def _writer(
    store: Store, spec: dict[str, Any], fd: int, rng: random.Random, items: list[str]
) -> None:
    done, count, total = 0, 0, spec["total"]
    stop = spec.get("stop")
    while done < total or (stop and not os.path.exists(stop)):
        if stop:  # runs until told to stop, at a pace
            time.sleep(rng.uniform(0, 0.02))
            total = done + 12
        size = 1 if rng.random() < 0.5 else rng.randint(2, 12)
        size = min(size, total - done)
        _append_batch(store, fd, f"{spec['key']}b{count}", size, items)
        done += size
        count += 1
        if count == 1 and spec.get("all_under_way"):
            _all_under_way(spec["all_under_way"], spec["key"], spec["writers"])
    _say(fd, "D")


def _all_under_way(folder: str, key: str, writers: int, limit_s: float = 60.0) -> None:
    """Wait, after this writer's first commit, until every writer has made one: each is
    then under way at once. SQLite's busy handler sleeps, so a writer that commits fast can
    hold the lock through its whole run while the others sleep; released only at `go`,
    how many overlap would be up to the scheduler. Past `limit_s` (a writer that died
    before its first commit), carry on: the checks after the run say what went wrong."""
    Path(folder, key).touch()
    deadline = time.monotonic() + limit_s
    while len(os.listdir(folder)) < writers and time.monotonic() < deadline:
        time.sleep(0.001)


def _racer(store: Store, spec: dict[str, Any], fd: int, items: list[str]) -> None:
    me = spec["key"]
    for k in range(spec["rounds"]):
        go = f"{spec['go']}.{k}"
        _wait_for(go)
        version = int(Path(go).read_text())
        event = ItemStatusChanged(item_id=items[k % len(items)], status=STATUSES[k % len(STATUSES)])  # type: ignore[arg-type]
        try:
            result = store.append(
                SESSION, [event], expected_version=version, event_ids=[f"race{k}-{me}:0/1"]
            )
        except ConcurrencyError:
            _say(fd, "L", k, version)
        else:
            _say(fd, "W", k, version, result.first_seq, result.last_version)
    _say(fd, "D")


class Child:
    """A child process: forked from here (cheap) or a fresh interpreter (spawned)."""

    def __init__(self, spec: dict[str, Any], *, spawn: bool, err: Path) -> None:
        self.spec = spec
        self.ack = Path(spec["ack"])
        self.err = err
        self.spawned = spawn
        self.proc: subprocess.Popen[bytes] | None = None
        if spawn:
            with err.open("wb") as out:
                self.proc = subprocess.Popen(
                    [sys.executable, str(THIS), "--child", json.dumps(spec)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    cwd=err.parent,
                )
            self.pid = self.proc.pid
        else:
            self.pid = _fork(spec, err)
        self.status: int | None = None  # returncode convention: -9 when SIGKILLed

    def poll(self) -> int | None:
        if self.status is None:
            if self.proc is not None:
                self.status = self.proc.poll()
            else:
                pid, raw = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.status = _decode(raw)
        return self.status

    def wait(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise Violation(f"child {self.spec.get('key')} did not finish in {timeout:.0f}s")
            time.sleep(0.002)
        assert self.status is not None
        return self.status

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def lines(self) -> list[list[str]]:
        return read_lines(self.ack)

    def stderr(self) -> str:
        try:
            return self.err.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


def _decode(raw: int) -> int:
    if os.WIFSIGNALED(raw):
        return -os.WTERMSIG(raw)
    return os.WEXITSTATUS(raw)


def _fork(spec: dict[str, Any], err: Path) -> int:
    out = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller (a test runner, say)
        code = 1
        try:
            os.dup2(out, 1)
            os.dup2(out, 2)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            child_main(spec)
            code = 0
        except BaseException:  # noqa: BLE001 - reported through the err file and exit code
            with contextlib.suppress(BaseException):
                os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(out)
    return pid


def wait_ready(children: list[Child], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = list(children)
    while pending:
        for child in list(pending):
            lines = child.lines()
            if lines and lines[0] == ["R"]:
                pending.remove(child)
            elif child.poll() is not None:
                raise Violation(
                    f"child exited {child.status} before it was ready:\n{child.stderr()}"
                )
        if time.monotonic() > deadline:
            raise Violation("children not ready in time")
        time.sleep(0.001)


# --- the torture --------------------------------------------------------------------------------


@dataclass
class TortureStats:
    seed: int
    rounds: int = 0
    kills: int = 0
    kills_mid_append: int = 0
    kills_mid_project: int = 0
    kills_mid_retry: int = 0
    kills_other: int = 0
    spawned_children: int = 0
    journals: int = 0
    appends_acknowledged: int = 0
    events_acknowledged_checked: int = 0
    projects_acknowledged: int = 0
    committed_unacknowledged: int = 0
    retries_duplicate: int = 0
    retries_fresh: int = 0
    batches_whole: int = 0
    batches_partial: int = 0
    events_lost: int = 0
    phantom_batches: int = 0
    files_checked: int = 0
    files_invalid: int = 0
    files_behind: int = 0
    temp_files_left: int = 0
    temp_files_malformed: int = 0
    projects_to_head: int = 0
    replays_compared: int = 0
    drift_warnings: int = 0
    events_in_journals: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.rounds} rounds, {self.kills} SIGKILLs "
            f"({self.kills_mid_append} mid-append, {self.kills_mid_project} mid-project, "
            f"{self.kills_mid_retry} mid-retry, {self.kills_other} between operations); "
            f"{self.appends_acknowledged} acknowledged appends ({self.events_acknowledged_checked} "
            f"events) checked, {self.committed_unacknowledged} committed but unacknowledged, "
            f"retries after a kill: {self.retries_duplicate} duplicate + {self.retries_fresh} fresh; "
            f"batches whole {self.batches_whole}, seen partial {self.batches_partial}; "
            f"events lost {self.events_lost}; phantom batches {self.phantom_batches}; "
            f"files checked {self.files_checked}, invalid {self.files_invalid}, "
            f"behind {self.files_behind}; temp files left {self.temp_files_left} "
            f"(malformed {self.temp_files_malformed}); project to head {self.projects_to_head}, "
            f"replays compared {self.replays_compared}; 'projection_drift_overwritten' "
            f"warnings {self.drift_warnings}; {self.journals} journals, "
            f"{self.events_in_journals} events; {self.seconds:.1f}s"
        )


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"event='([^']+)'", record.getMessage())
        name = found[1] if found else record.getMessage()[:60]
        self.counts[name] = self.counts.get(name, 0) + 1


class _Prefixes:
    """sha256 of tasks.json at every prefix of the session, folded incrementally."""

    def __init__(self) -> None:
        self.projection = TasksProjection()
        self.state = self.projection.initial()
        self.seq = 0
        self.newest: dict[str, int] = {}  # sha -> the latest seq whose file has these bytes
        self.head_sha: str | None = None

    def extend(self, store: Store) -> None:
        for event in store.journal.read(SESSION, after=self.seq):
            self.state = self.projection.fold(self.state, event)
            data = self.projection.render(self.state)
            if data is not None:
                self.head_sha = sha(data)
                self.newest[self.head_sha] = event.seq
            self.seq = event.seq


class Torture:
    def __init__(  # noqa: PLR0913 - keyword knobs
        self,
        work: Path,
        *,
        seed: int,
        kill_ms: tuple[float, float] = (5, 80),
        journal_rounds: int = 50,
        spawn_every: int = 25,
        replay_every: int = 10,
        max_children: int = 4,
    ) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.stats = TortureStats(seed=seed)
        self.kill_ms = kill_ms
        self.journal_rounds = journal_rounds
        self.spawn_every = spawn_every
        self.replay_every = replay_every
        self.max_children = max_children
        self.db: Path | None = None
        self.prefixes = _Prefixes()
        self.floor = 0
        self.present: set[str] = set()
        self.pending: dict[str, tuple[str, int]] = {}
        self.temps_seen: set[str] = set()

    # one journal -------------------------------------------------------------------------

    def _new_journal(self, number: int) -> None:
        if self.db is not None:
            self.stats.events_in_journals += self.prefixes.seq
            shutil.rmtree(self.db.parent.parent)
        root = self.work / f"journal-{number}"
        self.db = new_project(root)
        self.prefixes = _Prefixes()
        with Store.open(self.db, projections=DEFAULT) as store:
            self.prefixes.extend(store)
            store.project(SESSION)  # the copied fixture is not JSON.stringify-exact: export it
        if self.prefixes.newest.get(sha((export_dir(self.db) / "tasks.json").read_bytes())) != 2:
            raise Violation("the first export is not the projection of the imported backlog")
        self.floor = self.prefixes.seq
        self.present = set()
        self.pending = {}
        self.temps_seen = set()
        self.stats.journals += 1

    # one round ----------------------------------------------------------------------------

    def run(self, rounds: int, *, progress: bool = False) -> TortureStats:
        started = time.monotonic()
        # The parent's own exports log through `logging` (structlog unconfigured): count
        # what they warn about instead of printing it.
        logger = logging.getLogger("evstore")
        counter = _Counter()
        logger.addHandler(counter)
        propagate, logger.propagate = logger.propagate, False
        try:
            for number in range(rounds):
                if number % self.journal_rounds == 0:
                    self._new_journal(number // self.journal_rounds)
                self._round(number)
                self.stats.rounds += 1
                if progress and (number + 1) % 100 == 0:
                    print(
                        f"  {number + 1} rounds, {self.stats.kills} kills, "
                        f"{time.monotonic() - started:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            logger.removeHandler(counter)
            logger.propagate = propagate
            self.stats.drift_warnings = counter.counts.get("projection_drift_overwritten", 0)
            self.stats.seconds = time.monotonic() - started
            if self.db is not None:
                self.stats.events_in_journals += self.prefixes.seq
        return self.stats

    def _round(self, number: int) -> None:
        assert self.db is not None
        rng = self.rng
        scratch = self.work / "round"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        go = scratch / "go"
        count = min(rng.choice([1, 2, 2, 3, 3, 4]), self.max_children)
        spawn_one = self.spawn_every > 0 and number % self.spawn_every == self.spawn_every - 1
        children: list[Child] = []
        try:
            for index in range(count):
                writer = f"w{index}"
                spec = {
                    "mode": "torture",
                    "writer": writer,
                    "db": str(self.db),
                    "go": str(go),
                    "ack": str(scratch / f"{writer}.ack"),
                    "key": f"{writer}g{number}",
                    "seed": rng.getrandbits(32),
                    "p_project": rng.choice([0.0, 0.1, 0.3, 0.7]),
                    "retry": self.pending.get(writer),
                }
                spawn = spawn_one and index == 0
                children.append(Child(spec, spawn=spawn, err=scratch / f"{writer}.err"))
                self.stats.spawned_children += spawn
            wait_ready(children)
            delays = [rng.uniform(*self.kill_ms) / 1000 for _ in children]
            go.touch()
            released = time.monotonic()
            for delay, child in sorted(zip(delays, children, strict=True), key=lambda p: p[0]):
                time.sleep(max(0.0, released + delay - time.monotonic()))
                if child.poll() is not None:
                    raise Violation(
                        f"round {number}: {child.spec['key']} exited "
                        f"{child.status} before its kill:\n{child.stderr()}"
                    )
                child.kill()
                self.stats.kills += 1
            for child in children:
                status = child.wait()
                if status != -signal.SIGKILL:
                    raise Violation(
                        f"round {number}: {child.spec['key']} ended {status}:\n{child.stderr()}"
                    )
        finally:
            for child in children:
                child.kill()
                with contextlib.suppress(Violation, ChildProcessError):
                    child.wait(timeout=30)
        self._check(number, children)

    # the invariants -------------------------------------------------------------------------

    def _check(self, number: int, children: list[Child]) -> None:
        assert self.db is not None
        stats = self.stats
        problems: list[str] = []
        facts = read_journal(self.db)  # integrity, gap-free seq, contiguous versions
        partial = partial_batches(facts)
        stats.batches_partial += len(partial)
        problems += [f"partial batch {p}" for p in partial]
        now_present = set(facts.batches)
        new_keys = now_present - self.present
        stats.batches_whole += len(new_keys) - len(partial)

        explained: set[str] = set()
        for child in children:
            writer = child.spec["writer"]
            retry = child.spec.get("retry")
            lines = child.lines()
            last_intent: tuple[str, int] | None = None
            for words in lines:
                if words[0] == "I":
                    last_intent = (words[1], int(words[2]))
                elif words[0] == "A":
                    key, size, first, last, dup = words[1], int(words[2]), *map(int, words[3:])
                    last_intent = None
                    stats.appends_acknowledged += 1
                    stats.events_acknowledged_checked += size
                    explained.add(key)
                    lost = check_ack(facts, key, size, first, last)
                    if lost:
                        stats.events_lost += size
                        problems.append(f"lost: {lost}")
                    is_retry = retry is not None and key == retry[0]
                    if is_retry:
                        was_there = key in self.present
                        stats.retries_duplicate += dup
                        stats.retries_fresh += not dup
                        if bool(dup) != was_there:
                            problems.append(
                                f"retry of {key}: duplicate={dup} but it was "
                                f"{'' if was_there else 'not '}committed before"
                            )
                    elif dup:
                        problems.append(f"{key}: a first append reported as a duplicate")
                elif words[0] == "p":
                    stats.projects_acknowledged += 1
            tail = lines[-1][0] if lines else "R"
            if tail == "I":
                assert last_intent is not None
                if retry is not None and last_intent[0] == retry[0]:
                    stats.kills_mid_retry += 1
                else:
                    stats.kills_mid_append += 1
            elif tail == "P":
                stats.kills_mid_project += 1
            else:
                stats.kills_other += 1
            if last_intent is not None:
                self.pending[writer] = last_intent
                if last_intent[0] in now_present:
                    explained.add(last_intent[0])
                    stats.committed_unacknowledged += last_intent[0] in new_keys
            else:
                self.pending.pop(writer, None)
        phantoms = sorted(new_keys - explained)
        stats.phantom_batches += len(phantoms)
        problems += [f"batch {k} appeared without an intent" for k in phantoms]
        self.present = now_present

        with Store.open(self.db, projections=DEFAULT) as store:
            self.prefixes.extend(store)
            problems += self._check_files(number)
            # The next project brings tasks.json to the head, and it is the journal's fold.
            (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
            session_head = next(
                seq for seq, stream, _, _ in reversed(facts.rows) if stream == SESSION
            )
            if tasks.seq != self.prefixes.seq or tasks.seq != session_head:
                problems.append(f"project stopped at {tasks.seq}, session head {self.prefixes.seq}")
            data = (export_dir(self.db) / "tasks.json").read_bytes()
            if sha(data) != self.prefixes.head_sha:
                problems.append("tasks.json after project is not the fold of the whole session")
            checkpoint = store.journal.checkpoint("tasks", SESSION)
            if (
                checkpoint is None
                or checkpoint.seq != self.prefixes.seq
                or checkpoint.exported_sha256 != sha(data)
            ):
                problems.append(
                    f"checkpoint after project: {checkpoint and (checkpoint.seq, checkpoint.exported_sha256)}"
                )
            stats.projects_to_head += 1
            self.floor = self.prefixes.seq
            if self.replay_every and number % self.replay_every == 0:
                out = self.work / "replay"
                shutil.rmtree(out, ignore_errors=True)
                store.replay(SESSION, out=out)
                if (out / "tasks.json").read_bytes() != data:
                    problems.append("replay differs from project")
                stats.replays_compared += 1
        if problems:
            stats.violations += [f"round {number}: {p}" for p in problems]
            raise Violation(f"seed {stats.seed}, round {number}:\n  " + "\n  ".join(problems[:20]))

    def _check_files(self, number: int) -> list[str]:  # noqa: ARG002
        assert self.db is not None
        stats = self.stats
        problems = []
        directory = export_dir(self.db)
        for path in sorted(directory.iterdir()):
            name = path.name
            if name == LOCK_NAME:
                continue
            if name.startswith("."):
                found = TEMP_RE.match(name)
                if name not in self.temps_seen:
                    self.temps_seen.add(name)
                    stats.temp_files_left += 1
                if not found or found["name"] not in PROJECTED or not path.is_file():
                    stats.temp_files_malformed += 1
                    problems.append(f"stray hidden file {name!r}")
                continue
            stats.files_checked += 1
            if name not in PROJECTED or not path.is_file():
                stats.files_invalid += 1
                problems.append(f"unexpected file {name!r}")
                continue
            data = path.read_bytes()
            try:
                json.loads(data) if name.endswith(".json") else data.decode()
            except ValueError as exc:
                stats.files_invalid += 1
                problems.append(f"{name} does not parse: {exc}")
                continue
            if name == "tasks.json":
                at = self.prefixes.newest.get(sha(data))
                if at is None:
                    stats.files_invalid += 1
                    problems.append("tasks.json is not the projection of any prefix of the journal")
                elif at < self.floor:
                    stats.files_behind += 1
                    problems.append(
                        f"tasks.json went back: prefix {at} < {self.floor} exported before"
                    )
            else:
                stats.files_invalid += 1  # no batch or fix events are appended here
                problems.append(f"{name} exists without any event that projects it")
        state_dir = self.db.parent
        extra = {p.name for p in state_dir.iterdir()} - JOURNAL_FILES
        if extra:
            problems.append(f"unexpected files in .evstore: {sorted(extra)}")
        root_extra = {p.name for p in self.db.parent.parent.iterdir()} - {"plan", ".evstore"}
        if root_extra:
            problems.append(f"unexpected files in the project root: {sorted(root_extra)}")
        return problems


def torture(
    rounds: int,
    *,
    seed: int | None = None,
    work: Path | None = None,
    progress: bool = False,
    **knobs: Any,
) -> TortureStats:
    """Run `rounds` kill rounds (in `work`, or a temp dir removed afterwards)."""
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evstore-torture-")))
        work.mkdir(parents=True, exist_ok=True)
        return Torture(work, seed=seed, **knobs).run(rounds, progress=progress)


# --- concurrency -----------------------------------------------------------------------------------


def _spawn(spec: dict[str, Any], scratch: Path, name: str) -> Child:
    spec = {**spec, "ack": str(scratch / f"{name}.ack")}
    return Child(spec, spawn=True, err=scratch / f"{name}.err")


@contextlib.contextmanager
def _reaped(children: list[Child]) -> Iterator[list[Child]]:
    try:
        yield children
    finally:
        for child in children:
            child.kill()
            with contextlib.suppress(Violation):
                child.wait(timeout=30)


def concurrent_writers(
    root: Path,
    *,
    writers: int = 8,
    events_per_writer: int = 1000,
    seed: int = 0,
    timeout: float = 600,
) -> dict[str, Any]:
    """`writers` fresh interpreters append `events_per_writer` events each (singles and
    batches of 2-12) to one journal, released together and all under way at once (each
    waits after its first commit for the others' first); check everything they were told."""
    db = new_project(root / "project")
    scratch = root / "writers"
    scratch.mkdir()
    before = read_journal(db)
    go = scratch / "go"
    under_way = scratch / "under-way"
    under_way.mkdir()
    rng = random.Random(seed)
    started = time.monotonic()
    with _reaped(
        [
            _spawn(
                {
                    "mode": "writer",
                    "db": str(db),
                    "go": str(go),
                    "key": f"cw{n}",
                    "seed": rng.getrandbits(32),
                    "total": events_per_writer,
                    "all_under_way": str(under_way),
                    "writers": writers,
                },
                scratch,
                f"cw{n}",
            )
            for n in range(writers)
        ]
    ) as children:
        wait_ready(children)
        go.touch()
        released = time.monotonic()
        codes = [child.wait(timeout=timeout) for child in children]
        elapsed = time.monotonic() - released
    problems = [
        f"cw{n} exited {code}:\n{children[n].stderr()}" for n, code in enumerate(codes) if code
    ]
    facts = read_journal(db)
    partial = partial_batches(facts)
    problems += [f"partial batch {p}" for p in partial]
    acked = lost = appends = 0
    for n, child in enumerate(children):
        lines = child.lines()
        if not lines or lines[-1] != ["D"]:
            problems.append(f"cw{n} did not finish: last line {lines[-1:]}")
        mine = 0
        for words in lines:
            if words[0] == "A":
                key, size, first, last = words[1], int(words[2]), int(words[3]), int(words[4])
                appends += 1
                mine += size
                missing = check_ack(facts, key, size, first, last)
                if missing:
                    lost += size
                    problems.append(f"lost: {missing}")
        acked += mine
        in_journal = sum(
            len(parts) for key, parts in facts.batches.items() if key.startswith(f"cw{n}b")
        )
        if mine != events_per_writer or in_journal != events_per_writer:
            problems.append(
                f"cw{n}: {mine} acknowledged, {in_journal} in the journal, {events_per_writer} sent"
            )
    new_session = facts.versions[SESSION] - before.versions[SESSION]
    if new_session != writers * events_per_writer:
        problems.append(f"{new_session} new session events, expected {writers * events_per_writer}")
    owners = [
        eid.split("b", 1)[0]
        for seq, stream, _, eid in facts.rows
        if seq > before.head and stream == SESSION
    ]
    switches = sum(1 for a, b in itertools.pairwise(owners) if a != b)
    # How many writers were under way at once: between their first and last commit.
    spans = {w: (owners.index(w), len(owners) - 1 - owners[::-1].index(w)) for w in set(owners)}
    overlap = max(
        (sum(1 for a, b in spans.values() if a <= i <= b) for i in range(len(owners))), default=0
    )
    busy = sum(child.stderr().count("journal_busy_retry") for child in children)
    result = {
        "writers": writers,
        "events_per_writer": events_per_writer,
        "events_expected": writers * events_per_writer,
        "events_new": new_session,
        "events_acknowledged": acked,
        "appends": appends,
        "events_lost": lost,
        "batches_partial": len(partial),
        "writer_switches": switches,
        "max_writers_under_way": overlap,
        "busy_retries_logged": busy,
        "errors_stream_events": facts.versions.get("_errors", 0)
        - before.versions.get("_errors", 0),
        "nonzero_exits": sum(1 for code in codes if code),
        "seconds": round(elapsed, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "problems": problems,
    }
    if problems:
        raise Violation(f"concurrent writers: {json.dumps(result, indent=1)}")
    return result


def expected_version_race(root: Path, *, racers: int = 6, rounds: int = 40) -> dict[str, Any]:
    """`racers` processes append at the same expected version, `rounds` times: one winner each."""
    db = new_project(root / "project")
    scratch = root / "racers"
    scratch.mkdir()
    go = scratch / "go"
    problems: list[str] = []
    versions: list[int] = []
    started = time.monotonic()
    with _reaped(
        [
            _spawn(
                {
                    "mode": "racer",
                    "db": str(db),
                    "go": str(go),
                    "key": f"r{n}",
                    "seed": n,
                    "rounds": rounds,
                },
                scratch,
                f"r{n}",
            )
            for n in range(racers)
        ]
    ) as children:
        wait_ready(children)
        for k in range(rounds):
            version = read_journal(db).versions[SESSION]
            versions.append(version)
            tmp = scratch / f".go.{k}"
            tmp.write_text(str(version))
            tmp.rename(f"{go}.{k}")  # all racers see the version at once, or not yet
            deadline = time.monotonic() + 60
            while not all(
                any(w[:2] in (["W", str(k)], ["L", str(k)]) for w in c.lines()) for c in children
            ):
                if any(c.poll() not in (None, 0) for c in children) or time.monotonic() > deadline:
                    raise Violation(
                        "racer died or hung:\n" + "\n".join(c.stderr() for c in children)
                    )
                time.sleep(0.0005)
        codes = [child.wait(timeout=60) for child in children]
    problems += [
        f"r{n} exited {code}: {children[n].stderr()}" for n, code in enumerate(codes) if code
    ]
    facts = read_journal(db)
    reported: dict[int, list[tuple[str, list[str]]]] = {}
    for n, child in enumerate(children):
        for words in child.lines():
            if words[0] in ("W", "L"):
                reported.setdefault(int(words[1]), []).append((f"r{n}", words))
    winners_total = 0
    for k, version in enumerate(versions):
        got = reported.get(k, [])
        winners = [(who, w) for who, w in got if w[0] == "W"]
        losers = [who for who, w in got if w[0] == "L"]
        in_journal = [eid for eid in facts.by_id if eid.startswith(f"race{k}-")]
        winners_total += len(winners)
        if len(winners) != 1 or len(losers) != racers - 1 or len(in_journal) != 1:
            problems.append(
                f"round {k} at version {version}: winners {winners}, "
                f"{len(losers)} losers, journal {in_journal}"
            )
            continue
        who, words = winners[0]
        seq, stream, at_version = facts.by_id[f"race{k}-{who}:0/1"]
        if (stream, at_version, seq, int(words[4])) != (
            SESSION,
            version + 1,
            int(words[3]),
            version + 1,
        ):
            problems.append(
                f"round {k}: {who} reported {words}, journal has seq {seq} v{at_version}"
            )
    if versions != list(range(versions[0], versions[0] + rounds)):
        problems.append(f"each round should move the session by one version: {versions}")
    result = {
        "racers": racers,
        "rounds": rounds,
        "winners": winners_total,
        "losers": sum(len(v) for v in reported.values()) - winners_total,
        "seconds": round(time.monotonic() - started, 2),
        "problems": problems,
    }
    if problems:
        raise Violation(f"expected_version race: {json.dumps(result, indent=1)}")
    return result


def _project_json(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [evstore_bin(), "project", "--json"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _tasks_result(proc: subprocess.Popen[str], problems: list[str]) -> dict[str, Any] | None:
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        problems.append(f"project exited {proc.returncode}: {err}")
        return None
    (tasks,) = [r for r in json.loads(out) if r["projection"] == "tasks"]
    return dict(tasks)


def concurrent_projects(
    root: Path, *, runs: int = 4, rounds: int = 3, live_runs: int = 3
) -> dict[str, Any]:
    """`runs` concurrent `evstore project --json` after new events, `rounds` times: exactly
    one writes tasks.json, the others find it done. Then the same while a writer appends:
    never two writes for one checkpoint. The file always equals replay."""
    db = new_project(root / "project")
    project = db.parent.parent
    tasks_path = export_dir(db) / "tasks.json"
    items = item_ids()
    problems: list[str] = []
    quiet_written = 0
    files_invalid = 0

    def file_is_replay(tag: str) -> None:
        nonlocal files_invalid
        with Store.open(db, projections=DEFAULT) as store:
            out = root / f"replay-{tag}"
            store.replay(SESSION, out=out)
        data = tasks_path.read_bytes()
        json.loads(data)
        leftovers = [p.name for p in tasks_path.parent.iterdir() if TEMP_RE.match(p.name)]
        if data != (out / "tasks.json").read_bytes() or leftovers:
            files_invalid += 1
            problems.append(f"{tag}: tasks.json differs from replay, or temp files {leftovers}")

    started = time.monotonic()
    for k in range(rounds):
        with Store.open(db, projections=DEFAULT) as store:
            key = f"pj{k}"
            appended = store.append(
                SESSION, make_events(key, 60, items), event_ids=batch_ids(key, 60)
            )
            head = appended.last_seq
        procs = [_project_json(project) for _ in range(runs)]
        found = [_tasks_result(p, problems) for p in procs]
        actions = sorted(t["action"] for t in found if t)
        quiet_written += actions.count("written")
        if actions != ["unchanged"] * (runs - 1) + ["written"] and actions != [
            "unchanged"
        ] * runs + ["written"]:
            problems.append(f"round {k}: actions {actions}, expected one written")
        if any(t and t["seq"] != head for t in found):
            problems.append(f"round {k}: seqs {[t and t['seq'] for t in found]}, head {head}")
        file_is_replay(f"quiet{k}")

    # Live: a writer appends while the exporters run again and again.
    scratch = root / "live"
    scratch.mkdir()
    go = scratch / "go"
    stop = scratch / "stop"
    with _reaped(
        [
            _spawn(
                {
                    "mode": "writer",
                    "db": str(db),
                    "go": str(go),
                    "key": "live",
                    "seed": 1,
                    "total": 0,
                    "stop": str(stop),
                },
                scratch,
                "live",
            )
        ]
    ) as (writer,):
        wait_ready([writer])
        go.touch()
        written: list[int] = []
        all_runs = 0
        for _ in range(live_runs):
            procs = [_project_json(project) for _ in range(runs)]
            for tasks in (_tasks_result(p, problems) for p in procs):
                all_runs += 1
                if tasks and tasks["action"] == "written":
                    written.append(tasks["seq"])
        stop.touch()
        if writer.wait(timeout=120) != 0:
            problems.append(f"live writer failed: {writer.stderr()}")
    if len(written) != len(set(written)):
        problems.append(f"two writes for one checkpoint: written at seqs {sorted(written)}")
    with Store.open(db, projections=DEFAULT) as store:
        (final,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
    facts = read_journal(db)
    live_events = sum(len(parts) for key, parts in facts.batches.items() if key.startswith("liveb"))
    session_head = next(seq for seq, stream, _, _ in reversed(facts.rows) if stream == SESSION)
    if final.seq != session_head:
        problems.append(f"final project at {final.seq}, session head {session_head}")
    file_is_replay("live")
    result = {
        "runs": runs,
        "rounds": rounds,
        "quiet_writes": quiet_written,
        "live_project_runs": all_runs,
        "live_events": live_events,
        "live_writes": len(written),
        "live_distinct_write_seqs": len(set(written)),
        "files_invalid": files_invalid,
        "seconds": round(time.monotonic() - started, 2),
        "problems": problems,
    }
    if problems:
        raise Violation(f"concurrent projects: {json.dumps(result, indent=1)}")
    return result


# --- command line --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--kill-min-ms", type=float, default=5)
    parser.add_argument("--kill-max-ms", type=float, default=80)
    parser.add_argument(
        "--journal-rounds", type=int, default=50, help="a fresh journal every N rounds"
    )
    parser.add_argument(
        "--spawn-every",
        type=int,
        default=25,
        help="one spawned interpreter every N rounds (0: never)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the work here (default: a temp dir, removed)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the summary to PATH as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return 0
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    print(
        f"evstore torture: {args.rounds} rounds, seed {seed} "
        f"(kills {args.kill_min_ms:g}-{args.kill_max_ms:g} ms)",
        flush=True,
    )
    try:
        stats = torture(
            args.rounds,
            seed=seed,
            work=args.workdir,
            progress=True,
            kill_ms=(args.kill_min_ms, args.kill_max_ms),
            journal_rounds=args.journal_rounds,
            spawn_every=args.spawn_every,
        )
    except Violation as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(stats.summary())
    print(
        f"rounds {stats.rounds}, kills {stats.kills}, acknowledged events checked "
        f"{stats.events_acknowledged_checked}, batches seen partial {stats.batches_partial}, "
        f"events lost {stats.events_lost}, invalid files {stats.files_invalid}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(stats), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
