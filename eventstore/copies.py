"""Keep a file's bytes under another name without ever overwriting one (docs/design.md §5).

Used for what evstore must not lose: a projection edited by hand (`<name>.drift-<UTC
time>`, kept beside it by every export and by `doctor --fix`) and files `doctor` moves
into lost+found.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventstore.atomic import fsync_directory

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

DRIFT_TIME = "%Y%m%dT%H%M%SZ"


def drift_name(target: Path, moment: datetime) -> str:
    """`tasks.json.drift-20261122T023000Z` for `moment` (UTC)."""
    return f"{target.name}.drift-{moment.astimezone(UTC).strftime(DRIFT_TIME)}"


def keep_copy(
    src: Path, directory: Path, name: str, *, refuse: Callable[[Path], None] | None = None
) -> Path:
    """A copy of `src` as `directory/name` (`name.1`, `name.2`, ... when taken); never
    overwrites. A hard link where the file system allows (same bytes, times and mode, no
    copying), else a byte copy with the same mode and times. `refuse(target)` may raise
    to keep a target free that must not gain a file (the journal's `-wal`, say)."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        target = directory / (name if n == 0 else f"{name}.{n}")
        if refuse is not None:
            refuse(target)
        try:
            _link_or_copy(src, target)
        except FileExistsError:
            continue
        fsync_directory(directory)
        return target
    raise AssertionError("unreachable")  # pragma: no cover


def move_aside(
    src: Path, directory: Path, *, refuse: Callable[[Path], None] | None = None
) -> Path:
    """Move `src` into `directory` under its own name (a suffix when taken): a copy first,
    then the original is unlinked, so a crash in between leaves two copies, never none."""
    target = keep_copy(src, directory, src.name, refuse=refuse)
    src.unlink()
    fsync_directory(src.parent)
    return target


def _link_or_copy(src: Path, target: Path) -> None:
    try:
        os.link(src, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links here: copy
        info = src.stat()
        data = src.read_bytes()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        fd = os.open(target, flags, info.st_mode & 0o777)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()  # our own partial copy; the original is untouched
            raise
