"""Progress bars: drawn on stderr when it is a terminal, never anywhere else.

The CLI tests run the real `evstore` with stderr on a real pseudo-terminal (stdout stays a
pipe, as in `evstore ... | jq`) and read what a person would see; then the same command
with stderr a pipe, which must get nothing and print the same stdout. EVSTORE_PROGRESS_AFTER=0
draws the bar at once, so the workloads stay small; the default half second is checked
with a delay the work cannot reach.
"""

from __future__ import annotations

import ast
import copy
import fcntl
import io
import json
import os
import re
import shutil
import struct
import subprocess
import termios
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import INITIAL, SESSION, evstore_bin, imports_of, seed

from cli.progress import DEFAULT_AFTER_S, after_seconds
from eventstore import Store
from eventstore.jsonl import read_jsonl
from eventstore.progress import reporting, shares, span
from projections import DEFAULT
from projections.doctor import Doctor

pytest_plugins = ["pgserver"]  # pg_url: a fresh database on a throwaway server (or a skip)

ROOT = Path(__file__).parent.parent
BAR = "━"  # rich's bar


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


UNSET = ("EVSTORE_DB", "EVSTORE_PROGRESS_AFTER", "TTY_INTERACTIVE", "TTY_COMPATIBLE")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    return {**env, "TERM": "xterm-256color", **extra}


def on_tty(*args: str, cwd: Path, after: str | None = "0") -> Run:
    """`evstore ARGS` with stderr on a pseudo-terminal (120 columns), stdout a pipe."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = _env(**({"EVSTORE_PROGRESS_AFTER": after} if after is not None else {}))
    try:
        proc = subprocess.Popen(
            [evstore_bin(), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=slave,
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # the terminal's side: everything written to it, until it closes
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child's end is closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        reader.join(timeout=60)
        os.close(master)
    return Run(proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace"))


def on_pipes(*args: str, cwd: Path, after: str = "0") -> Run:
    """`evstore ARGS` with stdout and stderr pipes (a bar would be drawn at once if wanted)."""
    done = subprocess.run(
        [evstore_bin(), *args], cwd=cwd, env=_env(EVSTORE_PROGRESS_AFTER=after),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def item_ids(doc: dict[str, Any]) -> list[str]:
    found: list[str] = []
    stack = list(reversed(doc["backlog"]))
    while stack:
        item = stack.pop()
        found.append(item["id"])
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(reversed(item.get(key, [])))
    return found


def write_updates(path: Path, count: int) -> Path:
    ids = item_ids(json.loads(INITIAL.read_bytes()))
    statuses = ["Implementing", "Complete", "Ready", "Planned"]
    lines = (json.dumps({"item_id": ids[i % len(ids)], "status": statuses[i % 4]})
             for i in range(count))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def seeded(project_dir: Path) -> Path:
    """A project with the real backlog imported as SESSION (what `evstore import` does)."""
    db = project_dir / ".evstore" / "journal.db"
    with Store.open(db, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
    return project_dir


@pytest.fixture
def journal(seeded: Path) -> Path:
    """Then 5,000 status changes: a session worth a bar."""
    updates = write_updates(seeded / "updates.jsonl", 5000)
    assert on_pipes("append", "-s", SESSION, "--jsonl", str(updates), cwd=seeded).returncode == 0
    updates.unlink()
    return seeded


def drawn(stderr: str, description: str) -> bool:
    """The bar was on the terminal: its description, rich's bar, and the end reached."""
    return description in stderr and BAR in stderr and "100%" in stderr


# --- the real command on a real terminal ---------------------------------------------------------


def test_replay_draws_a_bar_on_a_terminal_only(journal: Path) -> None:
    tty = on_tty("replay", cwd=journal)
    assert tty.returncode == 0
    assert drawn(tty.stderr, "replaying every session"), tty.stderr
    assert "\x1b[?25h" in tty.stderr  # the cursor is given back
    piped = on_pipes("replay", cwd=journal)
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert piped.stdout == tty.stdout
    path = journal / "plan" / SESSION / "tasks.json"
    assert tty.stdout == f"{SESSION}: {path} written (seq 5002, +5002 event(s))\n"


def test_replay_json_output_is_identical_with_a_bar(journal: Path) -> None:
    tty = on_tty("replay", "--session", SESSION, "--json", cwd=journal)
    piped = on_pipes("replay", "--session", SESSION, "--json", cwd=journal)
    assert drawn(tty.stderr, f"replaying {SESSION}"), tty.stderr
    assert piped.stderr == ""
    assert tty.stdout == piped.stdout
    assert json.loads(tty.stdout)[0]["events_applied"] == 5002


def test_project_and_report_draw_a_bar_on_a_terminal_only(journal: Path) -> None:
    """`project` folds the 5,000 new events; `report` reads them: each draws its bar on a
    terminal and prints the same stdout as on pipes (the page's bytes aside: it holds
    the time it was made)."""
    tty = on_tty("project", "--json", cwd=journal)
    assert drawn(tty.stderr, "projecting every session"), tty.stderr
    (journal / "plan" / SESSION / "tasks.json").unlink()  # so the piped run exports again
    piped = on_pipes("project", "--json", cwd=journal)
    assert piped.stderr == ""
    assert [r["action"] for r in json.loads(tty.stdout)] == [r["action"] for r in json.loads(piped.stdout)]
    tty = on_tty("report", "-o", "tty.html", cwd=journal)
    assert drawn(tty.stderr, "reading the journal"), tty.stderr
    piped = on_pipes("report", "-o", "piped.html", cwd=journal)
    assert piped.stderr == ""
    def sizeless(out: str) -> str:  # held times in the page depend on when it was made
        return re.sub(r"\(\d+ KiB", "(N KiB", out)

    assert sizeless(tty.stdout.replace("tty.html", "piped.html")) == sizeless(piped.stdout)
    assert tty.stdout.startswith("wrote tty.html (")


def test_append_jsonl_draws_parsing_then_appending(
    seeded: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    project_dir = seeded
    write_updates(project_dir / "updates.jsonl", 5000)
    before = tmp_path_factory.mktemp("before") / "project"
    shutil.copytree(project_dir, before)

    tty = on_tty("append", "-s", SESSION, "--jsonl", "updates.jsonl", cwd=project_dir)
    assert tty.returncode == 0, tty.stderr
    assert "parsing updates.jsonl" in tty.stderr, tty.stderr
    assert drawn(tty.stderr, f"appending 5,000 event(s) to {SESSION}"), tty.stderr

    shutil.rmtree(project_dir)  # the same project, at the same path, as before the append
    shutil.copytree(before, project_dir)
    piped = on_pipes("append", "-s", SESSION, "--jsonl", "updates.jsonl", cwd=project_dir)
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert piped.stdout == tty.stdout
    assert tty.stdout.startswith(f"appended 5000 event(s) to {SESSION} in one transaction "
                                 "(seq 3..5002, version 5002)")


def test_a_bad_line_erases_the_bar_before_the_error(seeded: Path) -> None:
    project_dir = seeded
    updates = write_updates(project_dir / "updates.jsonl", 3000)
    updates.write_text(updates.read_text() + "{not json\n")
    tty = on_tty("append", "-s", SESSION, "--jsonl", "updates.jsonl", cwd=project_dir)
    piped = on_pipes("append", "-s", SESSION, "--jsonl", "updates.jsonl", cwd=project_dir)
    assert tty.returncode == piped.returncode == 2
    assert "parsing updates.jsonl" in tty.stderr
    error = piped.stderr
    assert error.startswith("evstore: error: updates.jsonl:3001: not valid JSON")
    assert tty.stderr.endswith(error.replace("\n", "\r\n"))  # after the bar, whole
    assert tty.stdout == piped.stdout == ""


def big_backlog(copies: int) -> dict[str, Any]:
    """The real backlog's phases, `copies` times over under fresh ids (P1 becomes P101,
    P201, ...: ids in the pipeline's format, so the import has nothing to warn about)."""
    doc = json.loads(INITIAL.read_bytes())
    phases = []
    for n in range(copies):
        for phase in doc["backlog"]:
            clone = copy.deepcopy(phase)
            stack = [clone]
            while stack:
                item = stack.pop()
                phase_number, _, rest = item["id"].partition(".")
                item["id"] = f"P{n * 100 + int(phase_number[1:])}" + (f".{rest}" if rest else "")
                for key in ("milestones", "tasks", "subtasks"):
                    stack.extend(item.get(key, []))
            phases.append(clone)
    return {**doc, "backlog": phases}


def test_import_of_a_large_file_draws_its_steps(
    project_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    doc = big_backlog(10)  # 1,350 items
    path = project_dir / "plan" / SESSION / "tasks.json"
    path.write_text(json.dumps(doc, indent=2))
    assert on_pipes("init", cwd=project_dir).returncode == 0
    assert on_pipes("import", str(path), "-s", SESSION, cwd=project_dir).returncode == 0
    changed = json.loads(path.read_bytes())  # then every item is Complete: many events
    stack = list(changed["backlog"])
    while stack:
        item = stack.pop()
        item["status"] = "Complete"
        for key in ("milestones", "tasks", "subtasks"):
            stack.extend(item.get(key, []))
    update = project_dir / "update.json"
    update.write_text(json.dumps(changed, indent=2))
    before = tmp_path_factory.mktemp("before") / "project"
    shutil.copytree(project_dir, before)

    tty = on_tty("import", "update.json", "-s", SESSION, cwd=project_dir)
    assert tty.returncode == 0, tty.stderr
    # Drawn at once (EVSTORE_PROGRESS_AFTER=0), and as it ends; the steps in between
    # (reading, parsing, comparing) show when they last past a refresh.
    assert "importing update.json" in tty.stderr, tty.stderr
    assert drawn(tty.stderr, f"event(s) to session {SESSION}"), tty.stderr

    shutil.rmtree(project_dir)
    shutil.copytree(before, project_dir)
    piped = on_pipes("import", "update.json", "-s", SESSION, cwd=project_dir)
    assert piped.returncode == 0
    assert piped.stderr == ""
    assert piped.stdout == tty.stdout
    assert tty.stdout.startswith(f"imported update.json into session {SESSION}: ")
    assert int(tty.stdout.split(": ")[1].split()[0]) > 1000


def test_doctor_draws_a_bar_and_reports_the_same(journal: Path) -> None:
    tty = on_tty("doctor", cwd=journal)
    piped = on_pipes("doctor", cwd=journal)
    assert tty.returncode == piped.returncode == 1  # never exported: PROJECTION_STALE
    assert drawn(tty.stderr, "doctor: checking the journal and its files"), tty.stderr
    assert piped.stderr == ""
    assert tty.stdout == piped.stdout
    assert "PROJECTION_STALE" in tty.stdout

    fixed = on_tty("doctor", "--fix", "--json", cwd=journal)
    assert fixed.returncode == 0
    assert drawn(fixed.stderr, "doctor: checking and repairing the journal and its files")
    assert json.loads(fixed.stdout)["healthy"] is True


# --- when no bar is drawn --------------------------------------------------------------------


@pytest.mark.parametrize("options", [["-q"], ["--log-format", "json"]], ids=["quiet", "json-logs"])
def test_no_bar_for_quiet_runs_or_json_logs(journal: Path, options: list[str]) -> None:
    tty = on_tty(*options, "replay", cwd=journal)
    assert tty.returncode == 0
    assert tty.stderr == ""
    assert tty.stdout == on_pipes("replay", cwd=journal).stdout


def test_no_bar_before_the_delay(journal: Path) -> None:
    """Work shorter than EVSTORE_PROGRESS_AFTER never draws (the default is half a second)."""
    tty = on_tty("replay", cwd=journal, after="30")
    assert tty.returncode == 0
    assert tty.stderr == ""


def test_single_appends_never_draw(journal: Path) -> None:
    tty = on_tty("append", "-s", SESSION, "P1.M1.T1.S1", "Complete", cwd=journal)
    assert tty.returncode == 0
    assert tty.stderr == ""


def test_the_delay_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    default = DEFAULT_AFTER_S
    for raw, expected in [(None, default), ("0", 0.0), ("2.5", 2.5), ("", default),
                          ("soon", default), ("-1", default), ("nan", default)]:
        if raw is None:
            monkeypatch.delenv("EVSTORE_PROGRESS_AFTER", raising=False)
        else:
            monkeypatch.setenv("EVSTORE_PROGRESS_AFTER", raw)
        assert after_seconds() == expected, raw


# --- the library's side: narrow callbacks, called every EVERY items ---------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, done: int, total: int | None) -> None:
        self.calls.append((done, total))

    def check(self, total: int) -> None:
        """Monotonic, within the total, ending at it, and not once per item."""
        dones = [done for done, _ in self.calls]
        assert dones == sorted(dones)
        assert all(t == total for _, t in self.calls)
        assert self.calls[-1] == (total, total)
        assert len(self.calls) <= total // 100  # far fewer than one per item


def test_reporting_calls_every_thousand_and_at_the_end() -> None:
    seen = Recorder()
    assert list(reporting(range(2500), seen, 2500)) == list(range(2500))
    assert seen.calls == [(1000, 2500), (2000, 2500), (2500, 2500)]
    empty = Recorder()
    assert list(reporting([], empty, 0, start=7)) == []
    assert empty.calls == [(7, 0)]
    parts = Recorder()
    half = span(parts, 100, 50, 200)
    half(5, 10)
    half(10, 10)
    half(12, 10)  # more than announced: still within its part
    half(0, None)
    assert parts.calls == [(125, 200), (150, 200), (150, 200), (100, 200)]
    whole = Recorder()
    first, empty_part, last = shares(whole, [30, 0, 70])
    first(30, 30)
    empty_part(0, 0)
    last(35, 70)
    assert whole.calls == [(30, 100), (30, 100), (65, 100)]


def test_store_replay_and_append_report_progress(journal: Path, tmp_path: Path) -> None:
    with Store.open(journal / ".evstore" / "journal.db", projections=DEFAULT) as store:
        replayed = Recorder()
        store.replay(progress=replayed)
        replayed.check(5002)
        earlier = Recorder()
        store.replay(SESSION, until=1000, out=tmp_path / "then", progress=earlier)
        earlier.check(1000)

        parsed = Recorder()
        events, ids = read_jsonl(write_updates(tmp_path / "u.jsonl", 2500).read_bytes(),
                                 source="u.jsonl", progress=parsed)
        parsed.check(2500)
        appended = Recorder()
        result = store.append(SESSION, events, event_ids=ids, progress=appended)
        assert result.count == 2500
        appended.check(3 * 2500)  # serialized, validated, written

        projected = Recorder()
        store.project(progress=projected)
        projected.check(7502)


def test_doctor_reports_progress(journal: Path) -> None:
    db = journal / ".evstore" / "journal.db"
    checked = Recorder()
    assert not Doctor(db, progress=checked).check().healthy
    assert checked.calls[0] == (0, None)  # the journal's integrity check: no total
    checked.calls = checked.calls[1:]
    checked.check(5002)
    fixed = Recorder()
    assert Doctor(db, progress=fixed).fix().healthy
    fixed.calls = fixed.calls[1:]
    fixed.check(3 * 5002)  # check, repair, check again


def test_a_postgresql_journal_reports_the_same_progress(pg_url: str, project_dir: Path) -> None:
    updates = write_updates(project_dir / "u.jsonl", 2500).read_bytes()
    with Store.open(pg_url, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        events, ids = read_jsonl(updates, source="u.jsonl")
        appended = Recorder()
        store.append(SESSION, events, event_ids=ids, progress=appended)
        appended.check(3 * 2500)  # the rows go in one statement: written once committed
        replayed = Recorder()
        store.replay(SESSION, out=project_dir / "out", progress=replayed)
        replayed.check(2502)
    checked = Recorder()
    Doctor(pg_url, progress=checked).check()
    assert checked.calls[0] == (0, None)
    checked.calls = checked.calls[1:]
    checked.check(2502)


def test_the_library_never_draws_or_prints() -> None:
    """rich and print() belong to the CLI: eventstore/ and projections/ only call back."""
    offenders = []
    for package in ("eventstore", "projections"):
        for path in (ROOT / package).glob("*.py"):
            offenders += [f"{package}/{path.name}:{line}: import {module}"
                          for line, module in imports_of(path) if module.split(".")[0] == "rich"]
            offenders += [f"{package}/{path.name}:{node.lineno}: print()"
                          for node in ast.walk(ast.parse(path.read_text()))
                          if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                          and node.func.id == "print"]
    assert offenders == []


def test_a_log_line_during_a_bar_is_printed_above_it() -> None:
    """Logging writes to stderr as it is at each line: while rich draws a bar it stands in
    for sys.stderr, so a retry warning lands above the bar, not through it."""
    from rich.console import Console
    from rich.progress import Progress

    from cli.logs import configure_logging
    from eventstore.logs import get_logger

    configure_logging(log_format="console", verbosity=0)
    screen = io.StringIO()
    with Progress(console=Console(file=screen, force_terminal=True, width=100), transient=True) as bar:
        bar.add_task("replaying", total=10)
        get_logger("evstore.test").warning("export_retry", attempt=1, errno="EBUSY")
    assert "export_retry" in screen.getvalue()
    assert "EBUSY" in screen.getvalue()
