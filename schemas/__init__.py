"""pandera schemas for the three tables that cross stage boundaries.

- ``TaskList``: the coordinator's master task list, one row per (indicator, reporting unit);
- ``ReturnRows``: what the units returned, normalized, one row per (data row, task), with the
  cell address of every value so that a failure maps back to "区人社局.xlsx, Sheet1!E7";
- ``MasterTable``: the consolidated table the workbook is written from.
"""

from .master import MASTER_COLUMNS, STATUSES, MasterTable
from .returns import RETURN_COLUMNS, ReturnRows
from .tasks import KINDS, LEVELS, STAGES, TaskList

__all__ = [
    "KINDS",
    "LEVELS",
    "MASTER_COLUMNS",
    "RETURN_COLUMNS",
    "STAGES",
    "STATUSES",
    "MasterTable",
    "ReturnRows",
    "TaskList",
]
