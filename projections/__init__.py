"""The default projections: pure folds from events to the files pipelines read.

    from eventstore import Store
    from projections import DEFAULT
    store = Store.open(projections=DEFAULT)
"""

from projections.backlog import BacklogState, TasksProjection
from projections.imports import diff_backlogs, parse_backlog

DEFAULT = (TasksProjection(),)

__all__ = ["DEFAULT", "BacklogState", "TasksProjection", "diff_backlogs", "parse_backlog"]
