"""The default projections: pure folds from events to the files pipelines read.

    from eventstore import Store
    from projections import DEFAULT
    store = Store.open(projections=DEFAULT)
"""

from projections.backlog import BacklogState, TasksProjection

DEFAULT = (TasksProjection(),)

__all__ = ["DEFAULT", "BacklogState", "TasksProjection"]
