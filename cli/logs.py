"""Logging set-up for the command line: the library itself never configures logging."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(*, log_format: str, verbosity: int) -> None:
    """console: coloured key=value lines for people; json: one object per line.

    verbosity -1 errors only, 0 warnings (every retry is one), 1 info, 2 debug.
    Logs go to stderr so stdout stays the command's answer.
    """
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    renderer: structlog.typing.Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
