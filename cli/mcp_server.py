"""The journal as a Model Context Protocol server: typed tools for agents, over stdio.

Built on the official SDK (`pip install 'evstore[mcp]'`); only `evstore mcp` imports this
module. Each tool calls the library as the CLI does and returns structured content (the
CLI's `--json` shapes) with a one-line text. A write returns once its append committed;
its events carry `tool: evstore-mcp` and the client's name and version from the
initialize handshake in their meta. Refused input is a tool error with the CLI's
one-line message, nothing written, and the server keeps serving. With `project` on, the
session's files are exported after each write through a circuit breaker per export
directory, as `evstore watch` does: an export that fails is logged and recorded, never
turned into a failure of the write it follows.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from eventstore._version import __version__
from eventstore.breaker import CircuitBreaker
from eventstore.classify import classify
from eventstore.errors import EvstoreError, InvalidInputError
from eventstore.events import STATUSES, ErrorRecorded, ItemStatusChanged, validate_status
from eventstore.logs import get_logger
from eventstore.selection import Level

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from eventstore.store import Store

log = get_logger("evstore.mcp")

TOOL_NAME = "evstore-mcp"
ERRORS_STREAM = "_errors"
# A plain string with the vocabulary as its enum: the model sees the choices, and a status
# outside them reaches the library, which refuses it with the CLI's own message.
StatusArg = Annotated[str, Field(description=f"The status: one of {', '.join(STATUSES)}.",
                                 json_schema_extra={"enum": list(STATUSES)})]

SessionArg = Annotated[
    str | None,
    Field(description="The session (backlog) to act on. Omit it to use the server's --session, "
          "or the only session the journal has."),
]
ItemArg = Annotated[str, Field(description="A backlog item id, e.g. P1.M1.T1.S1.")]
LevelArg = Annotated[Level, Field(description="Which items count: any level (parent before "
                                  "children), only tasks, or only subtasks.")]
T = TypeVar("T")
P = ParamSpec("P")

READ_ONLY = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True)
WRITES = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False)


class StatusUpdate(BaseModel):
    item_id: ItemArg
    status: StatusArg
    reason: str | None = Field(default=None, description="Why, in a few words (kept in history).")


class Server:
    """One journal, one default session, the client's identity, the export breakers."""

    def __init__(self, store: Store, *, session: str | None, project: bool) -> None:
        self.store = store
        self.default_session = session
        self.project_after_write = project
        self.breakers: dict[str, CircuitBreaker] = {}
        # Tool calls may run on worker threads; one journal write at a time keeps the
        # live-state cache and the export that follows a write in step.
        self._lock = threading.RLock()

    # --- plumbing ---------------------------------------------------------------------------

    def session(self, given: str | None) -> str:
        if given:
            self.store.require_session(given)
            return given
        if self.default_session:
            return self.default_session
        sessions = self.store.sessions()
        if len(sessions) == 1:
            return sessions[0]
        known = ", ".join(sessions) or "none yet"
        raise InvalidInputError(
            f"no session given and the server has no --session (known: {known}): pass session"
        )

    def identify(self, ctx: Context) -> str:
        """Record the client of this connection (from the initialize handshake) in the
        meta of every event the store appends; returns it as an owner name."""
        params = ctx.session.client_params
        info = params.client_info if params is not None else None
        if info is None:
            self.store.meta.pop("client", None)
            return TOOL_NAME
        self.store.meta["client"] = {"name": info.name, "version": info.version}
        return f"{info.name} {info.version}"

    @contextmanager
    def guarded(self) -> Iterator[None]:
        """Library errors become ToolError (for resources, which have no error result)."""
        try:
            yield
        except EvstoreError as exc:
            raise ToolError(str(exc)) from None

    def write(self, session: str, action: Callable[[], T]) -> tuple[T, list[dict[str, Any]]]:
        """Run a write, then (with --project) export the session's files."""
        with self._lock:
            result = action()
            return result, self.export(session) if self.project_after_write else []

    def export(self, session: str) -> list[dict[str, Any]]:
        export_dir = self.store.export_dir(session)
        breaker = self.breakers.get(str(export_dir))
        if breaker is None:
            breaker = self.breakers[str(export_dir)] = CircuitBreaker(
                str(export_dir), record=self._record
            )
        if not breaker.allow():
            log.warning("mcp_export_skipped", session=session, export_dir=str(export_dir),
                        breaker=breaker.state, retry_in_s=round(breaker.retry_in_s(), 1))
            return [{"session": session, "action": "skipped", "breaker": breaker.state}]
        try:
            results = self.store.project(session)
        except (EvstoreError, OSError) as exc:
            # The runner logged and recorded the failure; the write it follows stands.
            breaker.failure(exc)
            log.warning("mcp_export_failed", session=session, export_dir=str(export_dir),
                        errno=classify(exc).code, error=str(exc), breaker=breaker.state)
            return [{"session": session, "action": "failed", "error": str(exc)}]
        breaker.success()
        return [r.as_dict() for r in results]

    def _record(self, event: ErrorRecorded) -> None:
        self.store.journal.append(ERRORS_STREAM, [event])


def refused(fn: Callable[P, CallToolResult]) -> Callable[P, CallToolResult]:
    """A tool whose library errors come back as a tool error carrying the CLI's one-line
    message (and, at the fix-task limit, the history), with the exit code the CLI would
    use; nothing was written, and the server goes on serving."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> CallToolResult:
        try:
            return fn(*args, **kwargs)
        except EvstoreError as exc:
            lines = [str(exc), *getattr(exc, "history", ())]
            log.info("mcp_tool_refused", tool=fn.__name__, error=str(exc), exit_code=exc.exit_code)
            return CallToolResult(
                content=[TextContent(type="text", text="\n".join(lines))],
                structured_content={"error": str(exc), "exit_code": exc.exit_code,
                                    "history": list(getattr(exc, "history", ()))},
                is_error=True,
            )

    return call


def result(text: str, structured: Any) -> CallToolResult:
    """A short line for the model to read, and the data for programs."""
    content = structured if isinstance(structured, dict) else {"result": structured}
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content)


def build(server: Server) -> MCPServer:  # noqa: C901, PLR0915 - one tool after another
    """The MCP server with every tool and resource registered on `server`."""
    app: MCPServer = MCPServer(
        "evstore",
        version=__version__,
        instructions=(
            "evstore keeps a task pipeline's backlog (Phase > Milestone > Task > Subtask, ids like "
            "P1.M1.T1.S1) as an append-only journal; tasks.json and the other files are written "
            "from it. Take work with next_item(claim=true), record progress with update_status, "
            "report failures with record_failure, and read state with show, get_item, history, "
            "ready and blocked. Every write is durable when the tool returns."
        ),
    )
    store = server.store

    @app.tool(annotations=WRITES)
    @refused
    def update_status(
        item_id: ItemArg,
        status: StatusArg,
        ctx: Context,
        reason: Annotated[str | None, Field(description="Why, in a few words.")] = None,
        session: SessionArg = None,
    ) -> CallToolResult:
        """Record a new status for one backlog item (e.g. Complete when its work is done)."""
        name = server.session(session)
        event = ItemStatusChanged(item_id=item_id, status=validate_status(status), reason=reason)
        server.identify(ctx)
        appended, exports = server.write(name, lambda: store.append(name, [event]))
        return result(f"{item_id} → {status} (seq {appended.last_seq})", {
            "session": name, "item_id": item_id, "status": status, "seq": appended.last_seq,
            "version": appended.last_version, "exports": exports})

    @app.tool(annotations=WRITES)
    @refused
    def update_statuses(
        updates: Annotated[
            list[StatusUpdate],
            Field(min_length=1, description="The updates, applied in order, all or none."),
        ],
        ctx: Context,
        session: SessionArg = None,
    ) -> CallToolResult:
        """Record several status updates in one transaction: all are written or none."""
        name = server.session(session)
        events = [ItemStatusChanged(item_id=u.item_id, status=validate_status(u.status),
                                    reason=u.reason) for u in updates]
        server.identify(ctx)
        appended, exports = server.write(name, lambda: store.append(name, events))
        saved = len(events) - 1
        return result(f"{len(events)} update(s) in one transaction (seq "
                      f"{appended.first_seq}..{appended.last_seq})", {
            "session": name, "items_written": len(events), "write_ops_saved": saved,
            "efficiency": f"{saved / len(events) * 100:.1f}%", "first_seq": appended.first_seq,
            "last_seq": appended.last_seq, "version": appended.last_version, "exports": exports})

    @app.tool(annotations=WRITES)
    @refused
    def next_item(
        ctx: Context,
        claim: Annotated[bool, Field(  # noqa: FBT002 - the SDK passes tool arguments by name
            description="Also mark it Implementing, atomically: no other agent gets it.")] = False,
        reason: Annotated[str | None, Field(description="Recorded with the claim.")] = None,
        level: LevelArg = "any",
        session: SessionArg = None,
    ) -> CallToolResult:
        """The next backlog item to work on: depth-first, the first Planned item whose
        dependencies are all Complete. With claim=true it is marked Implementing in the same
        transaction, so agents working side by side never get the same item."""
        name = server.session(session)
        owner = server.identify(ctx)
        if claim:
            found, exports = server.write(name, lambda: store.next_item(
                name, claim=True, level=level, owner=owner, reason=reason))
        else:
            found, exports = store.next_item(name, level=level), []
        data = {**found.as_dict(), "session": name, "exports": exports}
        if found.item is None:
            return result("nothing is ready", data)
        verb = "claimed" if found.claimed else "next"
        return result(f"{verb}: {found.item.id} {found.item.title}", data)

    @app.tool(annotations=WRITES)
    @refused
    def release_item(
        item_id: ItemArg,
        reason: Annotated[str, Field(min_length=1, description="Why the claim is given up.")],
        ctx: Context,
        session: SessionArg = None,
    ) -> CallToolResult:
        """Give back a claimed (Implementing) item: it becomes Planned and can be taken again."""
        name = server.session(session)
        owner = server.identify(ctx)
        seq, exports = server.write(
            name, lambda: store.release(name, item_id, reason=reason, owner=owner)
        )
        return result(
            f"{item_id} → Planned (seq {seq})",
            {
                "session": name,
                "item_id": item_id,
                "status": "Planned",
                "seq": seq,
                "exports": exports,
            },
        )

    @app.tool(annotations=WRITES)
    @refused
    def record_failure(
        item_id: ItemArg,
        error: Annotated[
            str, Field(min_length=1, description="What failed: the first line titles the fix task.")
        ],
        ctx: Context,
        max_fix_tasks: Annotated[
            int, Field(ge=1, le=10, description="Fix tasks allowed for this item before giving up.")
        ] = 3,
        session: SessionArg = None,
    ) -> CallToolResult:
        """Record that a task or subtask failed and add a fix subtask right after it. At the
        limit of fix tasks the call fails with the fix history instead."""
        from projections.fix_tasks import record_failure as record  # noqa: PLC0415

        name = server.session(session)
        server.identify(ctx)
        outcome, exports = server.write(name, lambda: record(store, name, item_id, error,
                                                             max_fix_tasks=max_fix_tasks))
        return result(f"fix task {outcome.fix_id} added (attempt {outcome.attempt} of "
                      f"{outcome.max_fix_tasks})",
                      {**outcome.as_dict(), "session": name, "exports": exports})

    def _batch(name: str) -> Any:
        from projections.batch_runs import BatchRun  # noqa: PLC0415

        return BatchRun(store, name)

    @app.tool(annotations=WRITES)
    @refused
    def batch_next(ctx: Context, session: SessionArg = None) -> CallToolResult:
        """Take the next item of the session's unfinished batch and mark it in flight."""
        name = server.session(session)
        server.identify(ctx)
        outcome, exports = server.write(name, lambda: _batch(name).next())
        data = {"item": outcome.item, "batch_id": outcome.batch_id, "remaining": outcome.remaining,
                "in_flight": outcome.in_flight, "held": outcome.held, "reason": outcome.reason,
                "exports": exports}
        return result(outcome.item or f"nothing to hand out: {outcome.reason}", data)

    def _batch_outcome(kind: str, ctx: Context, session: str | None, act: Callable[[Any], Any],
                       item: str) -> CallToolResult:
        name = server.session(session)
        server.identify(ctx)
        _, exports = server.write(name, lambda: act(_batch(name)))
        return result(
            f"{item} {kind}", {"session": name, "item": item, "outcome": kind, "exports": exports}
        )

    @app.tool(annotations=WRITES)
    @refused
    def batch_done(item: Annotated[str, Field(description="An item in flight.")], ctx: Context,
                   session: SessionArg = None) -> CallToolResult:
        """Mark an in-flight batch item completed."""
        return _batch_outcome("completed", ctx, session, lambda run: run.done(item), item)

    @app.tool(annotations=WRITES)
    @refused
    def batch_fail(item: Annotated[str, Field(description="An item in flight.")],
                   error: Annotated[str, Field(min_length=1, description="What went wrong.")],
                   ctx: Context, session: SessionArg = None) -> CallToolResult:
        """Mark an in-flight batch item failed, with the error."""
        return _batch_outcome("failed", ctx, session, lambda run: run.fail(item, error), item)

    @app.tool(annotations=WRITES)
    @refused
    def batch_skip(item: Annotated[str, Field(description="A queued item.")],
                   reason: Annotated[str, Field(min_length=1, description="Why it is skipped.")],
                   ctx: Context, session: SessionArg = None) -> CallToolResult:
        """Skip a queued batch item, with the reason."""
        return _batch_outcome("skipped", ctx, session, lambda run: run.skip(item, reason), item)

    @app.tool(annotations=READ_ONLY)
    @refused
    def batch_status(session: SessionArg = None) -> CallToolResult:
        """The session's unfinished batch: queue, outcomes, what remains, what is held."""
        name = server.session(session)
        found = _batch(name).status()
        if found is None:
            return result(f"no unfinished batch in session {name}", {"batch": None})
        return result(f"batch {found['session_id']}: {len(found['remaining'])} remaining, "
                      f"in flight: {', '.join(found['in_flight']) or 'none'}", {"batch": found})

    @app.tool(annotations=READ_ONLY)
    @refused
    def show(
        session: SessionArg = None,
        depth: Annotated[
            int, Field(ge=1, le=4, description="Levels: 1 phases ... 4 subtasks.")
        ] = 4,
    ) -> CallToolResult:
        """The backlog as a tree of items (id, type, title, status), with status counts."""
        from collections import Counter  # noqa: PLC0415

        name = server.session(session)
        state = store.state(name, "tasks")
        doc = state.doc
        counts = (
            Counter(str(i.get("status")) for i, _, _ in state.index.values()) if doc else Counter()
        )
        tree = _tree(doc["backlog"], depth) if doc else []
        return result(
            f"{name}: {sum(counts.values())} items, "
            + ", ".join(f"{s} {n}" for s, n in counts.most_common()),
            {"session": name, "counts": dict(counts), "items": tree},
        )

    @app.tool(annotations=READ_ONLY)
    @refused
    def get_item(item_id: ItemArg, session: SessionArg = None) -> CallToolResult:
        """One backlog item: every field but its children, its children's status counts,
        its dependencies with their statuses, and whether they are all met."""
        from collections import Counter  # noqa: PLC0415

        from projections.backlog import children_of  # noqa: PLC0415

        name = server.session(session)
        state = store.state(name, "tasks")
        item = state.item(item_id) if state.doc is not None else None
        if item is None:
            raise InvalidInputError(f"unknown item {item_id!r} in session {name!r}")
        kids = children_of(item) or []
        fields = {k: v for k, v in item.items() if not (isinstance(v, list) and v is kids)}
        deps = [d for d in item.get("dependencies") or [] if isinstance(d, str)]
        dep_status = {d: (state.item(d) or {}).get("status") for d in deps}
        met = all(s == "Complete" for d, s in dep_status.items() if state.item(d) is not None)
        return result(f"{item_id} {item.get('status')}: {item.get('title', '')}", {
            "session": name, "item": fields,
            "children": dict(Counter(str(k.get("status")) for k in kids)),
            "dependencies": [{"id": d, "status": s} for d, s in dep_status.items()],
            "dependencies_met": met})

    @app.tool(annotations=READ_ONLY)
    @refused
    def history(item_id: ItemArg, session: SessionArg = None) -> CallToolResult:
        """Everything that happened to an item: statuses and how long each held, who set
        it (tool, user, host, the agent's client), failures, fix tasks, batch outcomes."""
        from eventstore.records import utc_now  # noqa: PLC0415
        from projections.history import item_history  # noqa: PLC0415

        name = server.session(session)
        entries = item_history(store.journal.read(name), item_id, now=utc_now())
        if not entries:
            raise InvalidInputError(f"item {item_id!r} does not appear in session {name!r}")
        return result(f"{item_id}: {len(entries)} entries", {"session": name, "entries": entries})

    @app.tool(annotations=READ_ONLY)
    @refused
    def ready(
        session: SessionArg = None,
        level: LevelArg = "any",
    ) -> CallToolResult:
        """Every item next_item could hand out, in the order it would."""
        name = server.session(session)
        items = [i.as_dict() for i in store.ready(name, level=level)]
        return result(f"{len(items)} item(s) ready", {"session": name, "items": items})

    @app.tool(annotations=READ_ONLY)
    @refused
    def blocked(
        session: SessionArg = None,
        level: LevelArg = "any",
    ) -> CallToolResult:
        """Every Planned item held back by dependencies that are not Complete, with them."""
        name = server.session(session)
        items = [i.as_dict() for i in store.blocked(name, level=level)]
        return result(f"{len(items)} item(s) blocked", {"session": name, "items": items})

    @app.tool(annotations=READ_ONLY)
    @refused
    def status() -> CallToolResult:
        """Where everything stands: the journal, each session's projections and their lag,
        unfinished batches, the last recorded error."""
        from projections.status import status_report  # noqa: PLC0415

        report = status_report(store)
        return result(
            "all projections current" if report.current else "some projections lag",
            report.as_dict(),
        )

    @app.tool(
        annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=True)
    )
    @refused
    def project(session: SessionArg = None) -> CallToolResult:
        """Write the session's files (tasks.json, batch-progress.json, fix history) now."""
        name = server.session(session)
        with server._lock:  # noqa: SLF001 - the server's own write lock
            results = [r.as_dict() for r in store.project(name)]
        written = sum(1 for r in results if r["action"] == "written")
        return result(f"{written} file(s) written", {"session": name, "results": results})

    @app.resource("evstore://sessions/{session}/tasks.json", mime_type="application/json",
                  description="The session's tasks.json as the journal renders it now.")
    def tasks_json(session: str) -> str:
        with server.guarded():
            store.require_session(session)
            state = store.state(session, "tasks")
            rendered = next(p for p in store.projections if p.name == "tasks").render(state)
            return (rendered or b"null").decode()

    @app.resource("evstore://sessions/{session}/history/{item}", mime_type="application/json",
                  description="An item's history entries as JSON.")
    def item_history_resource(session: str, item: str) -> str:
        import orjson  # noqa: PLC0415

        from eventstore.records import utc_now  # noqa: PLC0415
        from projections.history import item_history  # noqa: PLC0415

        with server.guarded():
            store.require_session(session)
            entries = item_history(store.journal.read(session), item, now=utc_now())
            return orjson.dumps(entries, option=orjson.OPT_INDENT_2).decode()

    @app.resource(
        "evstore://report",
        mime_type="text/html",
        description="The HTML report of every session (backlog, status chart, timelines).",
    )
    def report_resource() -> str:
        from cli.report_html import report_page  # noqa: PLC0415

        with server.guarded():
            return report_page(store, store.sessions(), None).decode()

    return app


def _tree(items: list[Any], depth: int) -> list[dict[str, Any]]:
    from projections.backlog import children_of  # noqa: PLC0415

    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        node = {k: item.get(k) for k in ("id", "type", "title", "status")}
        kids = children_of(item) or []
        if depth > 1 and kids:
            node["children"] = _tree(kids, depth - 1)
        out.append(node)
    return out
