"""Loggers that import structlog on first use.

structlog (with rich behind its dev renderer) costs more to import than a whole
`evstore append` may take, and most runs never log above the level shown. The library
asks for loggers here; it never configures logging. An application that configures
structlog lazily registers its set-up with `before_first_log`, run once before the
first record is emitted. Until an application configures structlog, records go to the
standard `logging` module (warnings and above show on stderr, nothing on stdout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

_hooks: list[Callable[[], None]] = []
_ready = False


def before_first_log(hook: Callable[[], None]) -> None:
    """Run `hook` (an application's structlog set-up) before the first log call."""
    global _ready  # noqa: PLW0603 - one process-wide switch
    _hooks.append(hook)
    _ready = False


def forget_pending_setup() -> None:
    """Drop set-ups not yet run (an application whose run ended without logging)."""
    global _ready  # noqa: PLW0603
    _hooks.clear()
    _ready = True


def _prepare() -> None:
    global _ready  # noqa: PLW0603
    while _hooks:
        _hooks.pop(0)()
    _ready = True


class LazyLogger:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        try:
            if not _ready:
                _prepare()
            import structlog  # noqa: PLC0415 - the point of this module
        except (OSError, ImportError):
            # Out of descriptors (EMFILE) an import fails too; logging must never replace
            # the error being reported with one of its own.
            return _discard

        if structlog.is_configured():
            return getattr(structlog.get_logger(self._name), method)
        # Nobody configured structlog: behave like any Python library and hand records to
        # the standard `logging` module under "evstore.*", where the default shows only
        # warnings and above on stderr, and the application decides the rest.
        import logging  # noqa: PLC0415

        logger = structlog.wrap_logger(
            logging.getLogger(self._name),
            wrapper_class=structlog.stdlib.BoundLogger,
            processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
        )
        return getattr(logger, method)


def _discard(*_args: Any, **_kwargs: Any) -> None:
    return None


def get_logger(name: str) -> Any:
    return LazyLogger(name)
