"""Export-dir ownership and `session move` on a PostgreSQL journal: the claim is checked
inside the append's transaction and the latest SessionMoved is found by its index there too."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from support import INITIAL, SESSION, seed

from eventstore import Store
from eventstore.errors import InvalidInputError
from projections import DEFAULT

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["pgserver"]  # the pg_server / pg_url fixtures


def test_a_second_claim_is_refused_and_a_move_is_followed(pg_url: str, project_dir: Path) -> None:
    with Store.open(pg_url, projections=DEFAULT, create=True) as store:
        seed(store, SESSION, INITIAL, f"plan/{SESSION}")
        with pytest.raises(InvalidInputError, match=f"belongs to session {SESSION}"):
            seed(store, "002", INITIAL, f"plan/{SESSION}")
        assert store.sessions() == [SESSION]
        store.move_session(SESSION, "moved")
        store.move_session(SESSION, "moved-again")
        assert store.export_dir(SESSION) == project_dir / "moved-again"
        seed(store, "002", INITIAL, f"plan/{SESSION}")  # free again since the move
        with pytest.raises(InvalidInputError, match="belongs to session 002"):
            store.move_session(SESSION, f"plan/{SESSION}")
        (tasks,) = [r for r in store.project(SESSION) if r.projection == "tasks"]
        assert tasks.path == project_dir / "moved-again" / "tasks.json"
        assert tasks.path.read_bytes() == (project_dir / "moved-again" / "tasks.json").read_bytes()
