"""Is the process that owns a batch still running? By pid, host and start time.

A pid alone is not enough: pids are reused, and a batch whose orchestrator died must not
be refused because an unrelated process now has its number. Where the platform tells a
process's start time (Linux: field 22 of /proc/PID/stat, clock ticks after boot), the
owner is the process with that pid *and* that start time.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def this_host() -> str:
    return socket.gethostname()


def start_ticks(pid: int) -> int | None:
    """The start time of `pid` in clock ticks after boot, or None where unknown."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def is_alive(pid: int, start: int | None = None) -> bool:
    """Whether `pid` runs on this host and, when `start` is given, is the same process."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc: the signal check is all there is
    if fields[0] == "Z":
        return False  # a zombie has exited; only its parent has not reaped it
    return start is None or int(fields[19]) == start


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    # The list starts at field 3 (state), so field 22 (starttime) is at index 19.
    return raw[raw.rindex(")") + 2 :].split()
