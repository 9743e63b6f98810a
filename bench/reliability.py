#!/usr/bin/env python
# ruff: noqa: E501, RUF001, ISC004
"""The README's "Reliability" table, from a run of the work itself (nothing typed in).

    python bench/reliability.py            # 1,000 kill rounds, 8 x 1,000 writers, ...
    python bench/reliability.py --quick    # a short run (about two minutes)
    python bench/reliability.py --json out.json

Runs, in order: the SIGKILL torture (bench/torture.py), the concurrency checks
(writers on one journal, expected_version races, concurrent exporters), the fault tests
(`pytest -m faults tests/test_faults.py tests/test_faults_injected.py`, real kernel
faults, needs root; read back through --junitxml, grouped by the errno in each test's
name or parameters) and the hostile-input fuzz tests (`tests/test_hostile_input.py` with
--hypothesis-show-statistics, whose example counts are summed). Then prints a markdown
table: what ran, events lost, files left invalid. Counts come from the checks' own
measurements; for pytest-based rows they are what the passing tests assert, and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torture  # noqa: E402

ERRNOS = ("ENOSPC", "EROFS", "EACCES", "EMFILE", "EIO", "EBUSY", "EAGAIN", "ENFILE")
FAULT_FILES = ("tests/test_faults.py", "tests/test_faults_injected.py")
FUZZ_FILE = "tests/test_hostile_input.py"


def _num(n: int) -> str:
    return f"{n:,}"


# --- pytest-based rows ---------------------------------------------------------------------------


def run_pytest(
    args: list[str], junit: Path, *, timeout: float
) -> tuple[int, str, list[dict[str, Any]]]:
    """Run pytest (from the repo, this interpreter); return (exit code, output, test cases)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        *args,
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
    ]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    cases: list[dict[str, Any]] = []
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                found = case.find(tag)
                if found is not None:
                    outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                    message = found.get("message", "")
                    break
            else:
                message = ""
            cases.append(
                {
                    "name": case.get("name", ""),
                    "classname": case.get("classname", ""),
                    "outcome": outcome,
                    "message": message,
                    "seconds": float(case.get("time", 0) or 0),
                }
            )
    return done.returncode, done.stdout + done.stderr, cases


def faults(timeout: float) -> dict[str, Any]:
    files = [f for f in FAULT_FILES if (REPO / f).exists()]
    if not files:
        return {"files": [], "cases": [], "per_errno": {}}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "faults.xml"
        started = time.monotonic()
        code, output, cases = run_pytest(["-m", "faults", "-q", *files], junit, timeout=timeout)
    per_errno: dict[str, dict[str, int]] = {}
    for case in cases:
        tokens = {t.upper() for t in re.split(r"[^A-Za-z0-9]+", case["name"]) if t}
        named = [name for name in ERRNOS if name in tokens] or ["other"]
        for name in named:
            counts = per_errno.setdefault(
                name, {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
            )
            counts[case["outcome"]] += 1
    return {
        "files": files,
        "exit_code": code,
        "cases": cases,
        "per_errno": per_errno,
        "seconds": round(time.monotonic() - started, 1),
        "tail": output[-1500:],
    }


def fuzz(timeout: float) -> dict[str, Any]:
    if not (REPO / FUZZ_FILE).exists():
        return {"present": False}
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "fuzz.xml"
        started = time.monotonic()
        code, output, cases = run_pytest(
            ["-q", FUZZ_FILE, "--hypothesis-show-statistics"], junit, timeout=timeout
        )
    # Per test and phase: "- 100 passing, 0 failing, and 15 invalid test cases" (older
    # Hypothesis: "100 passing examples, 0 failing examples, 15 invalid examples").
    tried = {"passing": 0, "failing": 0, "invalid": 0}
    for line in output.splitlines():
        if "passing" in line and ("test cases" in line or "examples" in line):
            for count, kind in re.findall(r"(\d+) (?:and )?(passing|failing|invalid)", line):
                tried[kind] += int(count)
    property_tests = len(re.findall(r"^\S+::\S+:\s*$", output, flags=re.MULTILINE))
    return {
        "present": True,
        "exit_code": code,
        "cases": cases,
        "examples": tried,
        "property_tests": property_tests,
        "seconds": round(time.monotonic() - started, 1),
        "tail": output[-1500:],
    }


# Operator mistakes, each proven by real `evstore` processes in these tests (issue 11).
OPERATOR_CHECKS = {
    "hand edit kept": ("tests/test_operator_drift_chain.py", "drift_copy or hand_edited"),
    "WAL deletion detected": ("tests/test_operator_drift_chain_watch.py", "wal_removed"),
}


def operator_checks(timeout: float) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, (path, selection) in OPERATOR_CHECKS.items():
        if not (REPO / path).exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            _, _, cases = run_pytest(["-q", path, "-k", selection], Path(tmp) / "j.xml",
                                     timeout=timeout)
        found[name] = {"file": path, "cases": cases}
    return found


# --- operator mistakes: real `evstore` processes on a real project --------------------------------


def _evstore() -> list[str]:
    beside = Path(sys.executable).parent / "evstore"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "cli"]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".evstore.lock"
    }


def operator_paths(work: Path) -> dict[str, Any]:
    """Each mistake of issue 11 made for real: a second session claiming an export dir
    (directly, through a symlink, by --batch-progress --export-dir) and `report -o` or
    `replay --out` aimed at the journal or a projection. Counts the refusals (exit 2) and
    what changed: events of the journal (by `log --json`) and bytes of any file."""
    fixture = REPO / "tests" / "fixtures" / "hacky-hack" / "001_14b9dc2a33c7.tasks.49991f1.initial.json"
    legacy = REPO / "tests" / "fixtures" / "wreckit" / "live.batch-progress.56e853a.json"
    root = work / "project"
    (root / "plan" / "001").mkdir(parents=True)
    (root / "plan" / "001" / "tasks.json").write_bytes(fixture.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "EVSTORE_DB"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_evstore(), *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120, check=False)

    for setup in (("init",), ("import", "plan/001/tasks.json", "--session", "001"), ("project",)):
        done = run(*setup)
        if done.returncode:
            raise torture.Violation(f"evstore {' '.join(setup)}: {done.stderr}")
    (root / "alias").symlink_to(root / "plan" / "001")
    attempts = {
        "shared": [
            ("import", "plan/001/tasks.json", "--session", "002"),
            ("import", "alias/tasks.json", "--session", "003"),
            ("import", "--batch-progress", str(legacy), "--session", "004", "--export-dir", "plan/001"),
        ],
        "overwrite": [
            ("report", "-o", ".evstore/journal.db"),
            ("report", "-o", ".evstore/journal.db-wal"),
            ("report", "-o", ".evstore/journal.db-shm"),
            ("report", "-o", "plan/001/tasks.json"),
            ("replay", "--session", "001", "--until", "1", "--out", "plan/001"),
        ],
    }
    results: dict[str, Any] = {}
    for kind, commands in attempts.items():
        refused = changed = lost = 0
        for command in commands:
            events_before = run("log", "--json").stdout
            before = _files(root)
            done = run(*command)
            refused += done.returncode == 2
            changed += sum(1 for name, data in _files(root).items() if before.get(name) != data)
            changed += sum(1 for name in before if not (root / name).exists())
            lost += events_before != run("log", "--json").stdout
        results[kind] = {"attempts": len(commands), "refused": refused, "files_changed": changed,
                         "journals_changed": lost}
    return results


def operator_failures(results: dict[str, Any]) -> list[str]:
    """A mistake that was not refused, or that changed a file or the journal, fails the run."""
    return [
        f"operator {kind}: {c}"
        for kind, c in (results.get("operator") or {}).items()
        if c["refused"] != c["attempts"] or c["files_changed"] or c["journals_changed"]
    ]


# --- the table ---------------------------------------------------------------------------------


def _outcome_counts(cases: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in cases:
        counts[case["outcome"]] += 1
    return counts


def _asserted(counts: dict[str, int]) -> str:
    if counts["failed"] or counts["error"]:
        return f"**unproven: {counts['failed'] + counts['error']} failed**"
    if not counts["passed"]:
        return "not run"
    return f"0 (asserted by {counts['passed']} passing test{'s' if counts['passed'] != 1 else ''})"


def table(results: dict[str, Any]) -> str:  # noqa: C901, PLR0912
    rows: list[tuple[str, str, str, str]] = []
    t = results.get("torture")
    if t:
        rows.append(
            (
                "kill -9 rounds",
                f"{_num(t['rounds'])} rounds, {_num(t['kills'])} SIGKILLs of 1-4 appending/exporting "
                f"processes ({_num(t['kills_mid_append'] + t['kills_mid_retry'])} inside an append, "
                f"{_num(t['kills_mid_project'])} inside an export); {_num(t['events_acknowledged_checked'])} "
                f"acknowledged events checked, {_num(t['committed_unacknowledged'])} committed but "
                f"unacknowledged batches found whole, {_num(t['batches_partial'])} partial batches; "
                f"{_num(t['temp_files_left'])} temp files left, all `.<name>.<16 hex>.tmp`"
                + (
                    f"; {_num(t['drift_warnings'])} later exports wrongly warned of drift "
                    "(a kill between rename and checkpoint)"
                    if t.get("drift_warnings")
                    else ""
                ),
                _num(t["events_lost"]),
                _num(t["files_invalid"] + t["files_behind"] + t["temp_files_malformed"]),
            )
        )
    f = results.get("faults")
    if f is not None:
        if not f["files"]:
            rows.append(("faults injected", "fault test files not present", "—", "—"))
        for name in (*ERRNOS, "other"):
            counts = f["per_errno"].get(name)
            if counts is None:
                if f["files"] and name != "other":
                    rows.append((f"fault injected: {name}", "no test names this errno", "—", "—"))
                continue
            if name == "other":
                name = "other faults (deleted dir, crash after a failed commit, ...)"  # noqa: PLW2901
            ran = f"{counts['passed']} passed"
            for key in ("failed", "error", "skipped"):
                if counts[key]:
                    ran += f", {counts[key]} {key}"
            shown = _asserted({**counts})
            rows.append((f"fault injected: {name}", ran, shown, shown))
    w = results.get("writers")
    if w:
        rows.append(
            (
                "concurrent writers × events",
                f"{w['writers']} processes × {_num(w['events_per_writer'])} events = "
                f"{_num(w['events_new'])} new events in {_num(w['appends'])} appends (singles and "
                f"batches), up to {w['max_writers_under_way']} writers under way at once; "
                f"{w['nonzero_exits']} errors reached a writer, {w['busy_retries_logged']} busy retries",
                _num(w["events_lost"]),
                "—",
            )
        )
    r = results.get("race")
    if r:
        rows.append(
            (
                "expected_version races",
                f"{r['racers']} processes × {r['rounds']} versions: {r['winners']} winners "
                f"(one per version), {r['losers']} refused with ConcurrencyError",
                "0" if not r["problems"] else "**see problems**",
                "—",
            )
        )
    p = results.get("projects")
    if p:
        rows.append(
            (
                "concurrent exporters",
                f"{p['runs']} × `evstore project` at once, {p['rounds']} times: {p['quiet_writes']} "
                f"writes (one per new checkpoint); with a writer appending: {p['live_project_runs']} "
                f"runs, {p['live_writes']} writes at {p['live_distinct_write_seqs']} distinct seqs",
                "—",
                _num(p["files_invalid"]),
            )
        )
    o = results.get("operator")
    if o:
        for kind, label, what in (
            ("shared", "shared export dir refused",
             "a second session claiming an owned export dir (by its path, through a symlink, by "
             "`import --batch-progress --export-dir`)"),
            ("overwrite", "report over journal refused",
             "`report -o` at the journal, its `-wal`, its `-shm`, a `tasks.json`; `replay --out` "
             "into an export dir"),
        ):
            c = o[kind]
            rows.append((label, f"{c['attempts']} real `evstore` runs ({what}): {c['refused']} "
                         "refused with exit 2", _num(c["journals_changed"]), _num(c["files_changed"])))
    z = results.get("fuzz")
    if z is not None:
        if not z["present"]:
            rows.append(("fuzz cases tried", f"{FUZZ_FILE} not present", "—", "—"))
        else:
            counts = _outcome_counts(z["cases"])
            examples = z["examples"]
            total = sum(examples.values())
            ran = (
                f"{_num(total)} hypothesis examples ({_num(examples['passing'])} passing, "
                f"{_num(examples['failing'])} failing, {_num(examples['invalid'])} invalid) "
                f"over {z['property_tests']} property tests; {counts['passed']} tests passed"
                if total
                else f"{counts['passed']} tests passed"
            )
            if counts["failed"] or counts["error"]:
                ran += f", **{counts['failed'] + counts['error']} failed**"
            shown = _asserted(counts)
            rows.append(("fuzz cases tried", ran, "—", shown))
    for name, check in (results.get("operator_tests") or {}).items():
        counts = _outcome_counts(check["cases"])
        shown = _asserted(counts)
        ran = f"{counts['passed']} of {len(check['cases'])} tests in {check['file']} passed"
        rows.append((name, ran, shown, shown))
    lines = ["| Check | What ran | Events lost | Files left invalid |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--rounds", type=int, help="kill rounds (default 1000; quick 60)")
    parser.add_argument("--seed", type=int, help="torture seed (default: random, printed)")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--events-per-writer", type=int, help="default 1000; quick 250")
    parser.add_argument("--no-pytest", action="store_true", help="skip the fault and fuzz tests")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to PATH as JSON")
    args = parser.parse_args()
    rounds = args.rounds or (60 if args.quick else 1000)
    per_writer = args.events_per_writer or (250 if args.quick else 1000)
    seed = args.seed or int.from_bytes(os.urandom(4), "big") % 2**31 or 1
    results: dict[str, Any] = {"quick": args.quick}
    failures: list[str] = []
    started = time.monotonic()

    def step(name: str, fn: Any) -> None:
        t0 = time.monotonic()
        print(f"- {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = fn()
        except torture.Violation as exc:
            failures.append(f"{name}: {exc}")
            print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
        print(f"  {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="evstore-reliability-") as tmp:
        work = Path(tmp)
        print(f"torture seed {seed}", file=sys.stderr)

        def run_torture() -> dict[str, Any]:
            stats = torture.torture(rounds, seed=seed, work=work / "torture", progress=True)
            return {k: v for k, v in vars(stats).items() if k != "violations"}

        step("torture", run_torture)
        step(
            "writers",
            lambda: torture.concurrent_writers(
                work / "writers", writers=args.writers, events_per_writer=per_writer
            ),
        )
        step(
            "race",
            lambda: torture.expected_version_race(
                work / "race", racers=6, rounds=20 if args.quick else 100
            ),
        )
        step(
            "projects",
            lambda: torture.concurrent_projects(
                work / "projects",
                runs=4,
                rounds=2 if args.quick else 5,
                live_runs=1 if args.quick else 3,
            ),
        )
        step("operator", lambda: operator_paths(work / "operator"))
    failures += operator_failures(results)
    if not args.no_pytest:
        step("faults", lambda: faults(timeout=1800))
        step("fuzz", lambda: fuzz(timeout=1800))
        step("operator_tests", lambda: operator_checks(timeout=600))
        for check in (results.get("operator_tests") or {}).values():
            for case in check["cases"]:
                if case["outcome"] in ("failed", "error"):
                    failures.append(f"operator: {case['name']} failed")
        for name in ("faults", "fuzz"):
            found = results.get(name) or {}
            bad = [c["name"] for c in found.get("cases", []) if c["outcome"] in ("failed", "error")]
            if bad:
                failures.append(f"{name}: {len(bad)} failed: {', '.join(bad[:8])}")
    results["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(table(results))
    print()
    print(
        f"seed {seed}; {results['seconds']:.0f}s on {os.cpu_count()} CPUs"
        + ("" if not failures else f"; FAILURES: {len(failures)}")
    )
    for failure in failures:
        print(f"  {failure[:2000]}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps({**results, "failures": failures}, indent=2, default=str)
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
