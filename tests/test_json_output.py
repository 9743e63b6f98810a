"""Every `--json` output is what README.md's "JSON output" section says, field by field.

The README tables are parsed (one per command: field, type, meaning) and each command is
run with `--json` on a real project built once for the module: an imported backlog,
appends, fix tasks up to the limit, a batch restarted, failed, skipped and healed,
recorded export failures (a retried EBUSY, an ENOSPC), a breaker transition, doctor
problems fixed and one whose fix failed. Each output is checked both ways: a documented
field missing, or an output field not documented, or a value of another type, fails; and
every documented field must show up in some output, so the scenarios keep the tables
honest. `log` and `watch` run as real processes (one object per line).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest
from click.testing import CliRunner
from support import INITIAL, evstore_bin, failing_store

from cli.app import app
from eventstore import ExportError, Store
from eventstore.events import ErrorRecorded, ItemStatusChanged
from projections import DEFAULT

if TYPE_CHECKING:
    from collections.abc import Iterator

README = (Path(__file__).parent.parent / "README.md").read_text()
SESSION = "001"
ATOMS = {"string", "integer", "number", "boolean", "null", "object", "any"}

# --- the README section, parsed ----------------------------------------------------------------


@dataclass
class Doc:
    """One command's documented output: its shape and its fields (name -> alternatives)."""

    heading: str
    shape: list[str]
    per_line: bool
    fields: dict[str, list[str]] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)


def parse_type(text: str) -> list[str]:
    alternatives = [t.strip() for t in text.split(" or ")]
    for alt in alternatives:
        atom = alt.removeprefix("array of ")
        assert atom in ATOMS, f"unknown type {alt!r} in {text!r}"
    return alternatives


def json_section(readme: str = README) -> str:
    assert "\n### JSON output\n" in readme, 'README.md has no "### JSON output" section'
    cli_reference = readme.split("\n## CLI reference\n", 1)[1].split("\n## ", 1)[0]
    assert "\n### JSON output\n" in cli_reference, '"### JSON output" must be in "## CLI reference"'
    section = readme.split("\n### JSON output\n", 1)[1].split("\n### ", 1)[0]
    assert readme.index("### JSON output") < readme.index("### Shell completion")
    return section


def parse_docs(section: str) -> dict[tuple[str, ...], Doc]:
    docs: dict[tuple[str, ...], Doc] = {}
    for block in section.split("\n#### ")[1:]:
        heading, _, body = block.partition("\n")
        commands = re.findall(r"`evstore ([a-z][a-z -]*?) --json`", heading)
        assert commands, f"heading names no `evstore ... --json`: {heading!r}"
        shape = re.search(r"^Shape: `([^`]+)`(.*)$", body, flags=re.MULTILINE)
        assert shape, f"{heading}: no 'Shape: `...`' line"
        doc = Doc(heading, parse_type(shape.group(1)), "per line" in shape.group(2))
        for row in body.splitlines():
            if not row.startswith("| `"):
                continue
            cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
            assert len(cells) == 3, f"{heading}: a row needs field | type | meaning: {row!r}"
            name = re.fullmatch(r"`([^`]+)`(\?)?", cells[0])
            assert name, f"{heading}: bad field cell {cells[0]!r}"
            assert name.group(1) not in doc.fields, f"{heading}: {name.group(1)} documented twice"
            doc.fields[name.group(1)] = parse_type(cells[1])
            if name.group(2):
                doc.optional.add(name.group(1))
            assert cells[2], f"{heading}: {name.group(1)} has no meaning"
        assert doc.fields, f"{heading}: no table of fields"
        for command in commands:
            path = tuple(command.split())
            assert path not in docs, f"`evstore {command} --json` documented twice"
            docs[path] = doc
    return docs


DOCS = parse_docs(json_section())


def parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def element(path: str) -> str:
    return f"{path}[]" if path else ""  # the root array's objects hold the top-level fields


# --- the checker -------------------------------------------------------------------------------


@dataclass
class Checker:
    doc: Doc
    errors: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def check_output(self, value: Any) -> None:
        self._value("", value, self.doc.shape, where="the output")

    def _value(self, path: str, value: Any, types: list[str], *, where: str) -> None:
        if path:
            self.seen.add(path)
        for alt in types:
            if alt.startswith("array of "):
                if isinstance(value, list):
                    atom = alt.removeprefix("array of ")
                    for index, item in enumerate(value):
                        self._value(element(path), item, [atom], where=f"{where}[{index}]")
                    return
            elif _is(alt, value):
                if alt == "object":
                    self._object(path, value, where=where)
                return
        self.errors.append(f"{where}: {value!r} is not {' or '.join(types)}")

    def _object(self, path: str, value: dict[str, Any], *, where: str) -> None:
        fields = self.doc.fields
        if child(path, "*") in fields:  # a map: any keys, documented values
            for key, item in value.items():
                self._value(
                    child(path, "*"), item, fields[child(path, "*")], where=f"{where}[{key!r}]"
                )
            return
        for key, item in value.items():
            name = child(path, key)
            if name not in fields:
                self.errors.append(f"{where}: field {name!r} is output but not documented")
                continue
            self._value(name, item, fields[name], where=f"{where}.{key}" if path else key)
        for name in fields:
            if (
                parent(name) == path
                and name not in self.doc.optional
                and name.rsplit(".", 1)[-1] not in value
            ):
                self.errors.append(f"{where}: documented field {name!r} is missing")


def _is(atom: str, value: Any) -> bool:
    return {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "null": value is None,
        "object": isinstance(value, dict),
        "any": True,
    }[atom]


def check(doc: Doc, outputs: list[Any]) -> Checker:
    checker = Checker(doc)
    for output in outputs:
        checker.check_output(output)
    return checker


# --- the project: one scenario for the module, every command's outputs collected -----------------


@dataclass
class Outputs:
    docs: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)
    raw: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    def add(self, path: tuple[str, ...], stdout: str, *, per_line: bool) -> list[Any]:
        self.raw.setdefault(path, []).append(stdout)
        parsed = (
            [json.loads(line) for line in stdout.splitlines() if line]
            if per_line
            else [json.loads(stdout)]
        )
        self.docs.setdefault(path, []).extend(parsed)
        return parsed


def command_path(args: tuple[str, ...]) -> tuple[str, ...]:
    """The subcommand path of CLI arguments (global options before it skipped)."""
    ctx = click.Context(app, info_name="evstore")
    command: click.Command = app
    path: list[str] = []
    words = list(args)
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            if word in ("--db", "--durability", "--log-format") and not path:
                words.pop(0)
            continue
        if not isinstance(command, click.Group):
            break
        sub = command.get_command(ctx, word)
        if sub is None:
            break
        command, path = sub, [*path, word]
    return tuple(path)


def watch_lines(root: Path, env: dict[str, str]) -> str:
    """Run `evstore watch --json` until it has exported the pending events, then SIGTERM."""
    proc = subprocess.Popen(
        [evstore_bin(), "watch", "--json", "--interval", "20"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(60, proc.kill)
    killer.start()
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=60)
    finally:
        killer.cancel()
    assert proc.returncode == 0, stderr
    return first + rest


def build(root: Path) -> Outputs:  # noqa: PLR0915 - one story, told in order
    out = Outputs()
    runner = CliRunner()
    env = {k: v for k, v in os.environ.items() if k not in ("EVSTORE_DB", "EVSTORE_FLUSH_RETRIES")}

    def cli(*args: str, code: int = 0, stdin: str | None = None) -> str:
        result = runner.invoke(app, list(args), input=stdin, catch_exceptions=False)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        return result.stdout

    def js(*args: str, code: int = 0, stdin: str | None = None) -> Any:
        path = command_path(args)
        (parsed,) = out.add(path, cli(*args, "--json", code=code, stdin=stdin), per_line=False)
        return parsed

    cli("init")
    js("import", f"plan/{SESSION}/tasks.json", "-s", SESSION)
    # Nothing new, and a warning: --export-dir is ignored for an existing session.
    js("import", f"plan/{SESSION}/tasks.json", "-s", SESSION, "--export-dir", "elsewhere")
    js("append", "-s", SESSION, "P1.M1.T1.S1", "Implementing", "--reason", "agent picked it up")
    lines = (
        '{"item_id": "P1.M1.T1.S2", "status": "Complete"}\n'
        '{"item_id": "P1.M1.T1", "status": "Implementing"}\n'
    )
    js("append", "-s", SESSION, "--jsonl", "-", stdin=lines)
    failing = ("fail", "P1.M1.T1.S1", "-s", SESSION, "--max-fix-tasks", "1", "--error")
    fix = js(*failing, "npm test: 3 failing")
    cli(*failing, "npm test: 1 failing", code=6)  # the limit: nothing on stdout

    gone = subprocess.Popen(["true"])
    gone.wait()
    items = ("P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T1.S3", "P1.M1.T1.S4")
    js("batch", "start", *items, "-s", SESSION, "--owner-pid", str(gone.pid))
    restarted = js("batch", "start", *items, "-s", SESSION, "--no-resume", "--parallel", "2")
    assert restarted["action"] == "restarted"
    assert restarted["abandoned"]
    js("batch", "next", "-s", SESSION)
    js("batch", "next", "-s", SESSION)
    full = js("batch", "next", "-s", SESSION)
    assert full["item"] is None  # two in flight: full
    # P1.M1.T1.S4 waits for P1.M1.T1.S3, still Planned in the backlog: held.
    assert full["held"] == {"P1.M1.T1.S4": ["P1.M1.T1.S3"]}
    js("batch", "status", "-s", SESSION)
    cli("batch", "done", "P1.M1.T1.S1", "-s", SESSION)
    cli("batch", "fail", "P1.M1.T1.S2", "-s", SESSION, "--error", "lint failed")
    cli("batch", "skip", "P1.M1.T1.S4", "-s", SESSION, "--reason", "merged already")
    js("batch", "next", "-s", SESSION)
    cli("batch", "heal", "-s", SESSION)
    js("batch", "status", "-s", SESSION)
    js("status", code=1)  # nothing exported yet
    js("show")
    js("history", "P1.M1.T1.S1")
    js("history", fix["fix_id"])  # added as a fix
    js("history", "P1.M1.T1.S4", "-s", SESSION)

    js("project")
    cli("batch", "finish", "-s", SESSION)
    assert js("batch", "status", "-s", SESSION) is None
    js("project")  # batch-progress.json removed
    js("replay")
    js("replay", "-s", SESSION, "--until", "3", "--out", "then")  # no batch then: absent

    with Store.open(root / ".evstore" / "journal.db", projections=DEFAULT) as store:
        store.journal.append(
            "_errors",
            [
                ErrorRecorded(
                    component="breaker",
                    operation="open",
                    message=f"{root}/plan/{SESSION}: breaker open after 5 consecutive failures "
                    "(EROFS); next trial in 30s",
                    errno="EROFS",
                    error_type="resource",
                    severity="high",
                    recoverability="degradable",
                    category="configuration",
                    retryable=False,
                )
            ],
        )
        store.append(
            SESSION,
            [ItemStatusChanged(item_id="P1", status="Implementing")],
            correlation_id="run-42",
        )
        # As `evstore mcp` writes it: the agent's client and the claim's owner in the meta.
        store.append(SESSION, [ItemStatusChanged(item_id="P1", status="Researching")],
                     meta={"client": {"name": "claude-code", "version": "2.1"}, "owner": "agent-7"})
    store = failing_store(root, [errno.EBUSY, errno.EBUSY])  # recovers after two retries
    store.project(SESSION)
    store.append(SESSION, [ItemStatusChanged(item_id="P1.M1", status="Implementing")])
    store.close()
    store = failing_store(root, [errno.ENOSPC])  # fails at once
    with pytest.raises(ExportError):
        store.project(SESSION)
    store.close()
    js("history", "P1", "-s", SESSION)
    js("errors")
    js("errors", "--since", "2000-01-01T00:00:00Z")
    js("status", code=1)  # the ENOSPC export lags

    logged = subprocess.run(
        [evstore_bin(), "log", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out.add(("log",), logged.stdout, per_line=True)
    out.add(("watch",), watch_lines(root, env), per_line=True)

    cli("append", "-s", SESSION, "P1.M1.T1.S3", "Complete")  # tasks.json now stale
    js("ready", "-s", SESSION, "--level", "subtask")
    js("next", "-s", SESSION, "--level", "subtask")
    js("next", "-s", SESSION, "--level", "subtask", "--claim", "--owner", "agent-1")
    js("next", "-s", SESSION, "--level", "subtask", "--claim", "--owner", "agent-1")
    # P1.M1.T2.S1 now waits for the claimed P1.M1.T1.S4: this claim skips it (blocked_by).
    claimed = js("next", "-s", SESSION, "--level", "subtask", "--claim", "--owner", "agent-2")
    assert claimed["blocked_by"] is not None, claimed
    js("blocked", "-s", SESSION)
    orphan = root / "plan" / SESSION / ".tasks.json.0123456789abcdef.tmp"
    orphan.write_text("{")
    old = time.time() - 600
    os.utime(orphan, (old, old))
    js("doctor", code=1)
    lost = root / ".evstore" / "lost+found"
    shutil.rmtree(lost, ignore_errors=True)
    lost.write_text("")  # a file where lost+found should be: moving the orphan fails
    js("doctor", "--fix", code=1)
    lost.unlink()
    js("doctor", "--fix")
    (root / "bad.db").write_text("not a journal")
    js("--db", "bad.db", "doctor", code=1)  # corrupt: every other check skipped

    # A command documented or taking --json but not run above: run it plain.
    for path in sorted(set(DOCS) | set(json_commands())):
        if path not in out.docs:
            js(*path, code=0)
    return out


def json_commands() -> list[tuple[str, ...]]:
    """Every command in the click tree with a --json option."""
    found = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if any(isinstance(p, click.Option) and "--json" in p.opts for p in command.params):
            found.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))

    walk(app, ())
    return found


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outputs]:
    root = tmp_path_factory.mktemp("json-output")
    (root / "plan" / SESSION).mkdir(parents=True)
    shutil.copyfile(INITIAL, root / "plan" / SESSION / "tasks.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("EVSTORE_DB", raising=False)
        mp.delenv("EVSTORE_FLUSH_RETRIES", raising=False)
        yield build(root)


# --- the tests ---------------------------------------------------------------------------------


def test_every_json_option_is_documented() -> None:
    commands = set(json_commands())
    assert commands, "no command with --json found: the walk is broken"
    undocumented = sorted(" ".join(p) for p in commands - set(DOCS))
    assert not undocumented, f'README.md "JSON output" does not document: {undocumented}'
    stale = sorted(" ".join(p) for p in set(DOCS) - commands)
    assert not stale, f'README.md "JSON output" documents commands without --json: {stale}'


def test_readme_tables_are_well_formed() -> None:
    for path, doc in DOCS.items():
        for name, types in doc.fields.items():
            up = parent(name).removesuffix("[]") if parent(name).endswith("[]") else parent(name)
            if not up:
                continue
            assert up in doc.fields, (
                f"evstore {' '.join(path)}: {name} is documented, its parent {up} is not"
            )
            wanted = "array of object" if parent(name).endswith("[]") else "object"
            assert wanted in doc.fields[up], (
                f"evstore {' '.join(path)}: {up} holds {name}, so it is {wanted}"
            )
            assert types


@pytest.mark.parametrize("path", sorted(DOCS), ids=lambda p: "evstore " + " ".join(p))
def test_output_matches_the_readme(outputs: Outputs, path: tuple[str, ...]) -> None:
    doc = DOCS[path]
    assert path in outputs.docs, f"evstore {' '.join(path)} --json was not run"
    for stdout in outputs.raw[path]:
        lines = stdout.splitlines()
        if doc.per_line:  # compact, one object per line
            assert lines
            assert all(line.startswith("{") and line.endswith("}") for line in lines), stdout
        else:  # one indented document
            assert len(lines) == 1 or lines[1].startswith("  "), stdout
    checker = check(doc, outputs.docs[path])
    assert not checker.errors, "\n".join([f"evstore {' '.join(path)} --json:", *checker.errors])
    never = sorted(set(doc.fields) - checker.seen)
    assert not never, f"evstore {' '.join(path)} --json: documented fields no run produced: {never}"


# --- the checker catches drift ------------------------------------------------------------------

SAMPLE = parse_docs("""
#### `evstore sample --json`

Shape: `object`.

| field | type | meaning |
|---|---|---|
| `id` | string | an id |
| `n` | integer or null | a count |
| `tags` | array of string | tags |
| `rows` | array of object | rows |
| `rows[].x` | number | x |
| `rows[].note`? | string | only sometimes |
| `by` | object | a map |
| `by.*` | integer | counts |
""")[("sample",)]


def test_the_checker_accepts_a_matching_output() -> None:
    good = {
        "id": "a",
        "n": None,
        "tags": ["t"],
        "rows": [{"x": 1.5}, {"x": 2, "note": "n"}],
        "by": {"k": 1},
    }
    checker = check(SAMPLE, [good])
    assert checker.errors == []
    assert set(SAMPLE.fields) <= checker.seen


def test_the_real_outputs_catch_an_edited_readme(outputs: Outputs) -> None:
    """A field dropped from a README table, or one added that no command prints, fails."""
    section = json_section()
    dropped = parse_docs(
        section.replace("| `fix_item.title` | string |", "| `fix_item.titel` | string |")
    )
    checker = check(dropped[("fail",)], outputs.docs[("fail",)])
    assert "field 'fix_item.title' is output but not documented" in " ".join(checker.errors)
    assert "fix_item.titel" in " ".join(checker.errors)  # documented, missing
    added = section.replace(
        "| `current` | boolean | every",
        "| `healthy` | boolean | x |\n| `current` | boolean | every",
    )
    checker = check(parse_docs(added)[("status",)], outputs.docs[("status",)])
    assert "documented field 'healthy' is missing" in " ".join(checker.errors)


@pytest.mark.parametrize(
    ("output", "error"),
    [
        ({"n": 1, "tags": [], "rows": [], "by": {}}, "documented field 'id' is missing"),
        (
            {"id": "a", "n": 1, "tags": [], "rows": [], "by": {}, "extra": 1},
            "'extra' is output but not documented",
        ),
        ({"id": "a", "n": "1", "tags": [], "rows": [], "by": {}}, "'1' is not integer or null"),
        ({"id": "a", "n": 1, "tags": [3], "rows": [], "by": {}}, "tags[0]: 3 is not string"),
        ({"id": "a", "n": 1, "tags": [], "rows": [{"x": True}], "by": {}}, "True is not number"),
        (
            {"id": "a", "n": 1, "tags": [], "rows": [{"y": 1}], "by": {}},
            "'rows[].y' is output but not documented",
        ),
        ({"id": "a", "n": 1, "tags": [], "rows": [], "by": {"k": "v"}}, "'v' is not integer"),
        ([], "is not object"),
    ],
)
def test_the_checker_catches_drift(output: Any, error: str) -> None:
    errors = check(SAMPLE, [output]).errors
    assert any(error in e for e in errors), errors
