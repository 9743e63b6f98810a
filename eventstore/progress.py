"""Progress of the few loops that can run for seconds: replay, a large append, doctor.

The library draws nothing and prints nothing. A caller that wants to show progress passes
a callback, `progress(done, total)`: the loop calls it once every `EVERY` items (never
per item, so the loop stays fast) and once at its end; `total` is None when not known.
Without a callback (the default) the loops run exactly as they always did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, islice
from typing import TypeVar

T = TypeVar("T")

Progress = Callable[[int, int | None], None]
"""`progress(done, total)`: `done` units of work out of `total` (None: unknown)."""

EVERY = 1000


def reporting(
    items: Iterable[T], progress: Progress, total: int | None, *, start: int = 0, every: int = EVERY
) -> Iterator[T]:
    """`items`, calling `progress(start + consumed, total)` after each `every` of them have
    been consumed, and after the last (once, for no items at all)."""
    iterator = iter(items)
    done = start
    while chunk := list(islice(iterator, every)):
        yield from chunk
        done += len(chunk)
        progress(done, total)
    if done == start:
        progress(done, total)


def span(progress: Progress, start: int, size: int, total: int | None) -> Progress:
    """A callback for one part of a larger job: its `(done, of)` lands proportionally in
    `[start, start + size]` of the whole job's `total`."""

    def report(done: int, of: int | None) -> None:
        if of is None:
            part = 0
        elif of == 0:
            part = size  # nothing to do: done
        else:
            part = min(done, of) * size // of
        progress(start + part, total)

    return report


def shares(progress: Progress, sizes: Sequence[int]) -> list[Progress]:
    """One callback per part of a job whose parts have these sizes (sessions' events, say):
    each fills its own share of the whole, in order."""
    total = sum(sizes)
    starts = accumulate(sizes[:-1], initial=0)
    return [span(progress, start, size, total) for start, size in zip(starts, sizes, strict=True)]
