"""`evstore watch` and its circuit breaker (docs/design.md §10).

The breaker and the in-process watcher run on injected clocks and sleeps (a sleep is a
hook where the test appends, flips a mount or moves the clock), never on real waiting.
Real processes where it matters: appends by another `evstore`, SIGTERM to a real
`evstore watch`, and a real read-only bind mount (needs root; skipped with the reason).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from support import INITIAL, SESSION, evstore_bin, seed

from eventstore import Store
from eventstore.atomic import write_atomic
from eventstore.breaker import CircuitBreaker
from eventstore.errors import ExportError
from eventstore.events import ErrorRecorded, ItemStatusChanged
from eventstore.sqlite import SQLiteJournal
from eventstore.persistence import ERRORS_STREAM
from eventstore.watch import Watcher, stop_on_signals
from projections import DEFAULT
from projections.backlog import BacklogState

Run = Callable[..., subprocess.CompletedProcess[str]]

SUBTASKS = [i for i in BacklogState(json.loads(INITIAL.read_bytes())).index if i.count(".") == 3]
ITEM = "P1.M1.T1.S1"
DIR = "/srv/plan/001"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def erofs(path: str = DIR) -> ExportError:
    """What the runner raises when a read-only directory refuses tasks.json."""
    cause = OSError(errno.EROFS, "Read-only file system", f"{path}/tasks.json")
    error = ExportError(f"cannot write {path}/tasks.json", path=f"{path}/tasks.json",
                        errno_code=errno.EROFS, attempts=1)
    error.__cause__ = cause
    return error


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def status_of(tasks: Path, item: str) -> str:
    return BacklogState(json.loads(tasks.read_bytes())).index[item][0]["status"]


def breaker_records(store: Store) -> list[dict[str, Any]]:
    return [e.data for e in store.journal.read(ERRORS_STREAM) if e.data["component"] == "breaker"]


# --- the breaker's state machine ------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorded() -> list[ErrorRecorded]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, recorded: list[ErrorRecorded]) -> CircuitBreaker:
    return CircuitBreaker(DIR, clock=clock, record=recorded.append)


def open_it(breaker: CircuitBreaker) -> None:
    for _ in range(5):
        assert breaker.allow()
        breaker.failure(erofs())


def test_five_consecutive_failures_open_the_breaker(
    breaker: CircuitBreaker, recorded: list[ErrorRecorded]
) -> None:
    for _ in range(4):  # four failures, then a success: the count starts again
        assert breaker.allow()
        breaker.failure(erofs())
    breaker.success()
    assert (breaker.state, breaker.failures, recorded) == ("closed", 0, [])
    with capture_logs() as logs:
        for attempt in range(1, 6):
            assert breaker.allow()
            breaker.failure(erofs())
            assert breaker.state == ("open" if attempt == 5 else "closed")
    assert [(e["event"], e["log_level"]) for e in logs] == [("breaker_open", "warning")]
    assert logs[0]["export_dir"] == DIR
    assert logs[0]["previous"] == "closed"
    assert logs[0]["failures"] == 5
    assert logs[0]["errno"] == "EROFS"
    (event,) = recorded
    assert event.component == "breaker"
    assert event.operation == "open"
    assert event.message == f"{DIR}: breaker open after 5 consecutive failures (EROFS); next trial in 30s"
    assert (event.errno, event.error_type, event.severity, event.recoverability, event.category,
            event.retryable) == ("EROFS", "resource", "high", "degradable", "configuration", False)
    assert event.retry_count == 5
    assert event.recovery_strategy == "circuit_breaker"
    assert event.recovery_success is False


def test_open_refuses_every_attempt_for_30s_then_half_open_admits_three_trials(
    breaker: CircuitBreaker, clock: FakeClock, recorded: list[ErrorRecorded]
) -> None:
    open_it(breaker)
    for _ in range(10):
        clock.advance(2.9)
        assert not breaker.allow()  # 29 s: still open, no attempt
    assert breaker.state == "open"
    assert breaker.retry_in_s() == pytest.approx(1.0)
    clock.advance(1.0)
    with capture_logs() as logs:
        assert [breaker.allow() for _ in range(4)] == [True, True, True, False]
    assert breaker.state == "half_open"
    assert [(e["event"], e["log_level"]) for e in logs] == [("breaker_half_open", "info")]
    assert recorded[-1].operation == "half_open"
    assert recorded[-1].message == f"{DIR}: breaker half-open after 30s: up to 3 trial exports (last failure EROFS)"
    assert recorded[-1].errno == "EROFS"

    clock.advance(2.5)
    with capture_logs() as logs:
        breaker.success()
    assert (breaker.state, breaker.failures) == ("closed", 0)
    assert [(e["event"], e["log_level"]) for e in logs] == [("breaker_closed", "info")]
    closed = recorded[-1]
    assert [e.operation for e in recorded] == ["open", "half_open", "closed"]
    assert closed.message == f"{DIR}: breaker closed: a trial export succeeded after 5 failed exports, last EROFS"
    assert closed.recovery_success is True
    assert closed.resolution_time_ms == pytest.approx(32_500.0)
    assert all(breaker.allow() for _ in range(10))  # closed: no limit


def test_a_failed_trial_reopens_for_another_30s(
    breaker: CircuitBreaker, clock: FakeClock, recorded: list[ErrorRecorded]
) -> None:
    open_it(breaker)
    clock.advance(30)
    assert breaker.allow()
    with capture_logs() as logs:
        breaker.failure(erofs())
    assert breaker.state == "open"
    assert [(e["event"], e["log_level"], e["previous"]) for e in logs] == [("breaker_open", "warning", "half_open")]
    assert recorded[-1].operation == "open"
    assert recorded[-1].message == f"{DIR}: breaker open again after a failed trial export (EROFS); next trial in 30s"
    clock.advance(29.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()
    breaker.success()
    assert [e.operation for e in recorded] == ["open", "half_open", "open", "half_open", "closed"]
    assert recorded[-1].retry_count == 6  # the whole episode's failures
    assert recorded[-1].resolution_time_ms == pytest.approx(60_000.0)


def test_a_failure_to_record_never_stops_the_breaker(clock: FakeClock) -> None:
    def broken(_event: ErrorRecorded) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    breaker = CircuitBreaker(DIR, clock=clock, record=broken)
    with capture_logs() as logs:
        open_it(breaker)
    assert breaker.state == "open"
    assert [e["event"] for e in logs] == ["breaker_open", "error_not_recorded"]
    assert "No space left" in logs[1]["error"]


# --- the watcher, in process ----------------------------------------------------------------


class Hooks:
    """An injected sleep: the n-th call runs the n-th hook (appends, mounts, clock moves)."""

    def __init__(self, *hooks: Callable[[], object]) -> None:
        self.hooks = list(hooks)
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if len(self.calls) <= len(self.hooks):
            self.hooks[len(self.calls) - 1]()


def exported(logs: list[dict[str, Any]], projection: str = "tasks") -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == "projection_exported" and e["projection"] == projection
            and e["action"] == "written"]


def test_a_burst_of_appends_is_exported_once(store: Store, project_dir: Path) -> None:
    burst = [ItemStatusChanged(item_id=item, status="Complete") for item in SUBTASKS[:40]]

    def append_burst() -> None:  # 40 transactions on another connection, between two polls
        with Store.open(store.journal.path, projections=DEFAULT) as other:
            for event in burst:
                other.append(SESSION, [event])

    sleep = Hooks(append_burst)
    watcher = Watcher(store, interval_s=0.5, sleep=sleep, max_polls=4)
    with capture_logs() as logs:
        stats = watcher.run()
    assert sleep.calls == [0.5, 0.5, 0.5]  # it slept the interval between polls, no more
    writes = exported(logs)
    assert [w["events_applied"] for w in writes] == [2, 40]  # the start, then one for the burst
    assert (stats.exports, stats.changes, stats.failures) == (2, 1, 0)
    tasks = project_dir / "plan" / SESSION / "tasks.json"
    assert {status_of(tasks, item) for item in SUBTASKS[:40]} == {"Complete"}
    assert watcher.pending == []


def test_it_picks_up_appends_by_another_process_and_its_own(
    store: Store, project_dir: Path, run: Run
) -> None:
    tasks = project_dir / "plan" / SESSION / "tasks.json"
    sleep = Hooks(
        lambda: ok(run("append", "--session", SESSION, ITEM, "Complete")),  # another process
        # the watcher's own connection (a library user appending in-process):
        lambda: store.append(SESSION, [ItemStatusChanged(item_id=SUBTASKS[1], status="Failed")]),
        lambda: None,  # quiet: nothing to export
    )
    seen: list[int] = []
    watcher = Watcher(store, sleep=sleep, max_polls=4,
                      on_export=lambda _session, results: seen.append(results[0].seq))
    stats = watcher.run()
    assert seen == [2, 3, 4]
    assert stats.exports == 3
    assert status_of(tasks, ITEM) == "Complete"
    assert status_of(tasks, SUBTASKS[1]) == "Failed"


def test_a_session_filter_and_sessions_created_while_watching(
    store: Store, project_dir: Path
) -> None:
    def new_session() -> None:
        seed(store, "002", INITIAL, "plan/002")

    only = Watcher(store, session=SESSION, sleep=Hooks(new_session), max_polls=2)
    only.run()
    assert not (project_dir / "plan" / "002" / "tasks.json").exists()
    every = Watcher(store, sleep=Hooks(), max_polls=1)
    every.run()
    assert (project_dir / "plan" / "002" / "tasks.json").is_file()


def test_sigterm_lets_the_export_in_progress_finish_then_stops(
    project_dir: Path, tmp_path: Path
) -> None:
    journal = SQLiteJournal(project_dir / ".evstore" / "journal.db", create=True)

    def write_then_signal(path: Path, data: bytes) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once: it asks the watcher to stop
        time.sleep(0.01)
        write_atomic(path, data)

    with Store(journal, projections=DEFAULT, write_file=write_then_signal) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        seed(store, "002", INITIAL, "plan/002")
        before = signal.getsignal(signal.SIGTERM)
        watcher = Watcher(store, sleep=Hooks())
        with stop_on_signals(watcher):
            stats = watcher.run()
        assert signal.getsignal(signal.SIGTERM) is before  # handlers given back
        assert stats.stopped_by == "SIGTERM"
        assert stats.exports == 1  # the first session's export finished ...
        assert journal.checkpoint("tasks", SESSION).seq == 2
        store.runner._write_file = write_atomic  # noqa: SLF001 - the replay below is not under test
        store.replay(SESSION, out=tmp_path / "replayed")
        written = (project_dir / "plan" / SESSION / "tasks.json").read_bytes()
        assert written == (tmp_path / "replayed" / "tasks.json").read_bytes()
        assert watcher.pending == ["002"]  # ... the next one was not started
        assert not (project_dir / "plan" / "002").exists()


# --- real processes -------------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_watch(procs: list[subprocess.Popen[Any]], cwd: Path, *args: str,
                stderr: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}
    proc = subprocess.Popen(
        [evstore_bin(), "--log-format", "json", "-v", "watch", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE,
        stderr=stderr.open("w") if stderr is not None else subprocess.DEVNULL,
    )
    procs.append(proc)
    return proc


def json_logs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_sigterm_stops_a_real_watch_with_exit_0_and_a_complete_file(
    project_dir: Path, run: Run, procs: list[subprocess.Popen[Any]], tmp_path: Path
) -> None:
    ok(run("init"))
    ok(run("import", f"plan/{SESSION}/tasks.json", "--session", SESSION))
    tasks = project_dir / "plan" / SESSION / "tasks.json"
    stderr = tmp_path / "watch.log"
    proc = start_watch(procs, project_dir, "--interval", "20", stderr=stderr)
    for item in SUBTASKS[:3]:
        ok(run("append", "--session", SESSION, item, "Complete"))
    wait_for(lambda: status_of(tasks, SUBTASKS[2]) == "Complete", "the watcher's export")
    ok(run("append", "--session", SESSION, ITEM, "Failed"))
    proc.send_signal(signal.SIGTERM)  # at once: maybe mid-export, which must then finish
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr.read_text()

    lines = out.splitlines()
    assert lines, "the watcher reported no export"
    assert all(line.startswith(f"{SESSION}: {tasks} written (seq ") for line in lines), out
    last_seq = int(lines[-1].split("(seq ")[1].split(",")[0])
    assert last_seq in (5, 6)
    ok(run("replay", "--session", SESSION, "--until", str(last_seq), "--out", str(tmp_path / "replayed")))
    assert tasks.read_bytes() == (tmp_path / "replayed" / "tasks.json").read_bytes()
    assert list(tasks.parent.glob(".tasks.json.*.tmp")) == []
    stopped = [e for e in json_logs(stderr) if e["event"] == "watch_stopped"]
    assert len(stopped) == 1
    assert stopped[0]["reason"] == "SIGTERM"


@pytest.mark.parametrize("value", ["abc", "9", "0", "-20", "1.5", " "])
@pytest.mark.usefixtures("project_dir")
def test_interval_must_be_a_whole_number_of_at_least_10_ms(run: Run, value: str) -> None:
    result = run("watch", "--interval", value)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"evstore: error: invalid --interval value {value!r}:")


# --- a real read-only export directory ------------------------------------------------------


@pytest.fixture
def read_only_exports(project_dir: Path) -> Iterator[Callable[..., None]]:
    """plan/<SESSION> as a bind mount; `set_ro(read_only=...)` flips it read-only for real."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a real EROFS comes from a read-only bind mount")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("needs the mount and umount commands")
    source = project_dir / "exports-src"
    target = project_dir / "plan" / SESSION
    source.mkdir()
    shutil.copyfile(target / "tasks.json", source / "tasks.json")
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True,
                          check=False, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"`mount --bind` failed (needs CAP_SYS_ADMIN): {' '.join(done.stderr.split())}")

    def set_ro(*, read_only: bool) -> None:
        options = "remount,bind,ro" if read_only else "remount,bind,rw"
        flipped = subprocess.run(["mount", "-o", options, str(target)], capture_output=True, text=True,
                                 check=False, timeout=30)
        if flipped.returncode != 0:
            pytest.skip(f"`mount -o {options}` failed: {' '.join(flipped.stderr.split())}")
        if read_only:
            with pytest.raises(OSError) as denied:  # the fault is real
                (target / "probe").write_bytes(b"x")
            assert denied.value.errno == errno.EROFS

    yield set_ro
    if subprocess.run(["umount", str(target)], capture_output=True, check=False, timeout=30).returncode:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False, timeout=30)


@pytest.mark.faults
def test_read_only_export_dir_opens_the_breaker_while_appends_go_on(
    store: Store, project_dir: Path, run: Run, read_only_exports: Callable[..., None], tmp_path: Path,
) -> None:
    tasks = project_dir / "plan" / SESSION / "tasks.json"
    export_dir = str(store.export_dir(SESSION))
    clock = FakeClock()
    store.project(SESSION)
    read_only_exports(read_only=True)
    before = tasks.read_bytes()

    def append(item: str) -> Callable[[], object]:
        return lambda: ok(run("append", "--session", SESSION, item, "Complete"))

    def later(seconds: float, then: Callable[[], object] = lambda: None) -> Callable[[], None]:
        def hook() -> None:
            clock.advance(seconds)
            then()
        return hook

    # Poll 1 (the start) fails already: not even the lock file opens for writing.
    sleep = Hooks(
        append(SUBTASKS[0]),  # another process appends; polls 2-4 fail (EROFS) ...
        later(0.5), later(0.5), later(0.5),  # ... and poll 5, the 5th failure, opens it
        later(0.5, append(SUBTASKS[1])),  # open: the append succeeds, polls 6-8 try nothing
        later(10), later(10),
        later(10),  # poll 9, 30.5 s on: half-open, the trial fails, open again
        later(30, lambda: read_only_exports(read_only=False)),  # poll 10, disk fixed: the trial closes it
    )
    watcher = Watcher(store, clock=clock, sleep=sleep, max_polls=10)
    with capture_logs() as logs:
        stats = watcher.run()

    failed = [e for e in logs if e["event"] == "export_failed"]
    assert [e["errno"] for e in failed] == ["EROFS"] * 6  # 5, then one trial; none while open
    assert [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("breaker_")] == [
        ("breaker_open", "warning"), ("breaker_half_open", "info"), ("breaker_open", "warning"),
        ("breaker_half_open", "info"), ("breaker_closed", "info"),
    ]
    assert (stats.failures, stats.skipped, stats.exports) == (6, 3, 1)
    records = breaker_records(store)
    assert [r["operation"] for r in records] == ["open", "half_open", "open", "half_open", "closed"]
    assert records[0]["message"] == f"{export_dir}: breaker open after 5 consecutive failures (EROFS); next trial in 30s"
    assert {r["errno"] for r in records} == {"EROFS"}
    others = [e.data for e in store.journal.read(ERRORS_STREAM) if e.data["component"] != "breaker"]
    assert [(r["component"], r["errno"]) for r in others] == [("exporter", "EROFS")] * 6  # the runner's own

    assert before != tasks.read_bytes()
    assert status_of(tasks, SUBTASKS[0]) == status_of(tasks, SUBTASKS[1]) == "Complete"
    ok(run("replay", "--session", SESSION, "--out", str(tmp_path / "replayed")))
    assert tasks.read_bytes() == (tmp_path / "replayed" / "tasks.json").read_bytes()


@pytest.mark.faults
def test_a_real_watch_on_a_read_only_dir_opens_and_appends_succeed(
    store: Store, project_dir: Path, run: Run, read_only_exports: Callable[..., None],
    procs: list[subprocess.Popen[Any]], tmp_path: Path,
) -> None:
    store.project(SESSION)
    ok(run("append", "--session", SESSION, ITEM, "Complete"))
    read_only_exports(read_only=True)
    stderr = tmp_path / "watch.log"
    proc = start_watch(procs, project_dir, "--interval", "10", "--flush-retries", "0", stderr=stderr)
    wait_for(lambda: any(e["event"] == "breaker_open" for e in json_logs(stderr)), "breaker_open")
    appended = run("append", "--session", SESSION, SUBTASKS[1], "Complete")  # while open
    assert appended.returncode == 0, appended.stderr
    time.sleep(0.2)  # 20 polls while open: none may try the disk
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr.read_text()
    logs = json_logs(stderr)
    assert len([e for e in logs if e["event"] == "export_failed"]) == 5
    (opened,) = [e for e in logs if e["event"] == "breaker_open"]
    assert opened["level"] == "warning"
    assert opened["errno"] == "EROFS"
    (stopped,) = [e for e in logs if e["event"] == "watch_stopped"]
    assert (stopped["level"], stopped["reason"], stopped["pending"]) == ("warning", "SIGTERM", [SESSION])
    records = breaker_records(store)
    assert [r["operation"] for r in records] == ["open"]
    assert records[0]["message"].startswith(f"{store.export_dir(SESSION)}: breaker open after 5 consecutive failures (EROFS)")
