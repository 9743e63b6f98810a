"""One status update through `evstore mcp` (client → journal → response) beside one
`evstore append` process, on the same real backlog and journal durability.

    .venv/bin/python bench/agent_call.py [--quick] [--json PATH]

The MCP figure is a tool call on a running server (the SDK's own client over stdio),
with and without exporting tasks.json after the write (`--no-project`); the baseline is
what an agent pays today per update: a whole `evstore append` process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import Implementation

ROOT = Path(__file__).resolve().parent.parent
BACKLOG = ROOT / "tests/fixtures/hacky-hack/001_14b9dc2a33c7.tasks.49991f1.initial.json"
EVSTORE = str(Path(sys.executable).parent / "evstore")
SESSION = "001"
STATUSES = ("Implementing", "Researching")


def project(tmp: Path) -> Path:
    plan = tmp / "plan" / SESSION
    plan.mkdir(parents=True)
    (plan / "tasks.json").write_bytes(BACKLOG.read_bytes())
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION]):
        subprocess.run([EVSTORE, *args], cwd=tmp, check=True, capture_output=True)  # noqa: PLW1510
    return tmp


def tool_calls(root: Path, count: int, *, export: bool) -> list[float]:
    timings: list[float] = []

    async def main() -> None:
        args = ["mcp", "-s", SESSION] + ([] if export else ["--no-project"])
        params = StdioServerParameters(command=EVSTORE, args=args, cwd=str(root))
        async with stdio_client(params) as (read, write), ClientSession(
            read, write, client_info=Implementation(name="bench", version="1")
        ) as session:
            await session.initialize()
            for n in range(count):
                started = time.perf_counter()
                res = await session.call_tool("update_status", {"item_id": "P1.M1.T1.S1",
                                                                "status": STATUSES[n % 2]})
                timings.append(time.perf_counter() - started)
                assert not res.is_error, res

    anyio.run(main)
    return timings


def append_processes(root: Path, count: int) -> list[float]:
    timings = []
    for n in range(count):
        started = time.perf_counter()
        subprocess.run([EVSTORE, "append", "-s", SESSION, "P1.M1.T1.S1", STATUSES[n % 2]],  # noqa: PLW1510
                       cwd=root, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    options = parser.parse_args()
    calls, processes = (20, 5) if options.quick else (200, 30)
    os.environ.pop("EVSTORE_DB", None)
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp))
        plain = tool_calls(root, calls, export=False)
        exported = tool_calls(root, calls, export=True)
        appends = append_processes(root, processes)
    rows = {
        "mcp_update_status_ms": statistics.median(plain) * 1000,
        "mcp_update_status_with_export_ms": statistics.median(exported) * 1000,
        "evstore_append_process_ms": statistics.median(appends) * 1000,
    }
    rows["ratio_append_over_mcp"] = rows["evstore_append_process_ms"] / rows["mcp_update_status_ms"]
    print("| case | median | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| MCP `update_status` tool call, client → journal → response | {rows['mcp_update_status_ms']:.1f} ms "
          f"| `evstore append` process, {rows['evstore_append_process_ms']:.0f} ms "
          f"| {rows['ratio_append_over_mcp']:.0f}× faster |")
    print(f"| same, with tasks.json exported before the response | "
          f"{rows['mcp_update_status_with_export_ms']:.1f} ms | | |")
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
