"""README.md tells the truth: its commands exist, its library example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support import SESSION

from cli.app import app

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_every_command_is_documented_and_has_help() -> None:
    for name, command in app.commands.items():
        assert command.help, name
        assert f"`evstore {name}" in README, f"evstore {name} is missing from README.md"


def test_ci_runs_the_readme_test_command() -> None:
    assert "$ make test" in README
    assert "$ make demo" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_exit_codes_table_matches_the_error_classes() -> None:
    from eventstore import errors

    codes = {int(c) for c in re.findall(r"^\| (\d) \|", README, flags=re.MULTILINE)}
    assert codes == {0, 1, 2, 3, 4, 5, 6}
    used = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.EvstoreError)}
    assert used <= codes


def test_the_library_example_runs(project_dir: Path) -> None:
    """The README's Python block, run as written (a fresh interpreter) in a project holding
    only the demo backlog: it makes the journal and imports the file itself, no CLI."""
    block = README.split("## Using it as a library", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert not (project_dir / ".evstore").exists()
    out = subprocess.run([sys.executable, "-c", block], cwd=project_dir, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["2 1 2", "2 1 50.0%", "Complete"]
    assert b'"status": "Complete"' in (project_dir / "plan" / SESSION / "tasks.json").read_bytes()
