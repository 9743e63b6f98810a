"""Make docs/report.png: `evstore report` of the real 84-version history, in headless Chromium.

    python docs/report_screenshot.py [OUT.png]

Each committed version of the real tasks.json (tests/fixtures/hacky-hack/history-*.tar.xz)
is imported in turn with `evstore import`, as a pipeline re-importing its file would; the
journal then holds the differences between versions as events.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT / "tests" / "fixtures" / "hacky-hack" / "history-001_14b9dc2a33c7.tar.xz"
SESSION = "001_14b9dc2a33c7"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--hide-scrollbars"]


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "report.png").resolve()
    evstore = str(Path(sys.executable).with_name("evstore"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="evstore-report-") as tmp:
        work = Path(tmp)
        with tarfile.open(ARCHIVE) as archive:
            archive.extractall(work / "history", filter="data")
        versions = sorted((work / "history" / SESSION).glob("[0-9][0-9][0-9]_*.json"))
        plan = work / "plan" / SESSION
        plan.mkdir(parents=True)

        def run(*args: str) -> None:
            subprocess.run([evstore, *args], cwd=work, check=True, capture_output=True)  # noqa: S603

        run("init")
        for version in versions:
            shutil.copyfile(version, plan / "tasks.json")
            run("import", f"plan/{SESSION}/tasks.json", "--session", SESSION)
        run("report", "--session", SESSION, "-o", "report.html")
        subprocess.run(  # noqa: S603
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}", "--window-size=1280,1100",
             f"--screenshot={out}", (work / "report.html").as_uri() + "#P1.M1.T2.S1"],
            check=True, capture_output=True,
        )
    print(f"wrote {out} ({len(versions)} versions imported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
