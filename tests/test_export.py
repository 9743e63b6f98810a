"""The atomic exporter and its errno-classified retry (docs/design.md §6)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eventstore import ExportError, InvalidInputError, Store
from eventstore.atomic import write_atomic
from eventstore.events import ItemStatusChanged
from eventstore.errnos import FAIL_FAST_ERRNOS, RETRYABLE_ERRNOS, is_retryable
from eventstore.retry import RetryPolicy, parse_retries
from projections import DEFAULT
from support import INITIAL, SESSION, seed, tasks_of

TASKS = Path("plan") / SESSION / "tasks.json"


def flaky(failures: list[int]) -> tuple[Callable[[Path, bytes], None], list[int]]:
    """The one seam: a write_file that raises OSError(errno) for each listed errno, in
    order, before doing the real atomic write. Returns it and the attempt log."""
    attempts: list[int] = []

    def write(path: Path, data: bytes) -> None:
        attempts.append(len(attempts) + 1)
        if failures:
            code = failures.pop(0)
            raise OSError(code, os.strerror(code), str(path))
        write_atomic(path, data)

    return write, attempts


def open_store(project_dir: Path, write_file: Callable[[Path, bytes], None], retries: int = 3,
               slept: list[float] | None = None) -> Store:
    from eventstore.sqlite import SQLiteJournal

    journal = SQLiteJournal(project_dir / ".evstore" / "journal.db", create=True)
    policy = RetryPolicy(retries=retries, sleep=(slept if slept is not None else []).append)
    return Store(journal, projections=DEFAULT, policy=policy, write_file=write_file)


@pytest.fixture
def seeded(project_dir: Path) -> Path:
    with Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT, create=True) as s:
        seed(s, SESSION, INITIAL, f"plan/{SESSION}")
        s.project(SESSION)
        s.append(SESSION, [ItemStatusChanged(item_id="P1", status="Implementing")])  # 1 pending
    return project_dir


def test_the_errno_table_of_design_section_6() -> None:
    """Retry: EBUSY EAGAIN EIO ENFILE EINTR ETIMEDOUT. Fail fast: ENOSPC ENOENT EACCES
    EPERM EROFS EMFILE EDQUOT, and anything unknown."""
    assert {errno.errorcode[c] for c in RETRYABLE_ERRNOS} == {"EBUSY", "EAGAIN", "EIO", "ENFILE", "EINTR", "ETIMEDOUT"}
    assert {errno.errorcode[c] for c in FAIL_FAST_ERRNOS} == {"ENOSPC", "ENOENT", "EACCES", "EPERM", "EROFS", "EMFILE", "EDQUOT"}
    assert not is_retryable(OSError(errno.EXDEV, "cross-device"))
    assert not is_retryable(ValueError("not an OS error"))


@pytest.mark.parametrize("code", sorted(RETRYABLE_ERRNOS), ids=lambda c: errno.errorcode[c])
def test_transient_errors_are_retried_then_succeed(seeded: Path, code: int) -> None:
    """Two transient failures, then success: 3 attempts, 2 warnings with all docs/design.md §6
    fields, sleeps of ~100 ms and ~200 ms recorded (not slept), the file written, the retries
    recorded as a recovered ErrorRecorded."""
    write, attempts = flaky([code, code])
    slept: list[float] = []
    store = open_store(seeded, write, retries=3, slept=slept)
    with capture_logs() as logs:
        result = tasks_of(store.project(SESSION))
    assert result.action == "written"
    assert attempts == [1, 2, 3]
    assert 0.09 <= slept[0] <= 0.11
    assert 0.18 <= slept[1] <= 0.22
    warnings = [e for e in logs if e["event"] == "export_retry"]
    assert [w["log_level"] for w in warnings] == ["warning", "warning"]
    assert [w["attempt"] for w in warnings] == [1, 2]
    first = warnings[0]
    assert first["max_attempts"] == 4
    assert first["errno"] == errno.errorcode[code]
    assert first["delay_ms"] == pytest.approx(slept[0] * 1000, abs=0.1)
    assert first["path"].endswith("tasks.json")
    assert first["pending_events"] == 1
    assert os.strerror(code) in first["error"]
    (recorded,) = [e for e in store.journal.read("_errors")]
    assert recorded.data["recovery_success"] is True
    assert recorded.data["retry_count"] == 2
    store.close()


@pytest.mark.parametrize("code", sorted(FAIL_FAST_ERRNOS | {errno.EXDEV}), ids=lambda c: errno.errorcode[c])
def test_permanent_errors_fail_fast(seeded: Path, code: int) -> None:
    """One attempt, no sleep, ExportError (exit 4) naming the file and errno; the target
    untouched, the checkpoint unmoved, no .failed file, the failure recorded."""
    before = (seeded / TASKS).read_bytes()
    write, attempts = flaky([code])
    slept: list[float] = []
    store = open_store(seeded, write, slept=slept)
    checkpoint = store.journal.checkpoint("tasks", SESSION)
    with capture_logs() as logs, pytest.raises(ExportError) as caught:
        store.project(SESSION)
    assert caught.value.exit_code == 4
    assert caught.value.attempts == 1
    assert errno.errorcode[code] in str(caught.value)
    assert "tasks.json" in str(caught.value)
    assert "journal is intact" in str(caught.value)
    assert attempts == [1]
    assert slept == []
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == ["export_failed"]
    assert (seeded / TASKS).read_bytes() == before
    assert store.journal.checkpoint("tasks", SESSION) == checkpoint
    assert not list((seeded / "plan" / SESSION).glob("*.failed"))
    (recorded,) = [e for e in store.journal.read("_errors")]
    assert recorded.data["errno"] == errno.errorcode[code]
    assert recorded.data["recovery_success"] is False
    assert recorded.data["retryable"] is False
    store.close()


@pytest.mark.parametrize(("retries", "attempts"), [(0, 1), (1, 2), (3, 4), (10, 11)])
def test_persistent_transient_errors_stop_after_retries_plus_one(seeded: Path, retries: int, attempts: int) -> None:
    """--flush-retries N means N+1 attempts; delays double from 100 ms and cap at 2 s."""
    write, made = flaky([errno.EIO] * 20)
    slept: list[float] = []
    store = open_store(seeded, write, retries=retries, slept=slept)
    with pytest.raises(ExportError) as caught:
        store.project(SESSION)
    assert len(made) == attempts == caught.value.attempts
    assert len(slept) == retries
    nominal = [min(2.0, 0.1 * 2**i) for i in range(retries)]
    assert all(abs(s - n) <= n * 0.1 + 1e-9 for s, n in zip(slept, nominal, strict=True))
    store.close()


def test_the_next_project_after_a_failure_writes_everything(seeded: Path) -> None:
    """Nothing is lost when an export fails: the next run exports the pending events."""
    write, _ = flaky([errno.ENOSPC])
    store = open_store(seeded, write)
    with pytest.raises(ExportError):
        store.project(SESSION)
    result = tasks_of(store.project(SESSION))
    assert (result.action, result.events_applied) == ("written", 1)
    assert b'"status": "Implementing"' in (seeded / TASKS).read_bytes()
    store.close()


def test_jitter_stays_within_ten_percent() -> None:
    policy = RetryPolicy(uniform=lambda low, high: high)
    assert [round(policy.delay_s(n), 4) for n in range(1, 7)] == [0.11, 0.22, 0.44, 0.88, 1.76, 2.2]
    policy = RetryPolicy(uniform=lambda low, high: low)
    assert round(policy.delay_s(1), 4) == 0.09


@pytest.mark.parametrize("good", ["0", "3", "10", 7])
def test_flush_retries_accepts_0_to_10(good: object) -> None:
    assert parse_retries(good) == int(good)  # type: ignore[call-overload]


@pytest.mark.parametrize("bad", ["-1", "11", "abc", "", "1.5", "3x", True])
def test_flush_retries_refuses_anything_else_by_name(bad: object) -> None:
    with pytest.raises(InvalidInputError, match=r"invalid --flush-retries value .*: expected a whole number from 0 to 10"):
        parse_retries(bad)


def test_unchanged_output_is_not_rewritten(seeded: Path) -> None:
    """A second project with nothing new leaves the very same file (inode and mtime)."""
    with Store.open(seeded / ".evstore" / "journal.db", projections=DEFAULT) as store:
        store.project(SESSION)
        before = os.stat(seeded / TASKS)
        result = tasks_of(store.project(SESSION))
        after = os.stat(seeded / TASKS)
    assert result.action == "unchanged"
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_written_file_is_0644_whatever_the_umask(seeded: Path) -> None:
    old = os.umask(0o077)
    try:
        with Store.open(seeded / ".evstore" / "journal.db", projections=DEFAULT) as store:
            store.project(SESSION)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(seeded / TASKS).st_mode) == 0o644
    assert not list((seeded / "plan" / SESSION).glob(".tasks.json.*.tmp"))


def test_a_real_failure_mid_write_leaves_no_temp_file(tmp_path: Path) -> None:
    """The rename onto a directory fails for real (EISDIR): temp removed, target intact."""
    target = tmp_path / "tasks.json"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(IsADirectoryError):
        write_atomic(target, b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.json"]
    assert (target / "keep").read_text() == "x"


def test_a_file_edited_outside_evstore_is_restored_with_a_warning(seeded: Path) -> None:
    """The file is a projection: a hand edit is overwritten on the next export, loudly."""
    with Store.open(seeded / ".evstore" / "journal.db", projections=DEFAULT) as store:
        store.project(SESSION)
        good = (seeded / TASKS).read_bytes()
        (seeded / TASKS).write_bytes(b'{"backlog": []}')
        with capture_logs() as logs:
            result = tasks_of(store.project(SESSION))
    assert result.action == "written"
    assert (seeded / TASKS).read_bytes() == good
    assert any(e["event"] == "projection_drift_overwritten" for e in logs)


def test_relative_export_dirs_resolve_against_the_project_root(seeded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Running from a subdirectory still writes plan/<session>/tasks.json under the root."""
    sub = seeded / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    (seeded / TASKS).unlink()
    with Store.open(projections=DEFAULT) as store:  # found by walking up, as git does
        result = tasks_of(store.project(SESSION))
    assert result.path == seeded / TASKS
    assert (seeded / TASKS).exists()
    assert not (sub / "plan").exists()


def test_an_unreadable_checkpoint_is_rebuilt_from_the_journal(seeded: Path) -> None:
    """Checkpoints are a cache: state this version cannot read is set aside (warning) and
    the projection folded from the start; the file comes out right either way."""
    from eventstore.records import Checkpoint

    with Store.open(seeded / ".evstore" / "journal.db", projections=DEFAULT) as store:
        store.project(SESSION)
        good = (seeded / TASKS).read_bytes()
        old = store.journal.checkpoint("tasks", SESSION)
        assert old is not None
        store.journal.save_checkpoint(Checkpoint("tasks", SESSION, old.seq, b'{"not": "a state"}', None, None))
        (seeded / TASKS).unlink()
    with Store.open(seeded / ".evstore" / "journal.db", projections=DEFAULT) as store, capture_logs() as logs:
        store.append(SESSION, [ItemStatusChanged(item_id="P2", status="Complete")])
        result = tasks_of(store.project(SESSION))
    assert result.action == "written"
    assert any(e["event"] == "checkpoint_discarded" for e in logs)
    assert (seeded / TASKS).read_bytes() == good.replace(
        b'"id": "P2",\n      "title": "Phase 2: Core Agent System",\n      "status": "Planned"',
        b'"id": "P2",\n      "title": "Phase 2: Core Agent System",\n      "status": "Complete"')
