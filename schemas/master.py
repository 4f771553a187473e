"""The master table: one row per (indicator, reporting unit), every computed column filled."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

STATUSES = ("已完成", "正常", "滞后", "严重滞后", "未报送", "未开工", "前期工作", "推进中", "基本完成")

MASTER_COLUMNS = [
    "code", "seq", "level", "project", "indicator", "unit", "target", "measure", "kind",
    "leader", "lead_units", "completed", "completed_source", "previous", "change", "rate",
    "schedule", "gap", "status", "rank", "rank_count", "reported_rate", "reported_rank",
    "reported_rank_of", "narrative", "remarks", "source_file", "returned", "order",
]  # fmt: skip


class MasterTable(pa.DataFrameModel):
    code: Series[str]
    seq: Series[int]
    level: Series[str]
    project: Series[str]
    indicator: Series[str]
    unit: Series[str]
    target: Series[float] = pa.Field(nullable=True, ge=0)
    measure: Series[str]
    kind: Series[str]
    leader: Series[str]
    lead_units: Series[str]
    completed: Series[float] = pa.Field(nullable=True, ge=0)
    completed_source: Series[str]
    previous: Series[float] = pa.Field(nullable=True)
    change: Series[float] = pa.Field(nullable=True)
    rate: Series[float] = pa.Field(nullable=True, ge=0)
    schedule: Series[float] = pa.Field(ge=0, le=1)
    gap: Series[float] = pa.Field(nullable=True)
    status: Series[str] = pa.Field(isin=list(STATUSES))
    rank: Series[pa.Int64] = pa.Field(nullable=True, ge=1)
    rank_count: Series[pa.Int64] = pa.Field(ge=0)
    reported_rate: Series[float] = pa.Field(nullable=True)
    reported_rank: Series[float] = pa.Field(nullable=True)
    reported_rank_of: Series[float] = pa.Field(nullable=True)
    narrative: Series[str]
    remarks: Series[str]
    source_file: Series[str]
    returned: Series[bool]
    order: Series[int]

    @pa.dataframe_check(name="one-row-per-task")
    def one_row_per_task(cls, df):
        return ~df.duplicated(["code", "unit"], keep=False)

    class Config:
        strict = True
        coerce = True
