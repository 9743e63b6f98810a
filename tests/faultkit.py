"""Helpers for tests that inject real faults into the real `evstore` command.

libfiu (`fiu-run -x`) preloads a library that makes chosen libc calls fail with a chosen
errno before they reach the kernel; `setpriv` drops root's capabilities for real EACCES;
`prlimit` lowers the descriptor limit for real EMFILE; `strace` (optional) watches the
system calls that did reach the kernel. Nothing inside evstore is patched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from support import evstore_bin

if TYPE_CHECKING:
    from pathlib import Path

RENAME = "posix/io/dir/rename"  # rename(2): os.replace; SQLite never renames
FSYNC = "posix/io/sync/fsync"  # fsync(2): write_atomic and fsync_directory; SQLite uses fdatasync
FDATASYNC = "posix/io/sync/fdatasync"  # SQLite's unix VFS syncs its WAL with fdatasync
PWRITE = "posix/io/rw/pwrite"  # pwrite/pwrite64: SQLite's unix VFS writes pages and WAL frames

# Capabilities that let root ignore file modes; without them root gets a real EACCES.
DROP_DAC = ("--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search")


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root: {why}")


def require_tool(name: str, why: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"needs `{name}` on PATH ({why})")
    return found


def fiu_prefix(point: str, code: int, *, onetime: bool = False) -> list[str]:
    """`fiu-run` arming `point` to fail with errno `code` (every call, or only the first)."""
    fiu_run = require_tool("fiu-run", "libfiu's fiu-utils: injects errors into libc calls")
    command = f"enable name={point},failinfo={code}" + (",onetime" if onetime else "")
    # -f "": no remote-control FIFOs left behind in /tmp.
    return [fiu_run, "-x", "-f", "", "-c", command]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EVSTORE_DB", "EVSTORE_FLUSH_RETRIES")}
    env.update(extra or {})
    return env


def evstore(
    *args: str,
    prefix: list[str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,  # noqa: A002
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The real `evstore` console script, optionally under a wrapper (fiu-run, setpriv...)."""
    return subprocess.run(
        [*(prefix or []), evstore_bin(), *args],
        cwd=cwd, input=input, env=child_env(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def python_under(
    prefix: list[str], code: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """This interpreter under the same wrapper: proves the fault is real before evstore meets it."""
    return subprocess.run(
        [*prefix, sys.executable, "-c", code, *args],
        cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=60, check=False,
    )


# --- what the command said ------------------------------------------------------------------


def json_logs(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def events_named(stderr: str, name: str) -> list[dict[str, Any]]:
    return [e for e in json_logs(stderr) if e.get("event") == name]


def human_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line and not line.startswith("{")]


def tmp_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(".tasks.json.*.tmp"))


# --- what reached the kernel (strace) -------------------------------------------------------

STRACE_CALLS = (
    "openat,open,creat,write,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,close"
)
_TEMP = re.compile(r"\.tasks\.json\.[0-9a-f]{16}\.tmp")
_CALL = re.compile(r"^\d+\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)")


def strace_usable() -> str | None:
    """strace's path when it can trace here (ptrace may be forbidden in a container)."""
    found = shutil.which("strace")
    if found is None:
        return None
    probe = subprocess.run(
        [found, "-qq", "-e", "trace=none", "true"], capture_output=True, check=False, timeout=30
    )
    return found if probe.returncode == 0 else None


def strace_prefix(strace: str, out: Path) -> list[str]:
    # -f follows fiu-run's exec into evstore; -y names each descriptor's file.
    return [strace, "-f", "-qq", "-y", "-s", "0", "-o", str(out), "-e", f"trace={STRACE_CALLS}"]


@dataclass
class TempFile:
    """Every traced call that named one temp file (by path or by annotated descriptor)."""

    name: str
    calls: list[str] = field(default_factory=list)
    bytes_written: int = 0


def temp_file_calls(trace: Path) -> tuple[list[TempFile], list[str]]:
    """(per temp file, in creation order: its successful calls) and every rename call seen.

    Calls that libfiu failed never reach the kernel, so they are absent here.
    """
    files: dict[str, TempFile] = {}
    renames: list[str] = []
    for line in trace.read_text().splitlines():
        match = _CALL.match(line)
        if match is None:
            continue
        call, args, ret = match["call"], match["args"], int(match["ret"])
        if call.startswith("rename") and "tasks.json" in args:
            renames.append(line)
        name = _TEMP.search(args)
        if name is None or ret < 0:
            continue
        entry = files.setdefault(name[0], TempFile(name[0]))
        kind = "open" if call in ("openat", "open", "creat") else call
        if kind == "open" and "O_EXCL" not in args:
            kind = "open-not-exclusive"
        if kind == "write":
            entry.bytes_written += ret
        if not entry.calls or entry.calls[-1] != kind:  # one write(2) loop is one step
            entry.calls.append(kind)
    return list(files.values()), renames


# --- small probes -------------------------------------------------------------------------


def errno_of_probe(result: subprocess.CompletedProcess[str]) -> str:
    """The probes print the errno name they hit, or OK."""
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


PROBE_RENAME = (
    "import os, errno, sys\n"
    "open(sys.argv[1], 'w').close()\n"
    "try:\n    os.replace(sys.argv[1], sys.argv[1] + '.2')\nexcept OSError as e:\n"
    "    print(errno.errorcode[e.errno]); os.unlink(sys.argv[1])\n"
    "else:\n    print('OK'); os.unlink(sys.argv[1] + '.2')\n"
)

PROBE_CREATE = (
    "import os, errno, sys\n"
    "try:\n    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)\n"
    "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
    "else:\n    os.close(fd); os.unlink(sys.argv[1]); print('OK')\n"
)

