"""`evstore report` as one self-contained HTML page: Jinja2 lays it out (escaping every
item title and error message), uPlot draws the chart, and both uPlot and the data travel
inside the file, so it opens anywhere with no network."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

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


def render_report(context: dict[str, Any]) -> bytes:
    """The page for `context`: title, generated_at, journal, head, until, sessions (each a
    projections.report.session_report), errors (eventstore.reports.error_summary)."""
    data = {
        "colours": STATUS_COLOURS,
        "sessions": {s["session"]: {"chart": s["chart"], "timelines": s["timelines"]} for s in context["sessions"]},
    }
    page = _template().render(
        **context,
        colours=STATUS_COLOURS,
        data_json=script_json(data),
        uplot_js=(ASSETS / "uPlot.iife.min.js").read_text(encoding="utf-8"),
        uplot_css=(ASSETS / "uPlot.min.css").read_text(encoding="utf-8"),
    )
    return page.encode("utf-8")


def script_json(value: Any) -> str:
    """JSON safe inside <script>: no `</script>` or `<!--` can appear, whatever a title
    says, because every <, > and & is written as a \\u escape (still the same JSON)."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@cache
def _template() -> Any:
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
