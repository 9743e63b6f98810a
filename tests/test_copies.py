"""Copies that never overwrite (docs/design.md §5, §14): a hard link where the file system
allows, else a byte copy through the atomic writer's own loop (temp file, fsync, rename)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from eventstore.atomic import keep_copy, move_aside


def no_hard_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without hard links (vfat, some network mounts): link(2) says EPERM."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)


def edited(tmp_path: Path) -> Path:
    src = tmp_path / "tasks.json"
    src.write_bytes(b'{"backlog": ["edited by hand"]}')
    src.chmod(0o640)
    os.utime(src, ns=(1_700_000_000_123_456_789, 1_700_000_001_987_654_321))
    return src


def test_a_copy_is_a_hard_link_where_the_file_system_allows(tmp_path: Path) -> None:
    src = edited(tmp_path)
    copy = keep_copy(src, tmp_path, "tasks.json.drift-x")
    assert copy.stat().st_ino == src.stat().st_ino


def test_without_hard_links_the_copy_keeps_bytes_mode_and_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = edited(tmp_path)
    no_hard_links(monkeypatch)
    copy = keep_copy(src, tmp_path, "tasks.json.drift-x")
    assert copy.stat().st_ino != src.stat().st_ino
    assert copy.read_bytes() == src.read_bytes()
    assert copy.stat().st_mode & 0o777 == 0o640
    assert copy.stat().st_mtime_ns == src.stat().st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.json", "tasks.json.drift-x"]


def test_without_hard_links_a_taken_name_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = edited(tmp_path)
    (tmp_path / "tasks.json.drift-x").write_bytes(b"someone's")
    no_hard_links(monkeypatch)
    copy = keep_copy(src, tmp_path, "tasks.json.drift-x")
    assert copy.name == "tasks.json.drift-x.1"
    assert (tmp_path / "tasks.json.drift-x").read_bytes() == b"someone's"
    assert copy.read_bytes() == src.read_bytes()


def test_a_copy_that_fails_leaves_neither_a_placeholder_nor_a_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = edited(tmp_path)
    no_hard_links(monkeypatch)

    def fail(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="Input/output error"):
        keep_copy(src, tmp_path, "tasks.json.drift-x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.json"]


def test_a_move_is_a_copy_then_an_unlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = edited(tmp_path)
    data = src.read_bytes()
    no_hard_links(monkeypatch)
    moved = move_aside(src, tmp_path / "lost+found")
    assert not src.exists()
    assert moved == tmp_path / "lost+found" / "tasks.json"
    assert moved.read_bytes() == data
