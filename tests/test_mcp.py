"""`evstore mcp` driven by the official SDK's own client over stdio, against real server
processes on a real journal: tools and schemas, each tool's results and refusals, the
client's identity in the journal, a 4-agent claim race, a killed server, malformed input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support import INITIAL, evstore_bin

pytestmark = pytest.mark.mcp
anyio = pytest.importorskip("anyio")
pytest.importorskip("mcp")

from mcp.client.session import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp_types import Implementation  # noqa: E402

from eventstore import Store  # noqa: E402
from projections import DEFAULT  # noqa: E402

SESSION = "001"
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    plan = tmp_path / "plan" / SESSION
    plan.mkdir(parents=True)
    (plan / "tasks.json").write_bytes(INITIAL.read_bytes())
    for args in (["init"], ["import", f"plan/{SESSION}/tasks.json", "-s", SESSION]):
        subprocess.run([evstore_bin(), *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: S603
    return tmp_path


def serve(root: Path, body: Callable[[ClientSession], Awaitable[Any]], *, name: str = "test-agent",
          version: str = "1.2.3", args: tuple[str, ...] = ("--session", SESSION)) -> Any:
    """Start a real `evstore mcp` and run `body` with an initialized SDK client session."""
    box: dict[str, Any] = {}

    async def main() -> None:
        params = StdioServerParameters(command=evstore_bin(), args=["mcp", *args], cwd=str(root),
                                       env={k: v for k, v in os.environ.items() if k != "EVSTORE_DB"})
        async with stdio_client(params) as (read, write), ClientSession(
            read, write, client_info=Implementation(name=name, version=version)
        ) as session:
            await session.initialize()
            box["result"] = await body(session)

    anyio.run(main)
    return box.get("result")


async def call(session: ClientSession, tool: str, args: dict[str, Any] | None = None) -> tuple[bool, str, Any]:
    res = await session.call_tool(tool, args or {})
    return bool(res.is_error), res.content[0].text, res.structured_content  # type: ignore[union-attr]


def events(root: Path) -> list[Any]:
    with Store.open(root / ".evstore" / "journal.db", projections=DEFAULT) as store:
        return store.read(SESSION)


def test_tools_are_listed_with_descriptions_and_schemas(project: Path) -> None:
    """Every tool the issue names, each described, with an input schema a model can use."""

    async def body(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    tools = {t.name: t for t in serve(project, body)}
    assert set(tools) == {
        "update_status", "update_statuses", "next_item", "release_item", "record_failure",
        "batch_next", "batch_done", "batch_fail", "batch_skip", "batch_status", "show",
        "get_item", "history", "ready", "blocked", "status", "project",
    }
    for tool in tools.values():
        assert tool.description and len(tool.description) > 20, tool.name
        assert tool.input_schema["type"] == "object"
    update = tools["update_status"].input_schema
    assert update["required"] == ["item_id", "status"]
    assert update["properties"]["status"]["enum"] == [
        "Planned", "Researching", "Implementing", "Retrying", "Complete", "Failed", "Obsolete", "Ready",
    ]
    assert "session" in update["properties"]
    assert "ctx" not in update["properties"]
    assert tools["show"].annotations.read_only_hint is True  # type: ignore[union-attr]


def test_writes_land_in_the_journal_with_the_clients_identity(project: Path, run: Any) -> None:
    """update_status / update_statuses: durable when they return, `tool: evstore-mcp` and
    the client's name and version in the meta, shown by `evstore history`; the files are
    exported after the write."""

    async def body(session: ClientSession) -> Any:
        one = await call(session, "update_status", {"item_id": "P1.M1.T1.S1", "status": "Complete",
                                                   "reason": "tests pass"})
        many = await call(session, "update_statuses", {"updates": [
            {"item_id": "P1.M1.T1.S2", "status": "Implementing"},
            {"item_id": "P1.M1.T1.S3", "status": "Researching"}]})
        return one, many

    (error1, text1, one), (error2, _, many) = serve(project, body)
    assert not error1
    assert not error2
    assert text1 == f"P1.M1.T1.S1 → Complete (seq {one['seq']})"
    assert (many["items_written"], many["write_ops_saved"], many["efficiency"]) == (2, 1, "50.0%")
    written = events(project)[-3:]
    assert [(e.data["item_id"], e.data["status"]) for e in written] == [
        ("P1.M1.T1.S1", "Complete"), ("P1.M1.T1.S2", "Implementing"), ("P1.M1.T1.S3", "Researching"),
    ]
    assert written[0].seq == one["seq"]
    for event in written:
        assert event.meta["tool"] == "evstore-mcp"
        assert event.meta["client"] == {"name": "test-agent", "version": "1.2.3"}
    tasks = json.loads((project / "plan" / SESSION / "tasks.json").read_bytes())
    assert tasks["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["status"] == "Complete"
    shown = run("history", "P1.M1.T1.S1", "-s", SESSION, cwd=project)
    assert "evstore-mcp" in shown.stdout.splitlines()[-1]
    entries = json.loads(run("history", "P1.M1.T1.S1", "-s", SESSION, "--json", cwd=project).stdout)
    assert entries[-1]["by"]["client"] == "test-agent 1.2.3"
    assert "via test-agent 1.2.3" in shown.stdout.splitlines()[-1]


def test_bad_input_is_a_tool_error_with_the_cli_message_and_nothing_written(project: Path, run: Any) -> None:
    """Unknown item, status outside the vocabulary, bad session, an update batch with one
    bad entry: tool errors with the CLI's one-line message; the journal is unchanged and
    the server keeps serving."""
    before = len(events(project))

    async def body(session: ClientSession) -> Any:
        return [
            await call(session, "update_status", {"item_id": "P9.M9", "status": "Complete"}),
            await call(session, "update_status", {"item_id": "P1", "status": "Bogus"}),
            await call(session, "update_status", {"item_id": "P1", "status": "Complete", "session": "nope"}),
            await call(session, "update_statuses", {"updates": [
                {"item_id": "P1", "status": "Complete"}, {"item_id": "P9", "status": "Complete"}]}),
            await call(session, "show", {"depth": 1}),
        ]

    *refusals, (show_error, _, shown) = serve(project, body)
    cli = run("append", "-s", SESSION, "P9.M9", "Complete", cwd=project)
    assert refusals[0][:2] == (True, cli.stderr.removeprefix("evstore: error: ").strip())
    assert refusals[1][:2] == (True, "invalid status 'Bogus': expected one of Planned, Researching, "
                               "Implementing, Retrying, Complete, Failed, Obsolete, Ready")
    assert refusals[2][:2] == (True, "unknown session 'nope' (known: 001)")
    assert refusals[3][:2] == (True, "unknown item 'P9' in session '001'")
    assert all(r[2]["exit_code"] == 2 for r in refusals)
    assert len(events(project)) == before
    assert not show_error
    assert [i["id"] for i in shown["items"]] == ["P1", "P2", "P3", "P4", "P5"]


def test_claims_release_failures_and_reads(project: Path) -> None:
    """next_item with claim, release_item, record_failure up to the limit (an error carrying
    the history), get_item, ready, blocked, history, status, project."""

    async def body(session: ClientSession) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["peek"] = await call(session, "next_item", {"level": "subtask"})
        out["claim"] = await call(session, "next_item", {"level": "subtask", "claim": True})
        out["item"] = await call(session, "get_item", {"item_id": "P1.M1.T1.S2"})
        out["release"] = await call(session, "release_item", {"item_id": "P1.M1.T1.S1", "reason": "timed out"})
        out["release_again"] = await call(session, "release_item", {"item_id": "P1.M1.T1.S1", "reason": "x"})
        out["fail1"] = await call(session, "record_failure", {"item_id": "P1.M1.T1.S1", "error": "npm test: 2 failing",
                                                                "max_fix_tasks": 1})
        out["fail2"] = await call(session, "record_failure", {"item_id": "P1.M1.T1.S1", "error": "npm test: 1 failing",
                                                                "max_fix_tasks": 1})
        out["ready"] = await call(session, "ready", {"level": "subtask"})
        out["blocked"] = await call(session, "blocked", {"level": "subtask"})
        out["history"] = await call(session, "history", {"item_id": "P1.M1.T1.S1"})
        out["status"] = await call(session, "status")
        out["project"] = await call(session, "project")
        return out

    out = serve(project, body)
    assert out["peek"][2]["item"]["id"] == "P1.M1.T1.S1"
    assert out["peek"][2]["claimed"] is False
    assert out["claim"][1] == "claimed: P1.M1.T1.S1 Initialize package.json with dependencies"
    assert out["claim"][2]["owner"] == "test-agent 1.2.3"
    item = out["item"][2]
    assert item["dependencies"] == [{"id": "P1.M1.T1.S1", "status": "Implementing"}]
    assert item["dependencies_met"] is False
    assert out["release"][:2] == (False, f"P1.M1.T1.S1 → Planned (seq {out['release'][2]['seq']})")
    assert out["release_again"][0] is True
    assert "is not claimed" in out["release_again"][1]
    assert out["fail1"][2]["fix_id"] == "P1.M1.T1.S5"
    assert out["fail2"][0] is True
    assert out["fail2"][1].splitlines() == [
        "Max fix tasks (1) reached for P1.M1.T1.S1",
        "- Task P1.M1.T1.S1: 1 fix attempted (P1.M1.T1.S5) - Final: FAIL",
    ]
    assert out["fail2"][2]["exit_code"] == 6
    assert [i["id"] for i in out["ready"][2]["items"]][:2] == ["P1.M1.T1.S1", "P1.M1.T1.S5"]
    assert out["blocked"][2]["items"][0]["id"] == "P1.M1.T1.S2"
    kinds = [e["kind"] for e in out["history"][2]["entries"]]
    assert kinds == ["imported", "status", "status", "failed", "fix", "failed", "fix_limit"]
    assert out["status"][2]["journal"]["head_seq"] == events(project)[-1].seq
    assert {r["projection"] for r in out["project"][2]["results"]} == {
        "tasks", "batch", "fix-history-json", "fix-history-md"}


def test_batch_tools(project: Path, run: Any) -> None:
    """batch_next / done / fail / skip / status over a batch started from the CLI."""
    started = run("batch", "start", "a", "b", "c", "d", "-s", SESSION, "--parallel", "2", cwd=project)
    assert started.returncode == 0, started.stderr

    async def body(session: ClientSession) -> list[Any]:
        return [
            await call(session, "batch_next"),
            await call(session, "batch_next"),
            await call(session, "batch_next"),
            await call(session, "batch_done", {"item": "a"}),
            await call(session, "batch_fail", {"item": "b", "error": "lint"}),
            await call(session, "batch_skip", {"item": "d", "reason": "merged"}),
            await call(session, "batch_done", {"item": "d"}),
            await call(session, "batch_status"),
        ]

    first, second, full, done, failed, skipped, refused, status = serve(project, body)
    assert (first[1], second[1]) == ("a", "b")
    assert full[2]["item"] is None
    assert full[2]["reason"] == "2 item(s) in flight, the --parallel limit"
    assert [r[0] for r in (done, failed, skipped)] == [False, False, False]
    assert refused[0] is True
    assert "is not in flight" in refused[1]
    batch = status[2]["batch"]
    assert (batch["completed"], batch["failed"], batch["skipped"], batch["remaining"]) == (
        ["a"], ["b"], ["d"], ["c"])
    progress = json.loads((project / "plan" / SESSION / "batch-progress.json").read_bytes())
    assert progress["completed"] == ["a"]  # exported after the write


def test_resources_show_the_journal(project: Path) -> None:
    """tasks.json as the journal renders it, an item's history, the HTML report."""

    async def body(session: ClientSession) -> list[Any]:
        await call(session, "project")
        templates = await session.list_resource_templates()
        tasks = await session.read_resource(f"evstore://sessions/{SESSION}/tasks.json")
        history = await session.read_resource(f"evstore://sessions/{SESSION}/history/P1.M1.T1.S1")
        report = await session.read_resource("evstore://report")
        listed = await session.list_resources()
        return [templates, tasks, history, report, listed]

    templates, tasks, history, report, listed = serve(project, body)
    uris = {t.uri_template for t in templates.resource_templates}
    assert uris == {"evstore://sessions/{session}/tasks.json", "evstore://sessions/{session}/history/{item}"}
    assert "evstore://report" in {str(r.uri) for r in listed.resources}
    assert tasks.contents[0].text.encode() == (project / "plan" / SESSION / "tasks.json").read_bytes()
    assert json.loads(tasks.contents[0].text) == json.loads(INITIAL.read_bytes())
    assert json.loads(history.contents[0].text)[0]["kind"] == "imported"
    assert report.contents[0].text.startswith("<!doctype html>")
    assert "evstore-data" in report.contents[0].text


def test_a_failed_export_never_fails_the_acknowledged_write(project: Path) -> None:
    """A directory where tasks.json goes: every export fails, yet each update_status is
    acknowledged and in the journal; the failure is reported beside the result."""
    target = project / "plan" / SESSION / "tasks.json"
    target.unlink()
    target.mkdir()

    async def body(session: ClientSession) -> Any:
        return [await call(session, "update_status", {"item_id": "P1", "status": "Implementing"})
                for _ in range(2)]

    results = serve(project, body)
    assert [r[0] for r in results] == [False, False]
    assert results[0][2]["exports"][0]["action"] == "failed"
    assert [e.data.get("status") for e in events(project)[-2:]] == ["Implementing", "Implementing"]


def test_four_agents_claiming_at_once_get_distinct_items(project: Path, run: Any) -> None:
    """4 server processes, 4 SDK clients, claiming in a loop: every subtask ready at the
    start claimed once, none twice."""
    with Store.open(project / ".evstore" / "journal.db", projections=DEFAULT) as store:
        ready = [i.id for i in store.ready(SESSION, level="subtask")]
    claimed: list[list[str]] = [[] for _ in range(4)]

    async def agent(index: int) -> None:
        params = StdioServerParameters(command=evstore_bin(), args=["mcp", "-s", SESSION, "--no-project"],
                                       cwd=str(project))
        async with stdio_client(params) as (read, write), ClientSession(
            read, write, client_info=Implementation(name=f"agent-{index}", version="1")
        ) as session:
            await session.initialize()
            for _ in range(len(ready)):
                res = await session.call_tool("next_item", {"claim": True, "level": "subtask"})
                item = res.structured_content["item"]  # type: ignore[index]
                if item is None or item["id"] not in ready:
                    break
                claimed[index].append(item["id"])

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(agent, index)

    anyio.run(main)
    everyone = [i for mine in claimed for i in mine]
    assert sorted(everyone) == sorted(ready)
    assert len(set(everyone)) == len(everyone)
    assert sum(1 for mine in claimed if mine) >= 2  # they really raced
    owners = {e.meta["client"]["name"] for e in events(project) if e.type == "ItemStatusChanged"}
    assert owners <= {f"agent-{i}" for i in range(4)}


def _raw_server(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603
        [evstore_bin(), "mcp", "-s", SESSION], cwd=root, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _request(proc: subprocess.Popen[str], message: dict[str, Any]) -> dict[str, Any]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    while True:
        line = proc.stdout.readline()
        assert line, "the server closed stdout"
        reply = json.loads(line)  # stdout is the protocol: every line is JSON-RPC
        if reply.get("id") == message["id"]:
            return reply  # type: ignore[no-any-return]


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "raw-client", "version": "0.1"}}}


def test_the_server_survives_malformed_requests_and_keeps_stdout_clean(project: Path) -> None:
    """Garbage lines, an unknown method, an unknown tool, wrong argument types: answered or
    ignored, and the next good call still works; stdout holds only JSON-RPC."""
    proc = _raw_server(project)
    try:
        assert proc.stdin is not None
        proc.stdin.write("this is not json\n{\"jsonrpc\": \"2.0\"}\n[1, 2\n")
        proc.stdin.flush()
        init = _request(proc, INITIALIZE)
        assert init["result"]["serverInfo"]["name"] == "evstore"
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        unknown = _request(proc, {"jsonrpc": "2.0", "id": 2, "method": "no/such/method"})
        assert "error" in unknown
        no_tool = _request(proc, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                  "params": {"name": "no_such_tool", "arguments": {}}})
        assert no_tool.get("error") or no_tool["result"]["isError"]
        wrong = _request(proc, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                "params": {"name": "show", "arguments": {"depth": "deep"}}})
        assert wrong["result"]["isError"] is True
        good = _request(proc, {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                               "params": {"name": "update_status",
                                          "arguments": {"item_id": "P1", "status": "Implementing"}}})
        assert good["result"]["isError"] is False
        assert good["result"]["structuredContent"]["status"] == "Implementing"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert events(project)[-1].meta["client"] == {"name": "raw-client", "version": "0.1"}


def test_a_killed_server_loses_nothing_it_acknowledged(project: Path) -> None:
    """Every update_status answered before SIGKILL is in the journal afterwards."""
    proc = _raw_server(project)
    acknowledged: list[int] = []
    try:
        _request(proc, INITIALIZE)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
        statuses = ["Implementing", "Researching"]
        for n in range(20):
            reply = _request(proc, {"jsonrpc": "2.0", "id": 10 + n, "method": "tools/call", "params": {
                "name": "update_status",
                "arguments": {"item_id": "P1.M1.T1.S1", "status": statuses[n % 2]}}})
            acknowledged.append(reply["result"]["structuredContent"]["seq"])
        # One more in flight when the kill lands: it may or may not be written.
        proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": {
            "name": "update_status", "arguments": {"item_id": "P1", "status": "Complete"}}}) + "\n")
        proc.stdin.flush()
        time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    seqs = {e.seq for e in events(project)}
    assert set(acknowledged) <= seqs
    assert len(acknowledged) == 20


def test_without_the_extra_the_command_says_what_to_install(project: Path, tmp_path: Path) -> None:
    """With the SDK unimportable, `evstore mcp` exits 2 naming the extra to install."""
    shadow = tmp_path / "shadow"
    (shadow / "mcp").mkdir(parents=True)
    (shadow / "mcp" / "__init__.py").write_text("raise ImportError('No module named mcp (test)')\n")
    done = subprocess.run(  # noqa: S603
        [evstore_bin(), "mcp", "-s", SESSION], cwd=project, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(shadow)}, timeout=60,
    )
    assert done.returncode == 2
    assert "pip install 'evstore[mcp]'" in done.stderr
    assert done.stdout == ""
