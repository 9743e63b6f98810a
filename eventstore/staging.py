"""Events serialized ahead of their append, kept in a temporary file instead of memory.

A million-event append must not hold a million models (or rows) at once: each event is
serialized once, as it is read and validated, and written here as one line; the insert
reads the lines back as a generator. The write lock is taken only for that insert.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import IO, TYPE_CHECKING, Self

import orjson

from eventstore.errors import JournalWriteError

if TYPE_CHECKING:
    from collections.abc import Iterator

# A line: type TAB event id TAB data as JSON, then a newline. A given id is stored as a JSON
# string (it may hold any character), a generated one as its 36 bare characters: making
# them while staging keeps that work out of the write lock. orjson escapes control characters in
# strings, so no JSON part holds a tab or a newline.
_TAB, _NEWLINE, _QUOTE = b"\t", b"\n", b'"'


class StagedEvents:
    """Serialized events of one stream, validated against the stream at its version
    `validated_version`. Iterate it as many times as needed; close it (or use `with`) to
    delete the file."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.count = 0
        self.validated_version = 0
        self.given_ids: list[str] = []
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="evstore-append-")  # noqa: SIM115 - lives as long as self

    def add(self, event_type: str, data: bytes, event_id: str, *, given: bool) -> None:
        """One event; `given`: its id came with it (an idempotency key), rather than made
        for it (journal.new_event_id)."""
        stored_id = orjson.dumps(event_id) if given else event_id.encode()
        try:
            self._file.write(b"".join((event_type.encode(), _TAB, stored_id, _TAB, data, _NEWLINE)))
        except OSError as exc:
            raise _unstaged(exc) from None
        self.count += 1
        if given:
            self.given_ids.append(event_id)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[str, str, str, bool]]:
        """(type, data as JSON text, event id, whether the id was given) in the order the
        events were added."""
        try:
            self._file.flush()
        except OSError as exc:
            raise _unstaged(exc) from None
        self._file.seek(0)
        loads = orjson.loads
        for line in self._file:
            event_type, event_id, data = line.rstrip(_NEWLINE).split(_TAB, 2)
            if event_id[:1] == _QUOTE:
                yield event_type.decode(), data.decode(), loads(event_id), True
            else:
                yield event_type.decode(), data.decode(), event_id.decode(), False

    def close(self) -> None:
        # A failed flush (the disk is full) still closes the descriptor; the file is scrap.
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unstaged(exc: OSError) -> JournalWriteError:
    return JournalWriteError(
        f"cannot stage the events of this append in a temporary file ({exc.strerror}): free"
        " space in the temporary directory (TMPDIR), or point TMPDIR elsewhere; nothing written"
    )
