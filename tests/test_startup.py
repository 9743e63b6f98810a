"""What a short command costs at start (issue 15): `evstore --version` answers without
loading click or the library, and the CLI leaves pydantic's plugin discovery off."""

from __future__ import annotations

import subprocess
import sys

from support import evstore_bin

PROBE = """
import sys
sys.argv = ["evstore", "--version"]
from cli.entry import main
main()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"click", "pydantic", "sqlite3", "orjson", "eventstore"})
print(heavy)
"""


def test_version_loads_neither_click_nor_the_library() -> None:
    """Only eventstore's version constant is imported (its package __init__ is lazy)."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)  # noqa: S603
    version, loaded = done.stdout.splitlines()
    assert version.startswith("evstore, version ")
    assert loaded == "['eventstore']"


def test_version_through_the_real_script_matches_clicks_wording() -> None:
    """The fast path prints what click's version option printed before it."""
    done = subprocess.run([evstore_bin(), "--version"], capture_output=True, text=True, check=True)  # noqa: S603
    from eventstore._version import __version__  # noqa: PLC0415

    assert done.stdout == f"evstore, version {__version__}\n"
    assert done.stderr == ""


def test_the_cli_disables_pydantic_plugin_discovery_unless_told_otherwise() -> None:
    """A CLI run sets PYDANTIC_DISABLE_PLUGINS only when the caller left it unset."""
    probe = ("import os, sys; sys.argv = ['evstore', '--help']\n"
             "from cli import entry\n"
             "try:\n    entry.main()\nexcept SystemExit:\n    pass\n"
             "print(os.environ.get('PYDANTIC_DISABLE_PLUGINS'), file=sys.stderr)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=False)  # noqa: S603
    assert done.stderr.strip().splitlines()[-1] == "__all__"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False,  # noqa: S603
                          env={**env, "PYDANTIC_DISABLE_PLUGINS": "logfire"})
    assert done.stderr.strip().splitlines()[-1] == "logfire"
