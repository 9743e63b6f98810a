"""Commands that only read: show, log."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from cli.bounded import BoundedInt
from cli.options import json_option, optional_session, pass_app
from cli.output import emit_json

if TYPE_CHECKING:
    from cli.context import AppContext

STATUS_STYLE = {
    "Complete": "green",
    "Implementing": "cyan",
    "Researching": "blue",
    "Retrying": "yellow",
    "Failed": "bold red",
    "Obsolete": "dim",
    "Planned": "white",
    "Ready": "magenta",
}


@click.command()
@optional_session()
@click.option("--depth", type=BoundedInt(1, 4), default=4, show_default=True,
              help="Levels to show: 1 phases ... 4 subtasks.")
@json_option("Print status counts as JSON.")
@pass_app
def show(obj: AppContext, session: str | None, depth: int, *, as_json: bool) -> None:
    """Show the backlog as a tree with coloured statuses and counts.

    \b
    Example:
      evstore show --session 001 --depth 2
    """
    store = obj.store(read_only=True)
    sessions = [session] if session else store.sessions()
    summaries = []
    trees = []
    for name in sessions:
        doc = store.state(name, "tasks").doc
        counts = _counts(doc)
        summaries.append({"session": name, "items": sum(counts.values()), "counts": dict(counts),
                          "version": store.journal.stream_version(name)})
        trees.append((name, doc, counts))
    if as_json:
        emit_json(summaries)
        return
    from rich.console import Console  # noqa: PLC0415 - only people need rich
    from rich.tree import Tree  # noqa: PLC0415

    console = Console()
    if not trees:
        console.print("no sessions: `evstore import FILE --session S` to start one")
    for name, doc, counts in trees:
        summary = " · ".join(
            f"[{STATUS_STYLE.get(s, 'white')}]{s} {n}[/]" for s, n in counts.most_common()
        )
        tree = Tree(f"[bold]{name}[/]  {sum(counts.values())} items  {summary}")
        if doc is not None:
            _grow(tree, doc["backlog"], depth)
        console.print(tree)


def _counts(doc: dict[str, Any] | None) -> Counter[str]:
    from projections.backlog import BacklogState  # noqa: PLC0415

    if doc is None:
        return Counter()
    return Counter(str(item.get("status")) for item, _, _ in BacklogState(doc).index.values())


def _grow(node: Any, items: list[dict[str, Any]], depth: int) -> None:
    from rich.markup import escape  # noqa: PLC0415

    from projections.backlog import children_of  # noqa: PLC0415

    for item in items:
        status = str(item.get("status"))
        kids = children_of(item) or []
        done = sum(1 for k in kids if k.get("status") == "Complete")
        tally = f" [dim]({done}/{len(kids)} complete)[/]" if kids else ""
        branch = node.add(
            f"[{STATUS_STYLE.get(status, 'white')}]{escape(status):<12}[/] "
            f"[bold]{escape(str(item.get('id')))}[/] {escape(str(item.get('title', '')))}{tally}"
        )
        if depth > 1:
            _grow(branch, kids, depth - 1)


@click.command()
@optional_session()
@click.option("--since", type=BoundedInt(0, clamp=True), default=0,
              help="Only events with seq greater than this.")
@click.option("--limit", type=BoundedInt(1, clamp=True), help="At most this many events.")
@json_option("One JSON object per line: seq, stream, version, type, data, meta, "
             "recorded_at, event_id.")
@pass_app
def log(
    obj: AppContext, session: str | None, since: int, limit: int | None, *, as_json: bool
) -> None:
    """List journal events in seq order.

    \b
    Example:
      evstore log --since 120 --json | jq .type
    """
    import orjson  # noqa: PLC0415

    store = obj.store(read_only=True)
    for event in store.journal.read(session, after=since, limit=limit):
        if as_json:
            click.echo(orjson.dumps(event.as_dict()).decode())
        else:
            click.echo(
                f"{event.seq:>6}  {event.recorded_at}  {event.stream} v{event.version}  "
                f"{event.type}  {_summary(event.type, event.data)}"
            )


def _summary(event_type: str, data: dict[str, Any]) -> str:
    if event_type == "ItemStatusChanged":
        return f"{data['item_id']} → {data['status']}"
    if event_type == "BacklogImported":
        return f"{data.get('source')} ({len(data['backlog'].get('backlog', []))} phases)"
    if event_type in ("ItemUpdated", "ItemRemoved"):
        return str(data["item_id"])
    if event_type == "ItemAdded":
        return f"{data['item'].get('id')} under {data.get('parent_id')}"
    if event_type in ("SessionCreated", "SessionMoved"):
        return f"export dir {data['export_dir']}"
    return ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, (dict, list)))[:120]


@click.command()
@click.argument("item")
@optional_session("The item's session (default: the only one that has it).")
@json_option("A list of entries: seq, at, kind, by {tool, user, host, pid}, and the "
             "fields of their kind (README: JSON output).")
@pass_app
def history(obj: AppContext, item: str, session: str | None, *, as_json: bool) -> None:
    """Show an item's timeline: statuses, durations, authors, fixes, batches.

    \b
    Example:
      evstore history P1.M1.T1.S1 --session 001
    """
    from eventstore.errors import InvalidInputError  # noqa: PLC0415
    from eventstore.records import utc_now  # noqa: PLC0415
    from projections.history import item_history  # noqa: PLC0415

    store = obj.store(read_only=True)
    sessions = [session] if session else store.sessions()
    found = {name: item_history(store.journal.read(name), item, now=utc_now()) for name in sessions}
    found = {name: entries for name, entries in found.items() if entries}
    if not found:
        raise InvalidInputError(f"item {item!r} does not appear in session(s) "
                                f"{', '.join(sessions) or '(none)'}")
    if len(found) > 1:
        raise InvalidInputError(f"item {item!r} is in several sessions ({', '.join(found)}): pass "
                                "--session")
    ((name, entries),) = found.items()
    if as_json:
        emit_json(entries)
        return
    click.echo(f"{item} in session {name}")
    for entry in entries:
        click.echo(f"{entry['seq']:>6}  {entry['at']}  {_describe(entry):<58}  {_who(entry['by'])}")


def _describe(entry: dict[str, Any]) -> str:
    kind = entry["kind"]
    held = f" (held {_duration(entry['held_s'])})" if "held_s" in entry else ""
    if kind in ("imported", "added", "status"):
        why = f" [{entry['reason']}]" if entry.get("reason") else ""
        verb = "imported as" if kind == "imported" else "added as" if kind == "added" else "→"
        return f"{verb} {entry['status']}{why}{held}"
    if kind == "failed":
        return f"failed: {entry['error'].splitlines()[0][:40]}"
    if kind == "fix":
        return f"fix #{entry['attempt']} {entry['fix_id']} for {entry['original_id']}"
    if kind == "fix_limit":
        return f"fix limit reached after {entry['attempts']} fixes"
    if kind == "batch":
        return f"batch {entry['batch_id'][:8]}: {entry['outcome']}"
    return str(kind)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{seconds:.1f}s"


def _who(by: dict[str, Any]) -> str:
    owner = by.get("owner") and f"for {by['owner']}"
    client = by.get("client") and f"via {by['client']}"
    parts = (by.get("tool"), by.get("user") and f"{by['user']}@{by.get('host')}", client, owner)
    return " ".join(str(v) for v in parts if v)
