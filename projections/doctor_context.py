"""What the file checks and the repairs of one doctor run share (docs/design.md §10): the
projections, the injected seams (clock, liveness, ages, lock timeout, progress) and where
files are, and are shown, relative to the project root."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore.persistence import ERRORS_STREAM
from eventstore.progress import span
from projections.problems import shown

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime, timedelta
    from pathlib import Path

    from eventstore.progress import Progress
    from eventstore.projection import Projection
    from eventstore.records import StreamInfo


@dataclass(frozen=True)
class DoctorContext:
    projections: tuple[Projection, ...]
    root: Path
    lost_and_found: Path
    clock: Callable[[], datetime]
    alive: Callable[[int, int | None], bool]
    host: str
    orphan_age: timedelta
    stale_after: timedelta
    lock_timeout_s: float
    # progress(done, total): the events of every session checked (three times over with
    # fix(): check, repair, check again).
    progress: Progress | None

    def shown(self, path: Path) -> str:
        """`path` relative to the project root when inside it: what people read."""
        return shown(path, self.root)

    def show_lost_and_found(self) -> str:
        return f"{self.shown(self.lost_and_found)}/"

    def file_of(self, name: str) -> str:
        return next(p.file_name for p in self.projections if p.name == name)

    def parts(
        self, streams: Sequence[StreamInfo], order: Sequence[str], phase: tuple[int, int]
    ) -> dict[str, Progress]:
        """Each session's share of `progress` in phase `index` of `count` (a phase counts
        every session's events), for sessions handled in `order` (none without progress)."""
        if self.progress is None:
            return {}
        sizes = {s.stream: s.events for s in streams if s.stream != ERRORS_STREAM}
        index, count = phase
        size = sum(sizes.values())
        done, total = index * size, count * size
        parts = {}
        for session in order:
            parts[session] = span(self.progress, done, sizes.get(session, 0), total)
            done += sizes.get(session, 0)
        return parts
