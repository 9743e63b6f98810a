"""A real PostgreSQL server for the tests, started once per test session.

Import the fixtures into a test module (`from pgserver import pg_server, pg_url`):

- `pg_server` (session): a throw-away cluster: `initdb` into a fresh directory under
  /tmp (owned by the `postgres` user when the tests run as root, as initdb refuses
  root), `pg_ctl start` on a free port with a Unix socket only (no TCP), stopped and
  removed at the end. Tuned for tests, not for durability: fsync off.
- `pg_url`: a fresh database per test (CREATE DATABASE), dropped afterwards; the URL
  reaches it over the socket: `postgresql://postgres@/NAME?host=SOCKDIR&port=PORT`.

Skips with the reason when psycopg or the server binaries are missing. Knobs:
`EVSTORE_TEST_PG_URL` uses a running server instead (a URL of a database whose user
may CREATE DATABASE); `EVSTORE_PG_BIN` names the directory of initdb/pg_ctl;
`EVSTORE_REQUIRE_PG=1` (CI) turns every skip into a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

SUPERUSER = "postgres"
# Stops the server and removes its directory once the test process is gone, however it
# went (a SIGKILLed or timed-out pytest never runs its fixtures' teardown).
_REAPER = r"""
import os, shutil, subprocess, sys, time
parent, root, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
if os.path.isdir(root):
    subprocess.run(stop, capture_output=True, timeout=120, check=False)
    shutil.rmtree(root, ignore_errors=True)
"""
_STARTED: dict[str, PgServer] = {}
_GUARD = threading.Lock()


def _unavailable(reason: str) -> None:
    if os.environ.get("EVSTORE_REQUIRE_PG") == "1":
        pytest.fail(f"PostgreSQL tests are required here (EVSTORE_REQUIRE_PG=1) but: {reason}")
    pytest.skip(reason)


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl are: EVSTORE_PG_BIN, Debian's /usr/lib/postgresql/N/bin
    (newest), `pg_config --bindir`, or PATH."""
    candidates: list[Path] = []
    if os.environ.get("EVSTORE_PG_BIN"):
        candidates.append(Path(os.environ["EVSTORE_PG_BIN"]))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates += [Path(p) for p in reversed(debian)]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running server: `url(db)` builds URLs for it; `admin(sql)` runs SQL as superuser."""

    base_url: str  # a URL of the maintenance database, as the superuser
    bindir: Path | None = None
    root: Path | None = None
    port: int | None = None
    durable: bool = False  # False: fsync off, for tests; True: the server's defaults (bench)
    _as_postgres: bool = field(default=False, repr=False)
    _reaper: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        assert self.root is not None
        return self.root / "sock"

    def url(self, dbname: str, *, user: str | None = None, password: str | None = None) -> str:
        """The URL of database `dbname` on this server (user and password replaced if given)."""
        parts = urlsplit(self.base_url)
        netloc = parts.netloc
        if user is not None or password is not None:
            userinfo, _, host = netloc.rpartition("@")
            name = user if user is not None else userinfo.split(":", 1)[0]
            netloc = f"{quote(name)}{':' + quote(password) if password else ''}@{host}"
        return urlunsplit((parts.scheme, netloc, "/" + dbname, parts.query, ""))

    def admin(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(self.base_url, autocommit=True) as conn:
            cur = conn.execute(sql, params or None)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def create_database(self) -> str:
        name = f"evstore_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # --- a server of our own ------------------------------------------------------------

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", SUPERUSER, "--", *args] if self._as_postgres else list(args)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._command(*args), capture_output=True, text=True, timeout=120,
                              check=False)

    def pg_ctl(self, action: str) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None and self.port is not None
        options = f"-p {self.port} -k {self.sockdir} -c listen_addresses='' -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        args = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60"]
        if action == "start":
            args += ["-l", str(self.root / "server.log"), "-o", options]  # type: ignore[operator]
        elif action == "stop":
            args += ["-m", "fast"]
        return self._run(*args, action)

    def stop(self) -> None:
        if self.bindir is not None and self.datadir.exists():
            self.pg_ctl("stop")

    def start(self) -> None:
        result = self.pg_ctl("start")
        if result.returncode != 0:
            log = (self.root / "server.log") if self.root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            msg = f"pg_ctl start failed: {result.stderr.strip()} {tail}"
            raise RuntimeError(msg)

    def watch_parent(self) -> None:
        """Leave a reaper behind: if this process dies without remove(), the server is
        stopped and its directory removed all the same."""
        assert self.bindir is not None and self.root is not None
        stop = self._command(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m",
                             "immediate", "-w", "stop")
        self._reaper = subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", _REAPER, str(os.getpid()), str(self.root), *stop],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def remove(self) -> None:
        self.stop()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
            self._reaper = None


def start_server(*, durable: bool = False) -> PgServer:
    """initdb + pg_ctl start in a fresh /tmp directory; raises RuntimeError with why not.
    `durable`: keep the server's fsync (benchmarks); tests run with fsync off."""
    bindir = find_bindir()
    if bindir is None:
        msg = ("PostgreSQL server binaries (initdb, pg_ctl) not found: install the server "
               "(Debian: apt-get install postgresql), or set EVSTORE_PG_BIN to their directory "
               "or EVSTORE_TEST_PG_URL to a running server")
        raise FileNotFoundError(msg)
    as_postgres = os.geteuid() == 0
    if as_postgres:
        try:
            account = pwd.getpwnam(SUPERUSER)
        except KeyError:
            msg = "running as root, but there is no `postgres` user to run initdb as"
            raise FileNotFoundError(msg) from None
        if shutil.which("runuser") is None:
            msg = "running as root, but runuser (util-linux) is missing"
            raise FileNotFoundError(msg)
    # Not under pytest's tmp dir: that is private to root (0700), and the server runs
    # as postgres. The socket path must also stay short (108 bytes at most).
    root = Path(tempfile.mkdtemp(prefix="evstore-pg-", dir="/tmp"))
    (root / "data").mkdir()
    (root / "sock").mkdir()
    if as_postgres:
        for path in (root, root / "data", root / "sock"):
            os.chown(path, account.pw_uid, account.pw_gid)
    server = PgServer(base_url="", bindir=bindir, root=root, port=free_port(), durable=durable,
                      _as_postgres=as_postgres)
    init = server._run(str(bindir / "initdb"), "-D", str(server.datadir), "-A", "trust",  # noqa: SLF001
                       "-U", SUPERUSER, "-E", "UTF8", *([] if durable else ["--no-sync"]))
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        msg = f"initdb failed: {init.stderr.strip()[-2000:]}"
        raise RuntimeError(msg)
    try:
        server.start()
    except RuntimeError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    server.watch_parent()
    server.base_url = f"postgresql://{SUPERUSER}@/postgres?host={quote(str(server.sockdir), safe='/')}&port={server.port}"
    return server


def shared_server() -> PgServer:
    """The one server of this test process (started on first use)."""
    try:
        import psycopg  # noqa: F401, PLC0415
    except ImportError:
        _unavailable("psycopg is not installed: pip install -e '.[postgres]'")
    with _GUARD:
        if "server" not in _STARTED:
            external = os.environ.get("EVSTORE_TEST_PG_URL")
            if external:
                _STARTED["server"] = PgServer(base_url=external)
            else:
                try:
                    _STARTED["server"] = start_server()
                except (FileNotFoundError, RuntimeError) as exc:
                    _STARTED["error"] = exc  # type: ignore[assignment]
                    _unavailable(str(exc))
        return _STARTED["server"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    if "error" in _STARTED:
        _unavailable(str(_STARTED["error"]))
    server = shared_server()
    yield server
    with _GUARD:
        if _STARTED.pop("server", None) is not None and server.root is not None:
            server.remove()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)
