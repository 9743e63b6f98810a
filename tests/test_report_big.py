"""The report of a big backlog stays a page a browser opens (issue 15): the tree below the
milestones and the timelines travel packed, the page draws them on demand, and a link,
a filter or a click reaches any item."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import evstore_bin

from projections.report import BIG_BACKLOG

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
HOSTILE = '</script><img src=x onerror=alert(1)> & <!--'


def backlog(tasks: int, per_task: int) -> dict[str, Any]:
    """One phase, one milestone, `tasks` tasks of `per_task` subtasks each."""
    return {"backlog": [{
        "type": "Phase", "id": "P1", "title": "Phase one", "status": "Planned", "description": "d",
        "milestones": [{
            "type": "Milestone", "id": "P1.M1", "title": "Milestone one", "status": "Planned",
            "description": "d",
            "tasks": [{
                "type": "Task", "id": f"P1.M1.T{t}", "title": f"Task {t}", "status": "Planned",
                "description": "d",
                "subtasks": [{
                    "type": "Subtask", "id": f"P1.M1.T{t}.S{s}",
                    "title": HOSTILE if (t, s) == (2, 3) else f"Subtask {s} of task {t}",
                    "status": "Planned", "story_points": 1, "dependencies": [], "context_scope": "x",
                } for s in range(1, per_task + 1)],
            } for t in range(1, tasks + 1)],
        }],
    }]}


def evstore(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([evstore_bin(), *args], cwd=root, capture_output=True, text=True,  # noqa: S603
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session of 3,000+ items (over BIG_BACKLOG), two of them changed after the import."""
    root = tmp_path_factory.mktemp("big")
    doc = backlog(tasks=30, per_task=100)
    (root / "plan").mkdir()
    (root / "plan" / "tasks.json").write_bytes(orjson.dumps(doc))
    evstore(root, "init")
    evstore(root, "import", "plan/tasks.json", "-s", "big")
    evstore(root, "append", "-s", "big", "P1.M1.T7.S42", "Implementing", "--reason", "agent took it")
    evstore(root, "append", "-s", "big", "P1.M1.T7.S42", "Complete")
    evstore(root, "report", "-o", "r.html")
    return root


def packed(html: str) -> dict[str, Any]:
    (blob,) = re.findall(r'<script type="application/octet-stream" class="evstore-bulk" data-session="big">([^<]*)</script>', html)
    return json.loads(gzip.decompress(base64.b64decode(blob)))


def test_a_big_tree_travels_packed_with_only_touched_timelines(big: Path) -> None:
    """The packed data holds every item (id, status, title) in order; timelines only for
    the item something happened to, the import once for the others; the page is a
    fraction of what drawing every row would take."""
    html = (big / "r.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="evstore-data">(.*?)</script>', html, re.S)[1])  # type: ignore[index]
    assert data["sessions"]["big"]["bulk"] is True
    bulk = packed(html)
    (phase,) = bulk["tree"]
    assert phase[:3] == ["P1", "Planned", "Phase one"]
    tasks = phase[3][0][3]
    assert len(tasks) == 30
    assert sum(len(t[3]) for t in tasks) == 3000
    assert tasks[1][3][2] == ["P1.M1.T2.S3", "Planned", HOSTILE]
    assert tasks[6][3][41][:2] == ["P1.M1.T7.S42", "Complete"]
    timelines = bulk["timelines"]
    assert list(timelines["items"]) == ["P1.M1.T7.S42"]
    kinds = [(e["kind"], e.get("status")) for e in timelines["items"]["P1.M1.T7.S42"]["entries"]]
    assert kinds == [("imported", "Planned"), ("status", "Implementing"), ("status", "Complete")]
    assert timelines["imported"]["kind"] == "imported"
    assert timelines["imported"]["source"] == "plan/tasks.json"
    assert "Subtask 1 of task 30" not in html  # drawn on demand, not in the page
    assert "<img src=x" not in html
    assert len(html.encode()) < 3000 * 60  # far below a drawn row (~250 bytes) per item


def test_a_small_backlog_is_drawn_whole(tmp_path: Path) -> None:
    """Below the threshold nothing changes: every row in the page, no packed data."""
    doc = backlog(tasks=2, per_task=3)
    (tmp_path / "tasks.json").write_bytes(orjson.dumps(doc))
    evstore(tmp_path, "init")
    evstore(tmp_path, "import", "tasks.json", "-s", "small")
    evstore(tmp_path, "report", "-o", "r.html")
    html = (tmp_path / "r.html").read_text()
    assert "evstore-bulk" not in html.split("<script>", 1)[0]
    assert 'data-item="P1.M1.T2.S3"' in html
    assert BIG_BACKLOG > 9


def chromium_dom(page: Path, suffix: str) -> str:
    assert CHROMIUM is not None
    return subprocess.run(  # noqa: S603
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", f"--user-data-dir={page.parent / 'chromium-profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri() + suffix],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout


@pytest.mark.browser
@needs_browser
def test_chromium_opens_a_deep_item_of_a_big_backlog_from_its_link(big: Path) -> None:
    """report.html#ITEM unpacks the data, draws the item's ancestors, marks the item and
    shows its timeline: the import, then both changes."""
    dom = chromium_dom(big / "r.html", "#P1.M1.T7.S42")
    assert 'data-rendered="ok"' in dom
    assert "data-errors" not in dom
    assert re.search(r'data-item="P1\.M1\.T7\.S42"[^>]*aria-current="true"', dom)
    panel = dom.split('class="panel timeline"', 1)[1].split("</aside>", 1)[0]
    assert "Timeline of P1.M1.T7.S42" in panel
    assert panel.count("<tr>") == 4  # header + three entries
    assert "→ Complete" in panel
    assert "Subtask 1 of task 30" not in dom  # other branches stay folded


@pytest.mark.browser
@needs_browser
def test_chromium_shows_an_untouched_items_timeline_and_hostile_titles_as_text(big: Path) -> None:
    """An item nothing happened to since the import shows the import as its timeline; a
    hostile title drawn from the packed data is text."""
    dom = chromium_dom(big / "r.html", "#P1.M1.T2.S3")
    assert 'data-rendered="ok"' in dom
    panel = dom.split('class="panel timeline"', 1)[1].split("</aside>", 1)[0]
    assert "imported as Planned" in panel
    assert panel.count("<tr>") == 2
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &lt;!--" in dom
    assert "<img src=x" not in dom


@pytest.mark.browser
@needs_browser
def test_chromium_filters_a_big_tree_in_its_data(big: Path) -> None:
    """?filter= finds items not yet drawn: the matches and their ancestors, opened."""
    dom = chromium_dom(big / "r.html", "?filter=P1.M1.T30.S10")
    assert 'data-rendered="ok"' in dom
    assert 'data-shown="2"' in dom  # S10 and S100
    tree = dom.split('<div class="tree"', 1)[1].split("</div>\n</div>", 1)[0]
    items = re.findall(r'data-item="([^"]+)"', tree)
    assert items == ["P1", "P1.M1", "P1.M1.T30", "P1.M1.T30.S10", "P1.M1.T30.S100"]
