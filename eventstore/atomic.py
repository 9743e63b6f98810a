"""Files written so that nothing is half-written or lost (docs/design.md §5, §6).

`write_atomic` replaces a file so readers see the old bytes or the new ones, never a mix.
`keep_copy` and `move_aside` keep a file's bytes under another name without ever
overwriting one: a projection edited by hand (`<name>.drift-<UTC time>`, kept beside it by
every export and by `doctor --fix`) and files `doctor` moves into lost+found. Both write
through the one loop below: temp file, write, fsync, rename, fsync the directory.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import TypeAlias

    # A file's bytes: whole, or as parts written one after another. A big file patched in
    # a few places is written from its parts, never joined into a second copy first.
    Content: TypeAlias = bytes | Sequence[bytes | memoryview]

FILE_MODE = 0o644
DRIFT_TIME = "%Y%m%dT%H%M%SZ"


def temp_name(target: Path) -> Path:
    # Hidden, in the same directory (so the rename stays on one file system), and
    # recognisable by `doctor` as ours: .<name>.<16 hex>.tmp
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")


def write_atomic(target: Path, data: Content) -> None:
    """Temp file (exclusive) → write → fsync → rename over target → fsync the directory.

    On any failure the temp file is removed and the target is untouched; the error
    propagates unchanged so the caller can classify it by errno.
    """
    _write_and_rename(target, data, FILE_MODE)
    fsync_directory(target.parent)


def _write_and_rename(
    target: Path, data: Content, mode: int, times_ns: tuple[int, int] | None = None
) -> None:
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask must not decide who can read the file
            for part in (data,) if isinstance(data, bytes) else data:
                view = memoryview(part)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if times_ns is not None:
            os.utime(tmp, ns=times_ns)  # before the rename: the file appears as it will stay
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


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


# --- copies that never overwrite ----------------------------------------------------------------


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
        # The exclusive create claims the name (FileExistsError when taken), so the rename
        # that follows replaces only this empty placeholder of ours, never someone's file.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        try:
            _write_and_rename(target, data, info.st_mode & 0o777,
                              times_ns=(info.st_atime_ns, info.st_mtime_ns))
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()  # our own placeholder; the original is untouched
            raise
