"""The error tree (issue 12): one module, every class exported, conflicts apart from an
unusable journal, and each class's exit code as the README's table says."""

from __future__ import annotations

import inspect

import pytest

import eventstore
from eventstore import errors


def error_classes() -> dict[str, type[BaseException]]:
    return {name: cls for name, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == errors.__name__}


def test_every_error_class_is_exported_from_the_package() -> None:
    """`from eventstore import X` works for every class errors.py defines."""
    classes = error_classes()
    assert len(classes) >= 15
    for name, cls in classes.items():
        assert name in eventstore.__all__, name
        assert getattr(eventstore, name) is cls


def test_every_error_derives_from_the_one_root() -> None:
    for name, cls in error_classes().items():
        assert issubclass(cls, errors.EvstoreError), name


def test_a_conflict_is_not_an_unusable_journal() -> None:
    """`except JournalError` (exit 5: the journal could not be used) does not swallow a
    conflict (exit 3), which a caller answers by re-reading, not by restoring a backup."""
    assert not issubclass(errors.ConcurrencyError, errors.JournalError)
    with pytest.raises(errors.ConcurrencyError):
        try:
            raise errors.ConcurrencyError("session 's' is at version 3, expected 2")
        except errors.JournalError:  # pragma: no cover - must not catch it
            pytest.fail("a conflict was taken for an unusable journal")


@pytest.mark.parametrize(("name", "code", "also"), [
    ("InvalidInputError", 2, ValueError),
    ("InvalidSessionIdError", 2, ValueError),
    ("UnknownSessionError", 2, LookupError),
    ("ConcurrencyError", 3, Exception),
    ("ExportError", 4, Exception),
    ("ProjectFailedError", 4, Exception),
    ("JournalError", 5, Exception),
    ("JournalNotFoundError", 5, FileNotFoundError),
    ("JournalBusyError", 5, TimeoutError),
    ("JournalUnavailableError", 5, ConnectionError),
    ("JournalReadError", 5, Exception),
    ("FixLimitError", 6, Exception),
])
def test_exit_codes_and_builtin_bases(name: str, code: int, also: type[BaseException]) -> None:
    cls = getattr(errors, name)
    assert cls.exit_code == code
    assert issubclass(cls, also)


def test_a_breaker_transition_names_its_directory_as_data() -> None:
    """The breaker records its export directory in `path`, not only inside the message."""
    from eventstore.breaker import CircuitBreaker  # noqa: PLC0415

    recorded = []
    breaker = CircuitBreaker("/srv/plan/001", threshold=1, clock=lambda: 0.0,
                             record=recorded.append)
    breaker.failure(OSError(30, "Read-only file system"))
    (event,) = recorded
    assert (event.operation, event.path) == ("open", "/srv/plan/001")


def test_old_breaker_events_are_upcast_with_their_directory() -> None:
    """A schema-1 ErrorRecorded of the breaker reads back with `path` from its message;
    any other keeps none."""
    from eventstore.events import upcast  # noqa: PLC0415

    breaker = {"component": "breaker", "operation": "open",
               "message": "/srv/plan/001: breaker open after 5 consecutive failures (EROFS)"}
    assert upcast("ErrorRecorded", 1, breaker)["path"] == "/srv/plan/001"
    exporter = {"component": "exporter", "operation": "write", "message": "x: breaker y"}
    assert upcast("ErrorRecorded", 1, exporter)["path"] is None
