"""Events serialized ahead of their append, kept in a temporary file instead of memory.

A million-event append must not hold a million models (or rows) at once: each event is
serialized once, as it is read and validated, and written here as one line; the insert
reads the lines back as a generator. The write lock is taken only for that insert.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

import orjson

from eventstore.errors import JournalWriteError

# A line: type TAB event id as JSON (null or a string) TAB data as JSON, then a newline.
# orjson escapes control characters in strings, so neither JSON part holds a tab or newline.
_TAB, _NEWLINE = b"\t", b"\n"


class StagedEvents:
    """Serialized events of one stream, validated against the stream at `validated_at`
    (the journal head they were checked against). Iterate it for (type, data, event id)
    as many times as needed; close it (or use `with`) to delete the file."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.count = 0
        self.validated_at = 0
        self.given_ids: list[str] = []
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="evstore-append-")  # noqa: SIM115 - lives as long as self

    def add(self, event_type: str, data: bytes, event_id: str | None) -> None:
        try:
            self._file.write(b"".join((event_type.encode(), _TAB, orjson.dumps(event_id), _TAB,
                                       data, _NEWLINE)))
        except OSError as exc:
            raise JournalWriteError(
                f"cannot stage the events of this append in a temporary file ({exc.strerror}):"
                " free space in the temporary directory (TMPDIR)"
            ) from None
        self.count += 1
        if event_id is not None:
            self.given_ids.append(event_id)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[str, str, str | None]]:
        """(type, data as JSON text, event id or None) in the order they were added."""
        self._file.flush()
        self._file.seek(0)
        loads = orjson.loads
        for line in self._file:
            event_type, event_id, data = line.rstrip(_NEWLINE).split(_TAB, 2)
            yield event_type.decode(), data.decode(), loads(event_id)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> StagedEvents:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
