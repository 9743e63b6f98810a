"""Taking work from a session's backlog: next, claim, release, ready, blocked.

A claim is the selection and its `ItemStatusChanged` to `Implementing` made in one write
transaction (Store.append_decided): the state the choice is read from cannot change
before the claim lands, so eight agents claiming at once get eight different items.
The claimer's identity goes into the event's meta (`owner`), where `evstore history`
shows it.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from eventstore.errors import InvalidInputError
from eventstore.events import Event, ItemStatusChanged, validate_status
from eventstore.selection import (
    DEFAULT_PENDING,
    LEVELS,
    Level,
    Selection,
    WorkItem,
    blocked_items,
    ready_items,
    select_next,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventstore.store import Store

CLAIMED = "Implementing"
RELEASED = "Planned"
_TASKS = "tasks"


def default_owner(pid: int | None = None) -> str:
    """`user@host pid` of the claimer: this process, or `pid` (the CLI names its parent,
    the agent that ran it)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} {pid if pid is not None else os.getpid()}"


def _backlog_doc(store: Store, session: str) -> dict[str, Any] | None:
    if not any(p.name == _TASKS for p in store.projections):
        raise InvalidInputError("work selection needs the tasks projection (projections.DEFAULT)")
    return store.state(session, _TASKS).doc  # type: ignore[no-any-return]


def _checked(pending: Sequence[str], level: str) -> tuple[tuple[str, ...], Level]:
    if not pending:
        raise InvalidInputError("--status needs at least one status that counts as pending")
    for status in pending:
        validate_status(status)
    if level not in LEVELS:
        raise InvalidInputError(f"invalid level {level!r}: expected one of {', '.join(LEVELS)}")
    return tuple(pending), level


def next_item(  # noqa: PLR0913 - keyword-only options of one operation
    store: Store,
    session: str,
    *,
    claim: bool = False,
    pending: Sequence[str] = DEFAULT_PENDING,
    level: str = "any",
    owner: str | None = None,
    reason: str | None = None,
) -> Selection:
    """The next ready item; with `claim`, also mark it Implementing in the same transaction."""
    statuses, chosen_level = _checked(pending, level)
    store.require_session(session)
    if not claim:
        return select_next(_backlog_doc(store, session), pending=statuses, level=chosen_level)
    who = owner or default_owner()

    def decide() -> tuple[list[Event], Selection]:
        found = select_next(_backlog_doc(store, session), pending=statuses, level=chosen_level)
        if found.item is None:
            return [], found
        event = ItemStatusChanged(item_id=found.item.id, status=CLAIMED,
                                  reason=reason or f"claimed by {who}")
        return [event], found

    found, appended = store.append_decided(session, decide, meta={"owner": who})
    if appended is None:
        return found
    claimed = replace(found.item, status=CLAIMED) if found.item is not None else None
    return Selection(item=claimed, skipped=found.skipped, warnings=found.warnings,
                     claimed=True, seq=appended.last_seq, owner=who)


def release(
    store: Store, session: str, item_id: str, *, reason: str, owner: str | None = None
) -> int:
    """Put a claimed (Implementing) item back to Planned; returns the event's seq."""
    if not reason.strip():
        raise InvalidInputError("release needs --reason: say why the claim is given up")
    store.require_session(session)
    who = owner or default_owner()

    def decide() -> tuple[list[Event], None]:
        doc = _backlog_doc(store, session)
        item = store.state(session, _TASKS).item(item_id) if doc is not None else None
        if item is None:
            raise InvalidInputError(f"unknown item {item_id!r} in session {session!r}")
        if item.get("status") != CLAIMED:
            raise InvalidInputError(
                f"item {item_id!r} is not claimed (status {item.get('status')!r}): "
                f"only an {CLAIMED} item can be released"
            )
        return [ItemStatusChanged(item_id=item_id, status=RELEASED, reason=reason)], None

    _, appended = store.append_decided(session, decide, meta={"owner": who})
    assert appended is not None  # noqa: S101 - decide always returns one event or raises
    return appended.last_seq


def ready(
    store: Store, session: str, *, pending: Sequence[str] = DEFAULT_PENDING, level: str = "any"
) -> list[WorkItem]:
    statuses, chosen_level = _checked(pending, level)
    store.require_session(session)
    return ready_items(_backlog_doc(store, session), pending=statuses, level=chosen_level)


def blocked(
    store: Store, session: str, *, pending: Sequence[str] = DEFAULT_PENDING, level: str = "any"
) -> list[WorkItem]:
    statuses, chosen_level = _checked(pending, level)
    store.require_session(session)
    return blocked_items(_backlog_doc(store, session), pending=statuses, level=chosen_level)
