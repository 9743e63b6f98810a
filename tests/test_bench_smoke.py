"""The benchmarks still run (their figures are read by people, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("script", ["append.py", "project.py", "report.py", "agent_call.py", "importing.py"])
def test_benchmark_runs_quick(script: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio" in result.stdout
    assert json.loads(out.read_text())
