"""`evstore report`: one self-contained HTML page, checked as data and in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import Result
from support import SESSION

from eventstore import Store
from eventstore.runner import ProjectionRunner
from projections.backlog import BacklogState, TasksProjection
from projections.report import session_report

Cli = Callable[..., Result]
Run = Callable[..., subprocess.CompletedProcess[str]]
S1, S2, S3 = "P1.M1.T1.S1", "P1.M1.T1.S2", "P1.M1.T1.S3"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
DATA_BLOCK = re.compile(r'<script type="application/json" id="evstore-data">(.*?)</script>', re.DOTALL)


def page_data(html: str) -> dict[str, Any]:
    (block,) = DATA_BLOCK.findall(html)
    return json.loads(block)


def counts_at(store: Store, seq: int) -> dict[str, int]:
    """Items per status after event `seq`, by folding the real tasks projection up to it:
    independent of the report's own incremental counting."""
    runner = ProjectionRunner(store.journal, [TasksProjection()])
    state, _, _ = runner.fold(TasksProjection(), SESSION, until=seq)
    return dict(Counter(str(item.get("status")) for item, _, _ in state.index.values()))


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", f"--user-data-dir={cwd / 'chromium-profile'}", "--window-size=1280,1400", *args],
        capture_output=True, text=True, timeout=120, check=True, cwd=cwd,
    )


def dom_of(page: Path, fragment: str = "") -> str:
    return chromium("--dump-dom", page.as_uri() + fragment, cwd=page.parent).stdout


def busy_session(cli: Cli) -> None:
    """Status changes, a failure with its fix task, and a batch run with each outcome."""
    for item, status in ((S1, "Implementing"), (S1, "Complete"), (S2, "Implementing"), (S3, "Researching")):
        assert cli("append", "-s", SESSION, item, status).exit_code == 0
    assert cli("fail", S2, "-s", SESSION, "--error", "npm test: 3 failing").exit_code == 0
    assert cli("batch", "start", "a-1", "a-2", "a-3", "-s", SESSION).exit_code == 0
    for outcome in ("done", "fail", "skip"):
        item = cli("batch", "next", "-s", SESSION).stdout.strip()
        extra = {"done": (), "fail": ("--error", "exit 1"), "skip": ("--reason", "merged")}[outcome]
        assert cli("batch", outcome, item, "-s", SESSION, *extra).exit_code == 0, outcome
    assert cli("append", "-s", SESSION, S2, "Complete").exit_code == 0


@pytest.fixture
def busy(cli: Cli, store: Store) -> Store:
    busy_session(cli)
    return store


def test_the_chart_holds_the_counts_after_every_change(busy: Store, cli: Cli, project_dir: Path) -> None:
    """Every point of the embedded chart equals a fold of the journal up to that seq; the
    backlog counts and the fix and batch tables match what the journal says."""
    result = cli("report", "--out", "r.html")
    assert result.exit_code == 0, result.output
    html = (project_dir / "r.html").read_text()
    chart = page_data(html)["sessions"][SESSION]["chart"]
    assert chart["seq"][-1] == max(e.seq for e in busy.journal.read(SESSION))
    assert len(chart["seq"]) >= 6  # the import, five status changes at least
    for index, seq in enumerate(chart["seq"]):
        expected = counts_at(busy, seq)
        drawn = {status: column[index] for status, column in chart["series"].items() if column[index]}
        assert drawn == expected, f"seq {seq}"
    final = Counter(str(i.get("status")) for i, _, _ in BacklogState(busy.state(SESSION, "tasks").doc).index.values())
    for status, count in final.items():
        assert f'data-count="{status}">{count}<' in html
    assert "npm test: 3 failing" in html  # the fix-task table's last error
    assert re.search(r'<td class="num">3</td><td class="num">1</td><td class="num">1</td><td class="num">1</td>', html)


@pytest.mark.usefixtures("busy")
def test_the_page_needs_nothing_from_the_network(cli: Cli, project_dir: Path) -> None:
    assert cli("report", "-o", "r.html").exit_code == 0
    html = (project_dir / "r.html").read_text()
    assert not re.search(r'<(script|img|iframe)[^>]+src=|<link\b|@import|url\(\s*["\']?https?:', html)
    assert "uPlot" in html
    assert len(html.encode()) < 200_000


def test_until_shows_the_journal_as_it_was(busy: Store, cli: Cli, project_dir: Path) -> None:
    seq = 4  # the import and the first two status changes
    assert cli("report", "--until", str(seq), "-o", "then.html").exit_code == 0
    data = page_data((project_dir / "then.html").read_text())["sessions"][SESSION]
    assert data["chart"]["seq"][-1] == seq
    assert {s: c[-1] for s, c in data["chart"]["series"].items() if c[-1]} == counts_at(busy, seq)
    assert "No fix tasks." in (project_dir / "then.html").read_text()


def test_timelines_and_sampling_stay_bounded(store: Store, cli: Cli) -> None:
    """Sixty changes of one item: the chart keeps 10 points ending at the last change,
    the timeline its first entry and its last 4, with held times that add up."""
    for n in range(60):
        assert cli("append", "-s", SESSION, S1, "Implementing" if n % 2 else "Complete").exit_code == 0
    events = list(store.journal.read(SESSION))
    report = session_report(SESSION, events, now=datetime.now(UTC), max_points=10, max_entries=5)
    chart = report["chart"]
    assert len(chart["seq"]) == 10
    assert chart["sampled"]
    assert chart["seq"][-1] == events[-1].seq
    assert {s: c[-1] for s, c in chart["series"].items() if c[-1]} == counts_at(store, events[-1].seq)
    timeline = report["timelines"]["items"][S1]
    assert [e["kind"] for e in timeline["entries"]] == ["imported", "status", "status", "status", "status"]
    assert timeline["omitted"] == 61 - 5
    assert [e["seq"] for e in timeline["entries"][1:]] == [e.seq for e in events[-4:]]
    assert all(e["held_s"] >= 0 for e in timeline["entries"])
    # the import held until the first change, not until the first entry kept
    imported_at = datetime.fromisoformat(events[1].recorded_at)
    first_change = datetime.fromisoformat(events[2].recorded_at)
    assert timeline["entries"][0]["held_s"] == round((first_change - imported_at).total_seconds(), 3)


@pytest.mark.usefixtures("busy")
def test_bad_input_writes_nothing(run: Run, project_dir: Path) -> None:
    unknown = run("report", "--session", "nope", "-o", "r.html", cwd=project_dir)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("evstore: error: unknown session 'nope'")
    assert not (project_dir / "r.html").exists()
    bad_until = run("report", "--until", "yesterday", "-o", "r.html", cwd=project_dir)
    assert bad_until.returncode == 2
    assert "invalid --until value 'yesterday'" in bad_until.stderr
    missing_dir = run("report", "-o", "no/such/dir/r.html", cwd=project_dir)
    assert missing_dir.returncode == 4
    assert missing_dir.stderr.strip().splitlines() == ["evstore: error: cannot write report no/such/dir/r.html: No such file or directory"]
    assert list(project_dir.glob("*.html")) == []


@pytest.mark.usefixtures("busy")
def test_out_dash_writes_the_page_to_stdout(run: Run, project_dir: Path) -> None:
    result = run("report", "-o", "-", "-s", SESSION, cwd=project_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("<!doctype html>")
    assert SESSION in page_data(result.stdout)["sessions"]


@pytest.mark.usefixtures("store")
def test_hostile_titles_stay_text(cli: Cli, project_dir: Path) -> None:
    """A title that closes the script block or opens a tag is escaped in the page and in
    the embedded data, which parses back to the same text."""
    hostile = '</script><script>document.title="pwned"</script><img src=x onerror=alert(1)> & <!--'
    doc = orjson.loads((project_dir / "plan" / SESSION / "tasks.json").read_bytes())
    doc["backlog"][0]["milestones"][0]["tasks"][0]["subtasks"][0]["title"] = hostile
    (project_dir / "plan" / SESSION / "tasks.json").write_bytes(orjson.dumps(doc))
    assert cli("import", f"plan/{SESSION}/tasks.json", "-s", SESSION).exit_code == 0
    assert cli("fail", S1, "-s", SESSION, "--error", hostile).exit_code == 0
    assert cli("report", "-o", "r.html").exit_code == 0
    html = (project_dir / "r.html").read_text()
    assert html.count("</script>") == 3  # the data block, uPlot, the page's script
    assert "<img src=x" not in html
    data = page_data(html)
    assert any(e.get("error") == hostile for e in data["sessions"][SESSION]["timelines"]["items"][S1]["entries"])


def test_an_empty_journal_gets_a_page_too(cli: Cli, project_dir: Path) -> None:
    assert cli("init").exit_code == 0
    result = cli("report", "-o", "r.html")
    assert result.exit_code == 0, result.output
    assert "No sessions in this journal yet" in (project_dir / "r.html").read_text()


# --- in a real browser ---------------------------------------------------------------------


@pytest.mark.browser
@needs_browser
def test_chromium_renders_the_chart_with_the_right_numbers(busy: Store, cli: Cli, project_dir: Path) -> None:
    """Headless Chromium runs the page's script without an error; the chart's own data,
    read back from the DOM, holds each status's final count; an item's timeline shows
    every entry `evstore history` lists for it."""
    assert cli("report", "-o", "r.html").exit_code == 0
    page = project_dir / "r.html"
    dom = dom_of(page, "#" + S2)
    assert 'data-rendered="ok"' in dom
    assert "data-errors" not in dom
    chart = re.search(r'class="chart" data-session="[^"]+"[^>]*data-points="(\d+)" data-final="([^"]+)" data-total="(\d+)"', dom)
    assert chart is not None, "the chart did not draw"
    final = json.loads(chart.group(2).replace("&quot;", '"'))
    doc = busy.state(SESSION, "tasks").doc
    expected = Counter(str(i.get("status")) for i, _, _ in BacklogState(doc).index.values())
    assert final == {s: expected.get(s, 0) for s in final}
    assert {s for s, n in final.items() if n} == set(expected)
    assert int(chart.group(3)) == sum(expected.values())
    assert int(chart.group(1)) == len(page_data(page.read_text())["sessions"][SESSION]["chart"]["seq"])
    history = json.loads(cli("history", S2, "-s", SESSION, "--json").stdout)
    panel = dom.split('class="panel timeline"', 1)[1].split("</aside>", 1)[0]
    assert f"Timeline of {S2}" in panel
    assert panel.count("<tr>") == 1 + len(history)
    assert "npm test: 3 failing" in panel


@pytest.mark.browser
@needs_browser
@pytest.mark.usefixtures("store")
def test_chromium_shows_a_hostile_title_as_text(cli: Cli, project_dir: Path) -> None:
    hostile = '</script><script>document.documentElement.dataset.pwned="1"</script><b>bold</b>'
    doc = orjson.loads((project_dir / "plan" / SESSION / "tasks.json").read_bytes())
    doc["backlog"][0]["title"] = hostile
    (project_dir / "plan" / SESSION / "tasks.json").write_bytes(orjson.dumps(doc))
    assert cli("import", f"plan/{SESSION}/tasks.json", "-s", SESSION).exit_code == 0
    assert cli("report", "-o", "r.html").exit_code == 0
    dom = dom_of(project_dir / "r.html")
    assert 'data-rendered="ok"' in dom
    assert "pwned" not in dom.split("<body", 1)[0]  # no attribute was set on <html>
    assert "&lt;b&gt;bold&lt;/b&gt;" in dom


@pytest.mark.browser
@needs_browser
@pytest.mark.usefixtures("busy")
def test_chromium_screenshots_the_report(cli: Cli, project_dir: Path) -> None:
    assert cli("report", "-o", "r.html").exit_code == 0
    chromium("--screenshot=shot.png", (project_dir / "r.html").as_uri(), cwd=project_dir)
    png = (project_dir / "shot.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 1400)
    assert len(png) > 20_000  # a blank page compresses to a few kB


class _Visible(HTMLParser):
    """The data-item of every element not hidden by itself or an ancestor."""

    VOID = frozenset({"meta", "input", "br", "img", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[bool] = []
        self.items: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        hidden = "hidden" in found or bool(self.stack and self.stack[-1])
        if "data-item" in found and not hidden:
            self.items.append(str(found["data-item"]))
        if tag not in self.VOID:
            self.stack.append(hidden)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()


@pytest.mark.browser
@needs_browser
@pytest.mark.usefixtures("busy")
def test_chromium_filters_the_tree_from_the_url(cli: Cli, project_dir: Path) -> None:
    """?filter=TEXT keeps the items whose row holds the text and their ancestors."""
    assert cli("report", "-o", "r.html").exit_code == 0
    page = project_dir / "r.html"
    dom = chromium("--dump-dom", page.as_uri() + "?filter=P1.M1.T2", cwd=project_dir).stdout
    assert 'data-rendered="ok"' in dom
    visible = _Visible()
    visible.feed(dom.split('<div class="tree"', 1)[1].split("</div>\n</div>", 1)[0])
    assert visible.items == ["P1", "P1.M1", "P1.M1.T2", "P1.M1.T2.S1", "P1.M1.T2.S2", "P1.M1.T2.S3"]


@pytest.mark.usefixtures("busy")
def test_an_until_past_any_seq_means_the_end(cli: Cli, project_dir: Path) -> None:
    """A seq beyond what SQLite's INTEGER holds is "to the end", not an overflow."""
    huge = str(2**64)
    assert cli("report", "--until", huge, "-o", "all.html").exit_code == 0
    assert cli("report", "-o", "head.html").exit_code == 0
    chart = page_data((project_dir / "all.html").read_text())["sessions"][SESSION]["chart"]
    assert chart == page_data((project_dir / "head.html").read_text())["sessions"][SESSION]["chart"]
    replayed = cli("replay", "--until", huge, "--out", "then")
    assert replayed.exit_code == 0, replayed.stderr
    assert (project_dir / "then" / SESSION / "tasks.json").is_file()
