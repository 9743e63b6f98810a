"""Write a file so readers see the old bytes or the new ones, never a mix (docs/design.md §6)."""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from typing import TypeAlias

    # A file's bytes: whole, or as parts written one after another. A big file patched in
    # a few places is written from its parts, never joined into a second copy first.
    Content: TypeAlias = bytes | Sequence[bytes | memoryview]

FILE_MODE = 0o644


def temp_name(target: Path) -> Path:
    # Hidden, in the same directory (so the rename stays on one file system), and
    # recognisable by `doctor` as ours: .<name>.<16 hex>.tmp
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")


def write_atomic(target: Path, data: Content) -> None:
    """Temp file (exclusive) → write → fsync → rename over target → fsync the directory.

    On any failure the temp file is removed and the target is untouched; the error
    propagates unchanged so the caller can classify it by errno.
    """
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask must not decide who can read a projection
            for part in (data,) if isinstance(data, bytes) else data:
                view = memoryview(part)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(target.parent)


def remove_atomic(target: Path) -> bool:
    """Remove `target` durably; return False when it was already gone."""
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    fsync_directory(target.parent)
    return True


def fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable: without it a power cut can bring the old name back.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
