"""Shell completion through click's mechanism, as README tells users to set it up."""

from __future__ import annotations

import os
import subprocess

import pytest

from support import evstore_bin


@pytest.mark.parametrize(("shell", "marker"), [("bash", "_evstore_completion()"), ("zsh", "#compdef evstore"), ("fish", "function _evstore_completion")])
def test_completion_scripts_are_printed(shell: str, marker: str) -> None:
    out = subprocess.run([evstore_bin()], env={**os.environ, "_EVSTORE_COMPLETE": f"{shell}_source"},
                         capture_output=True, text=True, check=True)
    assert marker in out.stdout


def test_commands_complete() -> None:
    env = {**os.environ, "_EVSTORE_COMPLETE": "bash_complete", "COMP_WORDS": "evstore ba", "COMP_CWORD": "1"}
    out = subprocess.run([evstore_bin()], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["plain,batch"]
