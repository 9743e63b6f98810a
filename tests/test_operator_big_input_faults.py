"""Issue 11, item 18 under a real fault: the temporary directory the lines are staged in
fills up (a 64 KiB tmpfs as TMPDIR gives a real ENOSPC)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import orjson
import pytest
from support import INITIAL, SESSION, evstore_bin, snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.faults


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: a real ENOSPC comes from a size-limited tmpfs")
    target = tmp_path / "tiny-tmp"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)],
                          capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs failed (needs CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield target
    if subprocess.run(["umount", str(target)], capture_output=True, check=False,
                      timeout=30).returncode != 0:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False, timeout=30)


def test_a_full_staging_directory_is_one_line_exit_5_and_nothing_written(
    tmp_path: Path, small_tmpfs: Path
) -> None:
    root = tmp_path / "project"
    (root / "plan" / SESSION).mkdir(parents=True)
    shutil.copyfile(INITIAL, root / "plan" / SESSION / "tasks.json")
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}
    for argv in (["init"], ["import", f"plan/{SESSION}/tasks.json", "--session", SESSION]):
        made = subprocess.run([evstore_bin(), *argv], cwd=root, env=env, capture_output=True,
                              check=False)
        assert made.returncode == 0, made.stderr
    lines = root / "u.jsonl"
    lines.write_bytes(b"".join(
        orjson.dumps({"item_id": "P1", "status": "Complete"}) + b"\n" for _ in range(20_000)))
    before = snapshot(root)
    done = subprocess.run(
        [evstore_bin(), "append", "--session", SESSION, "--jsonl", str(lines)], cwd=root,
        env={**env, "TMPDIR": str(small_tmpfs)}, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 5, done.stderr
    assert done.stderr.startswith("evstore: error: cannot stage the events of this append")
    assert "TMPDIR" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # no traceback, no second error
    assert snapshot(root) == before
    assert list(small_tmpfs.iterdir()) == []  # the staged file went with the process
