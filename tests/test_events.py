"""Event models: frozen, discriminated by a stable `type`, strict about their fields."""

from __future__ import annotations

import pydantic
import pytest

from eventstore import events
from eventstore.errors import InvalidInputError, InvalidSessionIdError
from eventstore.events import (
    EVENT_TYPES,
    STATUSES,
    ItemStatusChanged,
    ItemUpdated,
    parse_event,
    register_upcaster,
    upcast,
    validate_session_id,
)


def test_catalog_holds_every_design_event_type() -> None:
    """The docs/design.md §4 catalog, by its stable type strings."""
    assert set(EVENT_TYPES) == {
        "SessionCreated", "SessionMoved", "BacklogImported", "ItemAdded", "ItemStatusChanged",
        "ItemUpdated", "ItemRemoved", "BatchStarted", "BatchResumed", "BatchItemStarted", "BatchItemCompleted",
        "BatchItemFailed", "BatchItemSkipped", "BatchHealingAttempted", "BatchFinished",
        "BatchAbandoned", "TaskFailed", "FixTaskCreated", "FixLimitReached", "ErrorRecorded",
    }


def test_status_vocabulary_includes_ready() -> None:
    """Real files use Ready although the pipeline's StatusEnum lacks it."""
    assert STATUSES == ("Planned", "Researching", "Implementing", "Retrying", "Complete",
                        "Failed", "Obsolete", "Ready")


def test_events_are_frozen() -> None:
    """An event cannot be changed once made."""
    event = ItemStatusChanged(item_id="P1", status="Complete")
    with pytest.raises(pydantic.ValidationError):
        event.status = "Failed"  # type: ignore[misc]


def test_type_is_kept_out_of_the_payload() -> None:
    """The journal keeps `type` in its own column; `data` holds only the fields."""
    dumped = ItemStatusChanged(item_id="P1", status="Complete").model_dump(mode="json")
    assert dumped == {"item_id": "P1", "status": "Complete", "reason": None}


def test_parse_event_dispatches_on_type() -> None:
    """A payload with a `type` becomes that model."""
    event = parse_event({"type": "ItemUpdated", "item_id": "P1", "changes": {"title": "x"}})
    assert isinstance(event, ItemUpdated)
    assert event.changes == {"title": "x"}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"type": "Nope"}, "unknown event type 'Nope'"),
        ({"type": "ItemStatusChanged", "item_id": "P1", "status": "Done"}, "status"),
        ({"type": "ItemStatusChanged", "item_id": "P1"}, "status: Field required"),
        ({"type": "ItemStatusChanged", "item_id": "P1", "status": "Complete", "x": 1}, "Extra inputs"),
        ({"type": "ItemUpdated", "item_id": "P1", "changes": {"id": "P9"}}, "cannot change id"),
        ({"type": "ItemAdded", "item": {"title": "no id"}, "parent_id": None}, '"id" and "type"'),
        ({"type": "BacklogImported", "backlog": {"items": []}, "source": "f", "sha256": "x"}, '"backlog" array'),
    ],
)
def test_bad_payloads_are_refused_in_one_line(payload: dict[str, object], message: str) -> None:
    """Each refusal names where it came from and what is wrong, on one line."""
    with pytest.raises(InvalidInputError) as caught:
        parse_event(payload, where="line 7")
    text = str(caught.value)
    assert text.startswith("line 7: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("good", ["001_14b9dc2a33c7", "a", "A.b-c_d", "9" * 128])
def test_good_session_ids(good: str) -> None:
    """Letters, digits, dot, dash, underscore; starting with a letter or digit."""
    assert validate_session_id(good) == good


@pytest.mark.parametrize("bad", ["", "..", "../x", "a/b", ".hidden", "-x", "a b", "a\nb", "a\x00", "9" * 129, "é"])
def test_bad_session_ids(bad: str) -> None:
    """Anything that could escape a directory or confuse a shell is refused."""
    with pytest.raises(InvalidSessionIdError, match="invalid session id"):
        validate_session_id(bad)


def test_upcasters_bring_old_payloads_to_the_current_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored schema_version below the current one runs the registered upcasters in order."""
    monkeypatch.setattr(events, "_UPCASTERS", {})
    monkeypatch.setattr(ItemStatusChanged, "schema_version", 3)
    register_upcaster("ItemStatusChanged", 1)(lambda d: {"item_id": d["item_id"], "status": d["state"]})
    register_upcaster("ItemStatusChanged", 2)(lambda d: {**d, "reason": d.get("reason") or "upcast"})
    assert upcast("ItemStatusChanged", 1, {"item_id": "P1", "state": "Complete"}) == {
        "item_id": "P1", "status": "Complete", "reason": "upcast",
    }
    assert upcast("ItemStatusChanged", 3, {"item_id": "P1"}) == {"item_id": "P1"}
