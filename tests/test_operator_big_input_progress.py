"""Issue 11, item 18: the `append --jsonl` bar when the number of lines cannot be known
up front (a pipe on stdin, read once as a stream), and when it can (a file, counted first)."""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
import termios
import threading
from typing import TYPE_CHECKING

import orjson
import pytest
from support import INITIAL, SESSION, evstore_bin

if TYPE_CHECKING:
    from pathlib import Path

BAR = "━"  # rich's bar
UPDATES = 5000


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "plan" / SESSION).mkdir(parents=True)
    shutil.copyfile(INITIAL, root / "plan" / SESSION / "tasks.json")
    for argv in (["init"], ["import", f"plan/{SESSION}/tasks.json", "--session", SESSION]):
        done = subprocess.run([evstore_bin(), *argv], cwd=root, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr
    return root


def updates() -> bytes:
    ids = ("P1", "P1.M1", "P1.M1.T1", "P1.M1.T1.S1")
    return b"".join(orjson.dumps({"item_id": ids[n % 4], "status": "Complete"}) + b"\n"
                    for n in range(UPDATES))


def append_on_tty(project: Path, data: bytes, *, from_file: bool) -> tuple[int, str, str]:
    """(exit code, stdout, what the terminal on stderr saw) of `append --jsonl -`, stdin a
    pipe fed `data` (or the file holding it)."""
    source = project / "u.jsonl"
    source.write_bytes(data)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("EVSTORE_DB", "TTY_COMPATIBLE")}
    env.update(TERM="xterm-256color", EVSTORE_PROGRESS_AFTER="0")
    with source.open("rb") as file:
        try:
            proc = subprocess.Popen(
                [evstore_bin(), "append", "-s", SESSION, "--jsonl", "-"], cwd=project, env=env,
                stdin=file if from_file else subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave,
            )
        finally:
            os.close(slave)
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child's end is closed
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=drain)
        reader.start()
        try:
            out, _ = proc.communicate(None if from_file else data, timeout=60)
        finally:
            reader.join(timeout=60)
            os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("from_file", [False, True], ids=["pipe", "file"])
def test_the_bar_parses_then_appends_with_or_without_a_known_total(
    project: Path, *, from_file: bool
) -> None:
    code, out, terminal = append_on_tty(project, updates(), from_file=from_file)
    assert code == 0, terminal
    assert out.startswith(f"appended {UPDATES} event(s) to {SESSION} in one transaction")
    assert "parsing <stdin>" in terminal
    assert f"appending {UPDATES:,} event(s) to {SESSION}" in terminal
    assert BAR in terminal
    assert "100%" in terminal  # the insert's part always knows its total
