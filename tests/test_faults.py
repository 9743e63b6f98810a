"""Real kernel faults under the real `evstore` command (docs/design.md §6): no mocks.

A size-limited tmpfs gives a real ENOSPC, a read-only bind mount a real EROFS, a deleted
directory a real ENOENT. Each test checks what the user sees (exit code, one attempt for
errors that cannot go away by themselves) and what must not happen (a torn or changed
tasks.json, a leftover temp file, a lost event). Needs root for `mount`; skipped with the
reason otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from projections.backlog import BacklogState
from support import INITIAL, SESSION

pytestmark = pytest.mark.faults

Run = Callable[..., subprocess.CompletedProcess[str]]
Mount = Callable[..., None]

ITEM = "P1.M1.T1.S1"  # Planned in the initial backlog


# --- mounts ---------------------------------------------------------------------------------


def _mount_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False, timeout=30)


@pytest.fixture
def mounts() -> Iterator[Mount]:
    """`mounts(*mount_args, target)` mounts for this test only; unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root: real ENOSPC/EROFS come from tmpfs and read-only bind mounts")
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("needs the mount and umount commands")
    mounted: list[Path] = []

    def mount(*args: str, target: Path) -> None:
        done = _mount_cmd(*args, str(target))
        if done.returncode != 0:
            reason = " ".join(done.stderr.split())
            pytest.skip(f"`mount {' '.join(args)}` failed (needs CAP_SYS_ADMIN): {reason}")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        done = subprocess.run(["umount", str(target)], capture_output=True, check=False, timeout=30)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False, timeout=30)


def remount(options: str, target: Path) -> None:
    done = _mount_cmd("-o", options, str(target))
    if done.returncode != 0:
        pytest.skip(f"`mount -o {options}` failed: {' '.join(done.stderr.split())}")


# --- helpers --------------------------------------------------------------------------------


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


def setup_session(run: Run, tasks_file: Path) -> None:
    """`evstore init` + `evstore import FILE`: the session exports to FILE's directory."""
    ok(run("init"))
    ok(run("import", str(tasks_file), "--session", SESSION))


def json_logs(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not line.startswith("{")]


def journal_events(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in ok(run("log", "--json")).stdout.splitlines() if line]


def item_status(tasks: Path, item: str) -> str:
    return BacklogState(json.loads(tasks.read_bytes())).index[item][0]["status"]


def tmp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".tasks.json.*.tmp"))


def free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def assert_fails_fast(result: subprocess.CompletedProcess[str], errno_name: str) -> list[dict[str, Any]]:
    """Exit 4, exactly one attempt, no retry warning, one human error line naming the errno."""
    assert result.returncode == 4, (result.returncode, result.stderr)
    logs = json_logs(result.stderr)
    assert [e for e in logs if e["event"] == "export_retry"] == [], result.stderr
    failed = [e for e in logs if e["event"] == "export_failed"]
    assert len(failed) == 1, result.stderr
    assert failed[0]["attempts"] == 1
    assert failed[0]["errno"] == errno_name
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("evstore: error:")
    assert f"({errno_name}) after 1 attempt;" in lines[0]
    assert "journal is intact" in lines[0]
    return logs


def assert_event_kept(run: Run, status: str) -> None:
    """The acknowledged update is in the journal, and the failure was recorded beside it."""
    events = journal_events(run)
    ours = [e for e in events if e["stream"] == SESSION and e["type"] == "ItemStatusChanged"]
    assert ours, "the appended event is gone"
    assert ours[-1]["data"]["item_id"] == ITEM
    assert ours[-1]["data"]["status"] == status


def recorded_errors(run: Run) -> list[dict[str, Any]]:
    return [e["data"] for e in journal_events(run) if e["type"] == "ErrorRecorded"]


def assert_equals_replay(run: Run, tasks: Path, out: Path) -> None:
    ok(run("replay", "--session", SESSION, "--out", str(out)))
    assert tasks.read_bytes() == (out / "tasks.json").read_bytes()


# --- 1. ENOSPC ------------------------------------------------------------------------------


def test_enospc_on_export_fails_fast_and_keeps_old_file(
    project_dir: Path, run: Run, mounts: Mount, tmp_path: Path
) -> None:
    exports = project_dir / "exports"
    exports.mkdir()
    mounts("-t", "tmpfs", "-o", "size=256k", "tmpfs", target=exports)
    shutil.copyfile(INITIAL, exports / "tasks.json")
    setup_session(run, exports / "tasks.json")
    ok(run("project"))  # the first export fits: old file + temp file < 256k
    tasks = exports / "tasks.json"
    size = tasks.stat().st_size
    assert size > 100_000

    # Leave 48 KiB free: the next full-size write gets part way, then ENOSPC.
    filler = exports / "filler"
    with filler.open("wb") as handle:
        handle.write(b"\0" * (free_bytes(exports) - 48 * 1024))
        handle.flush()
        os.fsync(handle.fileno())
    free_before = free_bytes(exports)
    assert 0 < free_before < size
    with pytest.raises(OSError, match="No space") as full:  # the fault is real
        (exports / "probe").write_bytes(b"\0" * size)
    assert full.value.errno == errno.ENOSPC
    (exports / "probe").unlink()
    assert free_bytes(exports) == free_before

    ok(run("append", "--session", SESSION, ITEM, "Complete"))
    before = tasks.read_bytes()
    started = time.monotonic()
    # Ten retries allowed: ENOSPC must still be tried once (it will not go away by itself;
    # ten retries would sleep ~13 s).
    result = run("--log-format", "json", "-v", "project", "--flush-retries", "10")
    elapsed = time.monotonic() - started
    assert_fails_fast(result, "ENOSPC")
    assert elapsed < 5, f"ENOSPC took {elapsed:.1f}s: was it retried?"

    assert tasks.read_bytes() == before, "the existing tasks.json changed"
    assert tmp_files(exports) == [], "a partial temp file was left behind"
    assert free_bytes(exports) == free_before, "space leaked by the failed write"
    assert item_status(tasks, ITEM) == "Planned"
    assert_event_kept(run, "Complete")
    errors = recorded_errors(run)
    assert len(errors) == 1
    assert errors[0]["errno"] == "ENOSPC"
    assert errors[0]["retry_count"] == 0
    assert errors[0]["recovery_strategy"] == "fail_fast"
    assert errors[0]["recovery_success"] is False

    # Still failing while the disk is full; a rerun changes nothing either.
    assert run("project").returncode == 4
    assert tasks.read_bytes() == before
    assert tmp_files(exports) == []

    filler.unlink()
    ok(run("project"))
    assert item_status(tasks, ITEM) == "Complete"
    assert tmp_files(exports) == []
    assert_equals_replay(run, tasks, tmp_path / "other")


# --- 2. EROFS -------------------------------------------------------------------------------


def test_erofs_on_export_fails_fast_and_loses_nothing(
    project_dir: Path, run: Run, mounts: Mount, tmp_path: Path
) -> None:
    source = project_dir / "exports-src"
    exports = project_dir / "exports"
    source.mkdir()
    exports.mkdir()
    shutil.copyfile(INITIAL, source / "tasks.json")
    mounts("--bind", str(source), target=exports)
    setup_session(run, exports / "tasks.json")
    ok(run("project"))
    tasks = exports / "tasks.json"

    remount("remount,bind,ro", exports)
    with pytest.raises(OSError) as denied:  # the fault is real
        (exports / "probe").write_bytes(b"x")
    assert denied.value.errno == errno.EROFS

    ok(run("append", "--session", SESSION, ITEM, "Complete"))
    before = tasks.read_bytes()
    started = time.monotonic()
    result = run("--log-format", "json", "project", "--flush-retries", "10")
    elapsed = time.monotonic() - started
    assert_fails_fast(result, "EROFS")
    assert elapsed < 5, f"EROFS took {elapsed:.1f}s: was it retried?"
    assert tasks.read_bytes() == before
    assert tmp_files(source) == []
    assert_event_kept(run, "Complete")
    errors = recorded_errors(run)
    assert [e["errno"] for e in errors] == ["EROFS"]
    assert errors[0]["recovery_strategy"] == "fail_fast"

    remount("remount,bind,rw", exports)
    ok(run("project"))
    assert item_status(tasks, ITEM) == "Complete"
    assert tmp_files(exports) == []
    assert_equals_replay(run, tasks, tmp_path / "other")


# --- 3. a deleted export directory is not a failure -----------------------------------------


def test_deleted_export_dir_is_recreated(project_dir: Path, run: Run, tmp_path: Path) -> None:
    setup_session(run, project_dir / "plan" / SESSION / "tasks.json")
    ok(run("project"))
    exports = project_dir / "plan" / SESSION
    tasks = exports / "tasks.json"

    # The export dir deleted, no new event: the file must come back, not be "unchanged".
    shutil.rmtree(exports)
    result = ok(run("--log-format", "json", "project", "--json"))
    assert json.loads(result.stdout)[0]["action"] == "written"
    assert json_logs(result.stderr) == [], result.stderr  # no retry, no warning
    assert tasks.is_file()
    assert_equals_replay(run, tasks, tmp_path / "before-update")

    # The whole plan/ tree deleted, with a new event: parents are recreated too.
    ok(run("append", "--session", SESSION, ITEM, "Complete"))
    shutil.rmtree(project_dir / "plan")
    result = ok(run("--log-format", "json", "project", "--json"))
    assert json.loads(result.stdout)[0]["action"] == "written"
    assert json_logs(result.stderr) == [], result.stderr
    assert item_status(tasks, ITEM) == "Complete"
    assert tmp_files(exports) == []
    assert recorded_errors(run) == []  # not a failure: nothing recorded
    assert_equals_replay(run, tasks, tmp_path / "after-update")


# --- 4. the journal itself on a full disk ---------------------------------------------------


def test_journal_on_full_disk_refuses_append_whole(
    project_dir: Path, run: Run, mounts: Mount
) -> None:
    journal_dir = project_dir / "journal"
    journal_dir.mkdir()
    mounts("-t", "tmpfs", "-o", "size=8m", "tmpfs", target=journal_dir)
    db = journal_dir / "journal.db"
    env = {"EVSTORE_DB": str(db)}
    ok(run("init", env=env))
    ok(run("import", f"plan/{SESSION}/tasks.json", "--session", SESSION, env=env))
    ok(run("append", "--session", SESSION, ITEM, "Implementing", env=env))

    filler = journal_dir / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC

    batch = "".join(
        json.dumps({"item_id": ITEM, "status": "Complete", "event_id": f"full-{n}"}) + "\n"
        for n in range(3000)
    )
    result = run("append", "--session", SESSION, "--jsonl", "-", input=batch, env=env)
    assert result.returncode == 5, (result.returncode, result.stderr)  # journal unavailable
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("evstore: error: journal"), result.stderr

    filler.unlink()
    events = [json.loads(line) for line in ok(run("log", "--json", env=env)).stdout.splitlines()]
    assert [e["version"] for e in events] == [1, 2, 3], "a partial batch reached the journal"
    assert [e["seq"] for e in events] == [1, 2, 3]
    import sqlite3  # noqa: PLC0415

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        con.close()
    # With space back, the same batch goes in whole.
    ok(run("append", "--session", SESSION, "--jsonl", "-", input=batch, env=env))
    events = [json.loads(line) for line in ok(run("log", "--json", env=env)).stdout.splitlines()]
    assert len(events) == 3003
    assert [e["seq"] for e in events] == list(range(1, 3004))
