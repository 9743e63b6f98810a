"""The default projections: pure folds from events to the files pipelines read.

    from eventstore import Store
    from projections import DEFAULT
    store = Store.open(projections=DEFAULT)

tasks.json (the backlog), batch-progress.json (while a batch is unfinished), and
fix-history.json / fix-history.md (once a fix task exists), all in the session's export
directory.
"""

from projections.backlog import BacklogState, TasksProjection
from projections.batch import BatchProgressProjection
from projections.fixes import FixHistoryJsonProjection, FixHistoryMarkdownProjection

DEFAULT = (
    TasksProjection(),
    BatchProgressProjection(),
    FixHistoryJsonProjection(),
    FixHistoryMarkdownProjection(),
)

__all__ = [
    "DEFAULT",
    "BacklogState",
    "BatchProgressProjection",
    "FixHistoryJsonProjection",
    "FixHistoryMarkdownProjection",
    "TasksProjection",
]
