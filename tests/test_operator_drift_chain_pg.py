"""Operator-proof on PostgreSQL (issue 11, item 16), against a real server.

- `evstore watch` outlives the server being down: it keeps trying with backoff, each
  attempt logged, and exports what was appended once the server is back.
- Two hosts on one database, each exporting to its own directory: host B's file that is
  merely behind host A's export is stale, not drift: no `.drift-` copy, no drift warning.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import INITIAL, SESSION, evstore_bin
from test_watch import json_logs, ok, status_of, wait_for

pytest_plugins = ["pgserver"]  # the pg_server / pg_url fixtures

Run = Callable[..., subprocess.CompletedProcess[str]]

TASKS = Path("plan") / SESSION / "tasks.json"


@pytest.fixture
def own_server() -> Iterator[Any]:
    """A server of this test's own: stopping it must not disturb other tests."""
    from pgserver import start_server  # noqa: PLC0415 - after pytest registered the plugin

    try:
        server = start_server()
    except (FileNotFoundError, RuntimeError) as exc:
        if os.environ.get("EVSTORE_REQUIRE_PG") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.remove()


def test_watch_keeps_retrying_while_the_server_is_down(
    own_server: Any, project_dir: Path, run: Run, procs: list[subprocess.Popen[Any]],
    tmp_path: Path,
) -> None:
    url = own_server.url(own_server.create_database())
    ok(run("--db", url, "init"))
    ok(run("--db", url, "import", str(TASKS), "--session", SESSION))
    log = tmp_path / "watch.log"
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}
    proc = subprocess.Popen(  # noqa: S603
        [evstore_bin(), "--db", url, "--log-format", "json", "-v", "watch", "--interval", "50"],
        cwd=project_dir, env=env, text=True, stdout=subprocess.PIPE, stderr=log.open("w"),
    )
    procs.append(proc)
    wait_for(lambda: any(e["event"] == "watch_started" for e in json_logs(log)), "the watch")

    own_server.stop()
    down_until = time.monotonic() + 5  # longer than the journal's own retries (~3 s)
    wait_for(lambda: any(e["event"] == "watch_journal_unavailable" for e in json_logs(log)),
             "the first attempt logged")
    while time.monotonic() < down_until:
        assert proc.poll() is None, f"watch exited {proc.returncode} while the server was down"
        time.sleep(0.1)
    own_server.start()
    ok(run("--db", url, "append", "--session", SESSION, "P1.M1.T1.S1", "Complete"))
    wait_for(lambda: status_of(project_dir / TASKS, "P1.M1.T1.S1") == "Complete",
             "the export once the server is back")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0

    attempts = [e for e in json_logs(log) if e["event"] == "watch_journal_unavailable"]
    assert [e["attempt"] for e in attempts] == list(range(1, len(attempts) + 1))
    assert all(e["level"] == "warning" and e["delay_ms"] > 0 and e["error"] for e in attempts)
    delays = [e["delay_ms"] for e in attempts]
    assert delays == sorted(delays)  # backoff, capped
    assert any(e["event"] == "watch_journal_back" for e in json_logs(log))


def test_a_host_merely_behind_another_is_stale_not_drift(
    pg_url: str, tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVSTORE_DB", raising=False)
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    for host in (host_a, host_b):
        (host / ".evstore").mkdir(parents=True)  # each host's project root
    (host_a / TASKS).parent.mkdir(parents=True)
    shutil.copyfile(INITIAL, host_a / TASKS)

    def on(host: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return run("--db", pg_url, *args, cwd=host)

    ok(on(host_a, "init"))
    ok(on(host_a, "import", str(TASKS), "--session", SESSION))
    ok(on(host_a, "project"))
    ok(on(host_b, "project"))  # B's file: the journal at seq 2
    ok(on(host_a, "append", "--session", SESSION, "P1.M1.T1.S1", "Complete"))
    ok(on(host_a, "project"))  # the shared checkpoint moves on without B

    checked = on(host_b, "doctor", "--json")
    problems = json.loads(checked.stdout)["problems"]
    assert [p["code"] for p in problems] == ["PROJECTION_STALE"], checked.stdout
    assert "it holds an earlier export" in problems[0]["message"]
    for _ in range(2):
        fixed = on(host_b, "doctor", "--fix")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        ok(on(host_a, "append", "--session", SESSION, "P1.M1.T1.S2", "Complete"))
        ok(on(host_a, "project"))
        projected = ok(on(host_b, "project"))
        assert "projection_drift_overwritten" not in projected.stderr
    assert list((host_b / TASKS).parent.glob("tasks.json.drift-*")) == []
    assert status_of(host_b / TASKS, "P1.M1.T1.S2") == "Complete"
