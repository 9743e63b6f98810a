"""The event catalog (docs/design.md §4): frozen pydantic models discriminated by `type`.

An event's `type` is a literal string stored in the journal, never an import path, so
renaming a module never breaks an old journal. Each type has a `schema_version`; an older
payload read back is upcast by the functions registered with `register_upcaster`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic import ValidationError as PydanticValidationError

from eventstore.errors import InvalidInputError, InvalidSessionIdError
from eventstore.numbers import MAX_PARALLEL

STATUSES: tuple[str, ...] = (
    "Planned",
    "Researching",
    "Implementing",
    "Retrying",
    "Complete",
    "Failed",
    "Obsolete",
    # Not in the PRP pipeline's StatusEnum, but real tasks.json files carry it.
    "Ready",
)
Status = Literal[
    "Planned", "Researching", "Implementing", "Retrying", "Complete", "Failed", "Obsolete", "Ready"
]

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_session_id(session: str) -> str:
    """Return `session` if it is a safe session id, else raise InvalidSessionIdError.

    Session ids become directory names, so anything that could escape a directory
    (`..`, `/`, control characters) is refused before any file is touched.
    """
    if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
        shown = repr(session)
        raise InvalidSessionIdError(
            f"invalid session id {shown}: use 1-128 characters from A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return session


def validate_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidInputError(
            f"invalid status {status!r}: expected one of {', '.join(STATUSES)}"
        )
    return status


class Event(BaseModel):
    """Base of every event. Subclasses set `type` (a Literal) and may bump `schema_version`."""

    # defer_build: a CLI run uses one or two of these models; building all of them
    # up front would cost more than the run.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)
    schema_version: ClassVar[int] = 1
    if TYPE_CHECKING:
        # Every subclass declares `type` as its own Literal (excluded from dumps); the
        # base declares it only for the type checker, so pydantic sees no extra field.
        type: str


def _type(name: str) -> Any:
    # Excluded from dumps: the journal keeps `type` in its own column, not in `data`.
    return Field(default=name, exclude=True)


# --- Backlog ---------------------------------------------------------------------------


class SessionCreated(Event):
    type: Literal["SessionCreated"] = _type("SessionCreated")
    export_dir: str


class SessionMoved(Event):
    """The session's files go to `export_dir` from now on (`evstore session move`)."""

    type: Literal["SessionMoved"] = _type("SessionMoved")
    export_dir: str


class BacklogImported(Event):
    """The whole backlog document, the seed (or re-seed) of a session."""

    type: Literal["BacklogImported"] = _type("BacklogImported")
    backlog: dict[str, Any]
    source: str
    sha256: str

    @field_validator("backlog")
    @classmethod
    def _is_backlog(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("backlog"), list):
            raise ValueError('a backlog document needs a top-level "backlog" array')  # noqa: TRY004 - pydantic reports ValueError only
        return value


class ItemAdded(Event):
    """`item` may carry its children (a whole subtree); no `after_id` puts it first."""

    type: Literal["ItemAdded"] = _type("ItemAdded")
    item: dict[str, Any]
    parent_id: str | None
    after_id: str | None = None

    @field_validator("item")
    @classmethod
    def _has_identity(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("id"), str) or not isinstance(value.get("type"), str):
            raise ValueError('an item needs string "id" and "type" fields')  # noqa: TRY004 - pydantic reports ValueError only
        return value


class ItemStatusChanged(Event):
    type: Literal["ItemStatusChanged"] = _type("ItemStatusChanged")
    item_id: str
    status: Status
    reason: str | None = None


# Which key holds an item's children depends on its level, so the backlog projection
# protects that one (projections.backlog); the event itself only guards identity.
PROTECTED_FIELDS = frozenset({"id", "type"})


class ItemUpdated(Event):
    """Sets fields (unknown ones allowed) and drops `removed`; never id or type, nor the
    item's children (checked against its level when appended)."""

    type: Literal["ItemUpdated"] = _type("ItemUpdated")
    item_id: str
    changes: dict[str, Any] = Field(default_factory=dict)
    removed: list[str] = Field(default_factory=list)
    # The item's keys in the order they take afterwards, when setting and dropping alone
    # cannot place them (a new key before the children key): files keep their key order.
    order: list[str] | None = None

    @field_validator("changes", "removed")
    @classmethod
    def _not_protected(cls, value: Any) -> Any:
        touched = PROTECTED_FIELDS.intersection(value)
        if touched:
            raise ValueError(f"cannot change {', '.join(sorted(touched))} with ItemUpdated")
        return value


class ItemRemoved(Event):
    type: Literal["ItemRemoved"] = _type("ItemRemoved")
    item_id: str


# --- Batch runs (docs/design.md §8) ------------------------------------------------------


class BatchStarted(Event):
    """`pid_start` is the owner's start time (clock ticks after boot, Linux): with it a
    reused pid cannot pass for the owner. `started_at`, `updated_at`, `healing_attempts`
    and `last_healing_at` are only set for a batch imported from a legacy file, which
    carries them; otherwise the event's own time is the start and the last update."""

    type: Literal["BatchStarted"] = _type("BatchStarted")
    batch_id: str
    pid: int
    host: str
    parallel: int = Field(ge=1, le=MAX_PARALLEL)
    queued_items: list[str]
    pid_start: int | None = None
    started_at: str | None = None
    updated_at: str | None = None
    healing_attempts: int = Field(0, ge=0)
    last_healing_at: str | None = None


class BatchResumed(Event):
    """A new owner takes over; items in flight when the old one died are run again, and
    with `retry_failed` so are the failed ones."""

    type: Literal["BatchResumed"] = _type("BatchResumed")
    batch_id: str
    pid: int
    host: str
    pid_start: int | None = None
    retry_failed: bool = False


class BatchItemStarted(Event):
    type: Literal["BatchItemStarted"] = _type("BatchItemStarted")
    batch_id: str
    item: str


class BatchItemCompleted(Event):
    """`at` is set only for an outcome imported from a legacy file: when the file says
    it happened (its `updated_at`), rather than the time of the import."""

    type: Literal["BatchItemCompleted"] = _type("BatchItemCompleted")
    batch_id: str
    item: str
    at: str | None = None


class BatchItemFailed(Event):
    """`at` is set only for an outcome imported from a legacy file: when the file says
    it happened (its `updated_at`), rather than the time of the import."""

    type: Literal["BatchItemFailed"] = _type("BatchItemFailed")
    batch_id: str
    item: str
    error: str
    at: str | None = None


class BatchItemSkipped(Event):
    """`at` is set only for an outcome imported from a legacy file: when the file says
    it happened (its `updated_at`), rather than the time of the import."""

    type: Literal["BatchItemSkipped"] = _type("BatchItemSkipped")
    batch_id: str
    item: str
    reason: str
    at: str | None = None


class BatchHealingAttempted(Event):
    type: Literal["BatchHealingAttempted"] = _type("BatchHealingAttempted")
    batch_id: str


class BatchFinished(Event):
    type: Literal["BatchFinished"] = _type("BatchFinished")
    batch_id: str


class BatchAbandoned(Event):
    type: Literal["BatchAbandoned"] = _type("BatchAbandoned")
    batch_id: str
    reason: str


# --- Fix-task recovery (docs/design.md §9) -----------------------------------------------


class TaskFailed(Event):
    type: Literal["TaskFailed"] = _type("TaskFailed")
    item_id: str
    error: str


class FixTaskCreated(Event):
    type: Literal["FixTaskCreated"] = _type("FixTaskCreated")
    original_id: str
    fix_id: str
    attempt: int = Field(ge=1)
    error: str
    max_fix_tasks: int | None = None


class FixLimitReached(Event):
    type: Literal["FixLimitReached"] = _type("FixLimitReached")
    original_id: str
    attempts: int
    last_error: str
    max_fix_tasks: int | None = None


# --- Errors (docs/design.md §10) ---------------------------------------------------------


class ErrorRecorded(Event):
    type: Literal["ErrorRecorded"] = _type("ErrorRecorded")
    component: str
    operation: str
    errno: str | None = None
    error_type: str
    severity: str
    recoverability: str
    category: str
    retryable: bool
    message: str
    retry_count: int = 0
    recovery_strategy: str | None = None
    recovery_success: bool = False
    resolution_time_ms: float | None = None
    # The file or directory concerned, as data rather than inside `message` (a breaker's
    # export directory: `status` shows each directory's breaker). Schema 2; version 1
    # events are upcast (breaker messages read "<dir>: breaker ...").
    path: str | None = None
    schema_version: ClassVar[int] = 2


AnyEvent = Annotated[
    SessionCreated
    | SessionMoved
    | BacklogImported
    | ItemAdded
    | ItemStatusChanged
    | ItemUpdated
    | ItemRemoved
    | BatchStarted
    | BatchResumed
    | BatchItemStarted
    | BatchItemCompleted
    | BatchItemFailed
    | BatchItemSkipped
    | BatchHealingAttempted
    | BatchFinished
    | BatchAbandoned
    | TaskFailed
    | FixTaskCreated
    | FixLimitReached
    | ErrorRecorded,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["type"].default: cls
    for cls in Event.__subclasses__()
}



@cache
def _adapter() -> TypeAdapter[Event]:
    return TypeAdapter(AnyEvent)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning a `from_version` payload of `event_type` into the next."""

    def decorate(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return decorate


def upcast(event_type: str, schema_version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Bring a stored payload up to the current schema of its type."""
    cls = EVENT_TYPES.get(event_type)
    current = cls.schema_version if cls else schema_version
    while schema_version < current:
        step = _UPCASTERS.get((event_type, schema_version))
        if step is None:
            msg = f"no upcaster for {event_type} schema_version {schema_version}"
            raise InvalidInputError(msg)
        data = step(data)
        schema_version += 1
    return data


def parse_event(payload: dict[str, Any], *, where: str = "event") -> Event:
    """Validate a `{"type": ..., **fields}` mapping into its event model.

    Raises InvalidInputError naming `where` and the first problem, in one line.
    """
    kind = payload.get("type")
    if kind not in EVENT_TYPES:
        raise InvalidInputError(
            f"{where}: unknown event type {kind!r} (known: {', '.join(sorted(EVENT_TYPES))})"
        )
    try:
        return _adapter().validate_python(payload)
    except PydanticValidationError as exc:
        raise InvalidInputError(f"{where}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: PydanticValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"])
    extra = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc or 'value'}: {first['msg']}{extra}"


@register_upcaster("ErrorRecorded", 1)
def _error_path(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept a breaker's directory only in its message ("<dir>: breaker ...")."""
    path = None
    if data.get("component") == "breaker" and ": breaker " in str(data.get("message", "")):
        path = str(data["message"]).rsplit(": breaker ", 1)[0]
    return {**data, "path": path}
