"""Progress bars for the commands that can run for seconds (import, append --jsonl, replay,
doctor), on stderr, for people only.

A bar is drawn only when stderr is a terminal, logs are for people (not
`--log-format json`) and the run is not `-q`; it appears once the work has lasted
EVSTORE_PROGRESS_AFTER seconds (default 0.5: quick runs never flicker) and is erased
when the work ends. stdout is never touched. Otherwise `progress_bar()` gives a bar that
does nothing and whose `callback` is None, so the library runs its loops as without one;
rich is imported only once a bar is about to be drawn.

    with progress_bar("replaying") as bar:
        results = store.replay(progress=bar.callback)   # progress(done, total)
    print_results(results)                               # after the bar is gone
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore.progress import Progress

AFTER_ENV = "EVSTORE_PROGRESS_AFTER"
DEFAULT_AFTER_S = 0.5


class NullBar:
    """What a run without a bar gets: `callback` None, `stage` does nothing."""

    callback: Progress | None = None

    def stage(self, description: str) -> None:
        """A new step of the work: its description, progress unknown until reported."""


class Bar(NullBar):
    """One rich progress bar on stderr, drawn from `after_s` seconds on (by a timer
    thread), erased on `close()`. Updates before it is drawn are kept for when it is."""

    def __init__(self, description: str) -> None:
        self._lock = threading.Lock()
        self._description = description
        self._done = 0
        self._total: int | None = None
        self._progress: Any = None  # rich.progress.Progress, once drawn
        self._task: Any = None
        self._closed = False
        self._timer: threading.Timer | None = None
        self._started = time.monotonic()  # rich's clock: the elapsed time is the work's
        self.callback = self.update

    def open(self, after_s: float) -> None:
        if after_s <= 0:
            self._draw()
            return
        self._timer = threading.Timer(after_s, self._draw)
        self._timer.daemon = True
        self._timer.start()

    def update(self, done: int, total: int | None) -> None:
        with self._lock:
            self._done, self._total = done, total
            if self._progress is not None:
                self._show()

    def stage(self, description: str) -> None:
        with self._lock:
            self._description, self._done, self._total = description, 0, None
            if self._progress is not None:
                self._show()

    def _show(self) -> None:
        """The task as last reported (under the lock, once drawn). rich's update cannot
        make a total unknown again or a finished task unfinished: the task's own fields
        can (one task for the whole run, so the elapsed time is the run's)."""
        task = self._task
        self._progress.update(task.id, description=self._description, completed=self._done,
                              total=self._total)
        if self._total is None:
            task.total = None
        if task.total is None or task.completed < task.total:
            task.finished_time = None

    def _draw(self) -> None:
        try:
            from rich.console import Console  # noqa: PLC0415 - only when a bar is drawn
            from rich.progress import (  # noqa: PLC0415
                BarColumn,
                Progress,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
                redirect_stdout=False,  # stdout is the command's answer: never through rich
            )
            with self._lock:
                if self._closed:
                    return
                task_id = progress.add_task(self._description, total=self._total,
                                            completed=self._done)
                self._task = next(t for t in progress.tasks if t.id == task_id)
                self._task.start_time = self._started
                progress.start()
                self._progress = progress
        except Exception:  # noqa: BLE001 - a bar that cannot be drawn must not fail the work
            return

    def close(self) -> None:
        with self._lock:
            self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()  # a bar being drawn right now is drawn, then erased below
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def progress_bar(description: str) -> Iterator[NullBar]:
    """A bar for the work inside the block (a NullBar when no bar is wanted)."""
    if not wanted():
        yield NullBar()
        return
    bar = Bar(description)
    bar.open(after_seconds())
    try:
        yield bar
    finally:
        bar.close()


def wanted() -> bool:
    """Whether this run shows progress: stderr a terminal, not -q, not --log-format json."""
    try:
        if sys.stderr is None or not sys.stderr.isatty():
            return False
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    ctx = click.get_current_context(silent=True)
    params = ctx.find_root().params if ctx is not None else {}
    return not params.get("quiet") and params.get("log_format") != "json"


def after_seconds() -> float:
    """EVSTORE_PROGRESS_AFTER (seconds; 0 draws at once), default 0.5; unusable values
    fall back to the default rather than fail the command."""
    raw = os.environ.get(AFTER_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_AFTER_S
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_AFTER_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_AFTER_S
