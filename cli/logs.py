"""Logging set-up for the command line: the library itself never configures logging."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from eventstore.logs import before_first_log


def configure_logging(*, log_format: str, verbosity: int) -> None:
    """console: coloured key=value lines for people; json: one object per line.

    verbosity -1 errors only, 0 warnings (every retry is one), 1 info, 2 debug.
    Logs go to stderr so stdout stays the command's answer.
    """
    # Deferred: most runs log nothing at the level shown, and importing structlog would
    # cost them more than the command itself.
    stream = _CurrentStderr()
    global _last_setup  # noqa: PLW0603 - the one set-up of this run
    _last_setup = lambda: _configure(log_format, verbosity, stream)  # noqa: E731
    before_first_log(_last_setup)


_last_setup: Any = None


class _CurrentStderr:
    """sys.stderr as it is when a line is written, not as it was at set-up: while a
    progress bar is drawn, rich stands in for sys.stderr and prints log lines above the
    bar instead of through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def reapply_logging() -> None:
    """Configure again as this run asked (for the last-resort error report, which may
    come after the run's pending set-up was dropped)."""
    if _last_setup is not None:
        with contextlib.suppress(OSError, ImportError):
            _last_setup()


def _configure(log_format: str, verbosity: int, stream: object) -> None:
    import logging  # noqa: PLC0415

    import structlog  # noqa: PLC0415

    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        isatty = getattr(stream, "isatty", None)
        renderer = structlog.dev.ConsoleRenderer(colors=bool(isatty and isatty()))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
