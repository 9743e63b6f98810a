"""The `evstore` console script: the few things decided before the CLI is imported.

`evstore --version` answers without importing click or the library (a version check in a
script or a health probe pays only the interpreter's start). Every other run imports the
CLI. Pydantic's plugin discovery reads every installed package's metadata (~17 ms on each
run); evstore uses no pydantic plugin, so the CLI turns it off unless you set
PYDANTIC_DISABLE_PLUGINS yourself.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from eventstore._version import __version__  # noqa: PLC0415 - a constant, no imports

        sys.stdout.write(f"evstore, version {__version__}\n")
        return
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from cli.app import main as run  # noqa: PLC0415 - the whole CLI, only when needed

    run()
