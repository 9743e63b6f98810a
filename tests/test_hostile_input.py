"""Hostile input on every surface: accepted and round-tripped, or refused with exit 2 and
one line; never a traceback, never a partial write. And the files stay where they belong."""

from __future__ import annotations

import json
import os
import shutil
import stat
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.app import app
from eventstore.jsonfmt import loads
from support import INITIAL, SESSION, snapshot

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
TEMPLATE: dict[str, Path] = {}

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)
ugly_text = st.one_of(st.text(max_size=40), st.sampled_from(
    ["", " ", "..", "../x", "/etc", "a/b", "\x00", "P1\n", "P1.M1.T1.S1", "Complete", "-1", "11",
     "1e3", "０", "P1;DROP TABLE events", "'", '"', "\\", "%s", "{}", "null"]))


def template_project() -> Path:
    """A project with the real backlog imported and projected, built once and copied."""
    if "root" not in TEMPLATE:
        root = Path(tempfile.mkdtemp(prefix="evstore-hostile-"))
        (root / "plan" / SESSION).mkdir(parents=True)
        shutil.copyfile(INITIAL, root / "plan" / SESSION / "tasks.json")
        with chdir(root):
            for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION], ["project"]):
                assert CliRunner().invoke(app, args).exit_code == 0
        TEMPLATE["root"] = root
    return TEMPLATE["root"]


@contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def fresh_project() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="evstore-case-"))
    shutil.copytree(template_project(), root, dirs_exist_ok=True)
    try:
        with chdir(root):
            yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def stable(root: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(root).items() if not k.endswith("-shm")}


def invoke(args: list[str], stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(app, args, input=stdin, catch_exceptions=False)


def accepted_or_refused(result: Result, before: dict[str, bytes], root: Path) -> None:
    """The contract for any input: exit 0, or exit 2 with one line and nothing changed."""
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    if result.exit_code == 2:
        assert result.stderr.startswith("evstore: error: ")
        assert result.stderr.count("\n") == 1, result.stderr
        assert stable(root) == before


@SETTINGS
@given(lines=st.lists(st.one_of(
    json_values.map(lambda v: json.dumps(v)),
    st.fixed_dictionaries({"item_id": ugly_text, "status": ugly_text}).map(json.dumps),
    st.fixed_dictionaries({"type": st.sampled_from(["ItemStatusChanged", "ItemUpdated", "ItemAdded", "ItemRemoved", "BatchStarted", "Nope"]),
                           "item_id": ugly_text, "status": ugly_text, "changes": json_values}).map(json.dumps),
    st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
), min_size=1, max_size=5))
def test_append_jsonl_lines(lines: list[str]) -> None:
    with fresh_project() as root:
        before = stable(root)
        head = len(invoke(["log", "--json"]).stdout.splitlines())
        result = invoke(["append", "-s", SESSION, "--jsonl", "-"], "\n".join(lines).encode("utf-8", "surrogateescape"))
        accepted_or_refused(result, before, root)
        if result.exit_code == 0:
            assert invoke(["project"]).exit_code == 0
            written = (root / "plan" / SESSION / "tasks.json").read_bytes()
            assert invoke(["replay", "--out", "again"]).exit_code == 0
            assert (root / "again" / SESSION / "tasks.json").read_bytes() == written
            assert len(invoke(["log", "--json"]).stdout.splitlines()) > head


@SETTINGS
@given(document=st.one_of(
    json_values,
    st.fixed_dictionaries({"backlog": st.lists(st.fixed_dictionaries(
        {"type": st.sampled_from(["Phase", "Task", "Subtask", "X"]), "id": ugly_text, "status": ugly_text},
        optional={"milestones": st.lists(json_values, max_size=2), "title": json_values}), max_size=4)}),
))
def test_imported_tasks_json(document: object) -> None:
    """A document is imported whole and projects back to itself, or is refused."""
    with fresh_project() as root:
        source = root / "in.json"
        source.write_text(json.dumps(document))
        before = stable(root)
        result = invoke(["import", "in.json", "-s", "hostile"])
        accepted_or_refused(result, before, root)
        if result.exit_code == 0:
            assert invoke(["project", "-s", "hostile"]).exit_code == 0
            # The file now holds what JavaScript would make of the document (2.0 is 2).
            assert json.dumps(loads(source.read_bytes())) == json.dumps(loads(json.dumps(document)))


@SETTINGS
@given(content=st.one_of(st.binary(max_size=60), json_values.map(lambda v: json.dumps(v).encode()),
                         st.fixed_dictionaries({"version": st.just("1.0"), "pendingUpdates": json_values,
                                                "sessionPath": ugly_text}).map(lambda v: json.dumps(v).encode())))
def test_legacy_failed_files(content: bytes) -> None:
    with fresh_project() as root:
        (root / "tasks.json.failed").write_bytes(content)
        before = stable(root)
        accepted_or_refused(invoke(["import", "tasks.json.failed", "-s", SESSION]), before, root)


@SETTINGS
@given(content=st.one_of(st.binary(max_size=60), st.fixed_dictionaries({
    "schema_version": st.sampled_from([1, 1, 2, "1"]), "session_id": ugly_text, "pid": st.one_of(st.integers(-5, 10**7), ugly_text),
    "parallel": st.integers(-1, 3), "queued_items": st.one_of(st.lists(ugly_text, max_size=4), json_values),
    "completed": st.lists(ugly_text, max_size=2), "failed": st.lists(ugly_text, max_size=2),
    "skipped": st.lists(ugly_text, max_size=2), "current_item": st.one_of(st.none(), ugly_text)}).map(lambda v: json.dumps(v).encode())))
def test_legacy_batch_progress_files(content: bytes) -> None:
    with fresh_project() as root:
        (root / "bp.json").write_bytes(content)
        before = stable(root)
        accepted_or_refused(invoke(["import", "--batch-progress", "bp.json", "-s", "legacy"]), before, root)


@SETTINGS
@given(session=ugly_text, item=ugly_text, status=ugly_text)
def test_append_arguments(session: str, item: str, status: str) -> None:
    with fresh_project() as root:
        before = stable(root)
        accepted_or_refused(invoke(["append", "-s", session, item, status]), before, root)


@SETTINGS
@given(until=ugly_text, retries=ugly_text)
def test_until_and_flush_retries(until: str, retries: str) -> None:
    with fresh_project() as root:
        before = stable(root)
        accepted_or_refused(invoke(["replay", "--until", until, "--out", "o"]), before, root)
        before = stable(root)
        accepted_or_refused(invoke(["project", "--flush-retries", retries]), before, root)


# --- where files may go -------------------------------------------------------------------


def test_a_symlink_planted_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    """tasks.json swapped for a symlink to another file: the export replaces the link and
    the other file keeps its bytes."""
    with fresh_project() as root:
        victim = tmp_path / "victim.txt"
        victim.write_text("precious")
        target = root / "plan" / SESSION / "tasks.json"
        target.unlink()
        target.symlink_to(victim)
        invoke(["append", "-s", SESSION, "P1", "Complete"])
        assert invoke(["project"]).exit_code == 0
        assert victim.read_text() == "precious"
        assert not target.is_symlink()
        assert b'"status": "Complete"' in target.read_bytes()


def test_an_export_dir_symlinked_out_of_the_project_is_refused(tmp_path: Path) -> None:
    """A project-relative export dir that now leads outside (a planted symlink): exit 4,
    nothing written there."""
    with fresh_project() as root:
        outside = tmp_path / "outside"
        outside.mkdir()
        shutil.rmtree(root / "plan" / SESSION)
        (root / "plan" / SESSION).symlink_to(outside, target_is_directory=True)
        invoke(["append", "-s", SESSION, "P1", "Complete"])
        result = invoke(["project"])
        assert result.exit_code == 4
        assert "outside the project root" in result.stderr
        assert list(outside.iterdir()) == []


def test_a_legacy_file_cannot_choose_to_write_outside_the_project(tmp_path: Path) -> None:
    with fresh_project() as root:
        recovery = {"version": "1.0", "sessionPath": str(tmp_path), "pendingUpdates": loads(INITIAL.read_bytes())}
        (root / "r.failed").write_text(json.dumps(recovery))
        before = stable(root)
        result = invoke(["import", "r.failed", "-s", "new"])
        assert result.exit_code == 2
        assert "is outside the project root" in result.stderr
        assert stable(root) == before


def test_jsonl_cannot_create_sessions_or_pick_export_dirs() -> None:
    with fresh_project() as root:
        before = stable(root)
        result = invoke(["append", "-s", "evil", "--jsonl", "-"], b'{"type": "SessionCreated", "export_dir": "/etc"}\n')
        assert result.exit_code == 2
        assert "SessionCreated is not accepted here" in result.stderr
        assert stable(root) == before


@pytest.mark.parametrize("session", ["..", "../x", "a/b", "/abs", ".", "", "x" * 129])
def test_session_ids_cannot_name_paths(session: str) -> None:
    with fresh_project() as root:
        before = stable(root)
        result = invoke(["import", f"plan/{SESSION}/tasks.json", "-s", session])
        assert result.exit_code == 2
        assert stable(root) == before


def test_file_modes() -> None:
    """Exports are 0644 whatever the umask; the journal follows the umask (0644 at 022)."""
    with fresh_project() as root:
        old = os.umask(0o022)
        try:
            invoke(["append", "-s", SESSION, "P1", "Complete"])
            invoke(["project"])
        finally:
            os.umask(old)
        assert stat.S_IMODE((root / "plan" / SESSION / "tasks.json").stat().st_mode) == 0o644
        assert stat.S_IMODE((root / ".evstore" / "journal.db").stat().st_mode) == 0o644


def test_sql_is_parameterized() -> None:
    """No SQL built from values: an f-string holding SQL must be one reviewed to splice
    only fixed words or placeholders (marked `noqa: S608` with the reason)."""
    root = Path(__file__).parent.parent
    sql = re.compile(r'f"[^"]*\b(SELECT|INSERT|UPDATE|DELETE|WHERE|FROM|VALUES)\b')
    offenders = [
        f"{path.name}:{number}"
        for package in ("eventstore", "projections", "cli")
        for path in (root / package).glob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if sql.search(line) and "noqa: S608" not in line
    ]
    assert offenders == []
