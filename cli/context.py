"""Per-invocation state: the global options, and the store opened on first use."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eventstore.store import Store


@dataclass
class AppContext:
    db: str | None
    durability: str
    _store: Store | None = field(default=None, repr=False)

    def store(
        self, *, create: bool = False, read_only: bool = False, flush_retries: int = 3,
        **kwargs: Any,
    ) -> Store:
        """The store, opened on first use. `read_only` for commands that only read: they
        never write the journal (nor migrate it) and work on read-only media."""
        from eventstore.locate import default_journal, is_url  # noqa: PLC0415 - lazy: fast --help
        from eventstore.store import Store  # noqa: PLC0415
        from projections import DEFAULT  # noqa: PLC0415

        if self._store is None:
            # A PostgreSQL URL is passed through as given: Path() would fold its `//`.
            db: str | Path | None = Path(self.db) if self.db else None
            if is_url(self.db):
                db = self.db
            if create and db is None:
                db = default_journal(Path.cwd())
            self._store = Store.open(
                db,
                projections=DEFAULT,
                create=create,
                read_only=read_only,
                durability=self.durability,  # type: ignore[arg-type]
                flush_retries=flush_retries,
                **{"tool": "evstore-cli", **kwargs},
            )
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
