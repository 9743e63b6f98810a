"""Shared fixtures: real journals in temporary directories, the real fixtures, the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support import (  # noqa: F401 - re-exported for tests that import conftest
    FIXTURES,
    HACKY,
    INITIAL,
    MIXED,
    SESSION,
    TASKS_FILES,
    evstore_bin,
    seed,
    snapshot,
)

from cli.app import app
from eventstore import Store
from projections import DEFAULT


@pytest.fixture(scope="session")
def history_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 84 committed versions of one real tasks.json, unpacked once per run."""
    target = tmp_path_factory.mktemp("history")
    with tarfile.open(HACKY / "history-001_14b9dc2a33c7.tar.xz") as archive:
        archive.extractall(target, filter="data")
    return target / SESSION


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with a PRP-style plan/<session>/tasks.json, as the working dir."""
    plan = tmp_path / "plan" / SESSION
    plan.mkdir(parents=True)
    shutil.copyfile(INITIAL, plan / "tasks.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVSTORE_DB", raising=False)
    monkeypatch.delenv("EVSTORE_FLUSH_RETRIES", raising=False)
    return tmp_path


@pytest.fixture
def store(project_dir: Path) -> Iterator[Store]:
    """A real journal file, with the initial real backlog imported as session SESSION."""
    with Store.open(project_dir / ".evstore" / "journal.db", projections=DEFAULT, create=True) as s:
        seed(s, SESSION, INITIAL, f"plan/{SESSION}")
        yield s


@pytest.fixture
def cli(project_dir: Path) -> Callable[..., Result]:
    """Run the click app in-process (CliRunner), stderr kept apart from stdout."""
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None) -> Result:  # noqa: A002
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `evstore` command in a subprocess."""
    binary = evstore_bin()

    def invoke(*args: str, cwd: Path | None = None, input: str | None = None,  # noqa: A002
               env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("EVSTORE_DB", None) if env is None or "EVSTORE_DB" not in env else None
        return subprocess.run(  # noqa: S603
            [binary, *args], cwd=cwd, input=input, env=full_env, capture_output=True,
            text=True, timeout=timeout, check=False,
        )

    return invoke




@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts and ends with structlog unconfigured: a CLI run configures it
    (level filter included) for the rest of the process, which capture_logs keeps."""
    import structlog

    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[Any]]]:
    """Every long-lived child a test starts; any left alive at teardown is killed and reaped."""
    started: list[subprocess.Popen[Any]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[object]:
    """In CI (CI=true) a `faults`, `browser` or `mcp` test may not skip: the machine CI runs
    on can make real faults (root, mounts, libfiu), has Chromium (.ci/run installs it) and
    the [mcp] extra (make test installs it), so a skip there means something went unproven."""
    report = yield
    marker = (item.get_closest_marker("faults") or item.get_closest_marker("browser")
              or item.get_closest_marker("mcp"))
    if os.environ.get("CI") == "true" and report.skipped and marker:  # type: ignore[attr-defined]
        report.outcome = "failed"  # type: ignore[attr-defined]
        report.longrepr = f"a {marker.name} test skipped in CI, which must run it: {report.longrepr}"  # type: ignore[attr-defined]
    return report
