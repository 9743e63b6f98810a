"""`evstore report` as one self-contained HTML page: Jinja2 lays it out (escaping every
item title and error message), uPlot draws the chart, and both uPlot and the data travel
inside the file, so it opens anywhere with no network."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import jinja2

    from eventstore.progress import Progress
    from eventstore.store import Store

HERE = Path(__file__).parent
ASSETS = HERE / "assets"
STATUS_COLOURS = {
    "Complete": "#2f9e44",
    "Implementing": "#1c7ed6",
    "Researching": "#7048e8",
    "Retrying": "#f59f00",
    "Ready": "#c2255c",
    "Planned": "#868e96",
    "Failed": "#e03131",
    "Obsolete": "#ced4da",
}


# A big session's page shows its phases and milestones; the levels below them are drawn
# from the embedded data when a milestone is opened (or a filter or link needs them).
SHOWN_LEVELS = 2


def report_page(
    store: Store, sessions: list[str], until_seq: int | None, *, progress: Progress | None = None
) -> bytes:
    """The page of `sessions` as of `until_seq` (None: the head)."""
    from projections.report_context import report_context  # noqa: PLC0415

    return render_report(report_context(store, sessions, until_seq, progress=progress))


def render_report(context: dict[str, Any]) -> bytes:
    """The page for `context`: title, generated_at, journal, head, until, sessions (each a
    projections.report.session_report), errors (eventstore.reports.error_summary): what
    projections.report_context.report_context gives.

    A big session (`session_report(...)["big"]`) keeps its page small: the tree below
    SHOWN_LEVELS and the timelines travel gzip-compressed (base64, in a
    `<script type="application/octet-stream" class="evstore-bulk">` block) and the page's
    script unpacks them; everything else is as for any session."""
    data: dict[str, Any] = {"colours": STATUS_COLOURS, "sessions": {}}
    bulk: dict[str, str] = {}
    for s in context["sessions"]:
        if s.get("big"):
            bulk[s["session"]] = _packed(
                {
                    "tree": [_node(item) for item in s["backlog"] if isinstance(item, dict)],
                    "timelines": s["timelines"],
                }
            )
            data["sessions"][s["session"]] = {"chart": s["chart"], "bulk": True}
        else:
            data["sessions"][s["session"]] = {"chart": s["chart"], "timelines": s["timelines"]}
    page = _template().render(
        **context,
        colours=STATUS_COLOURS,
        shown_levels=SHOWN_LEVELS,
        bulk=bulk,
        data_json=script_json(data),
        uplot_js=(ASSETS / "uPlot.iife.min.js").read_text(encoding="utf-8"),
        uplot_css=(ASSETS / "uPlot.min.css").read_text(encoding="utf-8"),
    )
    return page.encode("utf-8")


def _node(item: dict[str, Any]) -> list[Any]:
    """An item as the page's script draws it: [id, status, title] plus [children] if any."""
    node: list[Any] = [str(item.get("id")), str(item.get("status")), str(item.get("title", ""))]
    kids = _children(item)
    if kids:
        node.append([_node(kid) for kid in kids])
    return node


def _packed(value: Any) -> str:
    """JSON, gzip-compressed, base64: what `DecompressionStream("gzip")` unpacks. Titles
    repeat their words and ids their prefixes, so 100,000 items come to about a tenth."""
    import base64  # noqa: PLC0415
    import gzip  # noqa: PLC0415

    raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def script_json(value: Any) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can appear, whatever a title
    says, because every <, > and & is written as a \\u escape (still the same JSON)."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _template() -> jinja2.Template:
    import jinja2  # noqa: PLC0415 - only this command needs it

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["children_of"] = _children
    return env.get_template("report.html.j2")


def _children(item: dict[str, Any]) -> list[dict[str, Any]]:
    from projections.backlog import children_of  # noqa: PLC0415

    kids = children_of(item) or []
    return [kid for kid in kids if isinstance(kid, dict)]
