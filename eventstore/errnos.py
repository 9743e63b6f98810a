"""Which OS errors are worth retrying (docs/design.md §6).

A retry only helps when the cause can go away by itself: a busy file, an interrupted
call, a transient I/O error, a full system file table. A full disk, a missing directory,
a permission problem, a read-only file system or this process's own descriptor limit
will be the same a second later, so they fail fast and the user is told at once.
"""

from __future__ import annotations

import errno

RETRYABLE_ERRNOS: frozenset[int] = frozenset(
    {errno.EBUSY, errno.EAGAIN, errno.EIO, errno.ENFILE, errno.EINTR, errno.ETIMEDOUT}
)
FAIL_FAST_ERRNOS: frozenset[int] = frozenset(
    {
        errno.ENOSPC,
        errno.ENOENT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EMFILE,
        errno.EDQUOT,
    }
)


def is_retryable(exc: BaseException) -> bool:
    """True for an OSError whose errno is known to be transient; unknown errors fail fast."""
    return isinstance(exc, OSError) and exc.errno in RETRYABLE_ERRNOS


def errno_name(exc: BaseException) -> str | None:
    code = getattr(exc, "errno", None)
    if not isinstance(code, int):
        return None
    return errno.errorcode.get(code, str(code))

