"""The design the code cites is in the repository, and README's Reliability table is there.

Code, tests and docs point at `docs/design.md §N`; every such reference must name a
`## N.` heading of that file, and nothing may point at the design contract that used to
live outside the repository, which contributors do not have.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
# Spelled in two parts so that this file does not match what it looks for.
OLD_REFERENCE = "DESIGN" + " §"
OUTSIDE_PATHS = ("../" + "shared", "/work/" + "shared")
REFERENCE = re.compile(r"docs/design\.md §(\d+)((?:,? (?:and )?§\d+)*)")
MORE_NUMBERS = re.compile(r"§(\d+)")
ANCHOR = re.compile(r"docs/design\.md#([\w-]+)")
HEADING = re.compile(r"^## (\d+)\. (.+)$", re.MULTILINE)
SKIPPED_DIRS = frozenset({
    ".git", ".hypothesis", ".pytest_cache", ".mypy_cache", ".ruff_cache", "__pycache__",
    "node_modules", "build", "dist",
})


def _repository_text_files() -> Iterator[tuple[Path, str]]:
    """Every text file of the checkout, wherever it sits, less caches and virtualenvs."""
    stack = [ROOT]
    while stack:
        directory = stack.pop()
        for path in sorted(directory.iterdir()):
            if path.is_symlink():
                continue
            if path.is_dir():
                skipped = path.name in SKIPPED_DIRS or path.name.endswith(".egg-info")
                if not skipped and not (path / "pyvenv.cfg").exists():
                    stack.append(path)
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary: images, archives, databases


def _sections() -> dict[int, str]:
    return {int(number): title for number, title in HEADING.findall(DESIGN.read_text())}


def _slug(title: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def test_design_sections_are_numbered_one_to_n() -> None:
    """References stay valid only if sections keep their numbers: 1..N, each once, in order."""
    numbers = [int(n) for n, _ in HEADING.findall(DESIGN.read_text())]
    assert numbers == list(range(1, len(numbers) + 1))
    assert len(numbers) >= 13  # the twelve of the old contract, and §13 on decisions


def test_every_design_reference_names_a_section() -> None:
    sections = _sections()
    anchors = {_slug(f"{n}. {title}") for n, title in sections.items()}
    references = 0
    dangling: list[str] = []
    for path, text in _repository_text_files():
        where = path.relative_to(ROOT)
        for match in REFERENCE.finditer(text):
            numbers = [int(match.group(1)), *map(int, MORE_NUMBERS.findall(match.group(2)))]
            references += len(numbers)
            line = text.count("\n", 0, match.start()) + 1
            dangling += [f"{where}:{line}: §{n}" for n in numbers if n not in sections]
        for match in ANCHOR.finditer(text):
            if match.group(1) not in anchors:
                dangling.append(f"{where}: #{match.group(1)}")
    assert dangling == []
    assert references >= 40  # the code cites the design throughout; a regex gone blind finds 0


def test_nothing_points_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, text.find(needle)) + 1}: {needle}"
        for path, text in _repository_text_files()
        for needle in (OLD_REFERENCE, *OUTSIDE_PATHS)
        if needle in text
    ]
    assert offenders == []


def test_readme_links_the_design() -> None:
    readme = (ROOT / "README.md").read_text()
    library = readme.split("## Using it as a library", 1)[1].split("\n## ", 1)[0]
    development = readme.split("## Development", 1)[1].split("\n## ", 1)[0]
    assert "(docs/design.md)" in library
    assert "(docs/design.md)" in development


# --- README's Reliability table ---------------------------------------------------------------


def _reliability_bench() -> ModuleType:
    path = ROOT / "bench" / "reliability.py"
    sys.path.insert(0, str(path.parent))  # it imports its sibling torture.py
    try:
        spec = importlib.util.spec_from_file_location("reliability_bench", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _reliability_table() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Reliability\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]


def test_readme_reliability_section_holds_the_table_the_bench_prints() -> None:
    """The section says the table is printed by `bench/reliability.py --quick`: it must be
    there, with that script's header and a row for every check it runs."""
    bench = _reliability_bench()
    printed_header = bench.table({}).splitlines()[0]
    header = [cell.strip() for cell in printed_header.strip().strip("|").split("|")]
    table = _reliability_table()
    assert table, "README's Reliability section has no table"
    assert table[0] == header
    assert set("".join(table[1])) <= {"-", ":"}
    rows = {row[0]: row for row in table[2:]}
    expected = [
        "kill -9 rounds",
        *(f"fault injected: {name}" for name in bench.ERRNOS),
        "concurrent writers × events",
        "expected_version races",
        "concurrent exporters",
        "fuzz cases tried",
    ]
    assert [name for name in expected if name not in rows] == []
    assert len(table) - 2 >= len(expected)


def test_readme_reliability_table_shows_nothing_lost_and_nothing_skipped() -> None:
    """A pasted run that lost events, left files invalid, or skipped its fault tests is not
    the evidence the section claims to be."""
    rows = _reliability_table()[2:]
    assert rows, "README's Reliability section has no table"
    bad = [
        row
        for row in rows
        if not all(cell == "—" or cell.startswith("0") for cell in row[2:4])
        or re.search(r"\b(skipped|failed|not run|unproven)\b", row[1])
    ]
    assert bad == []
