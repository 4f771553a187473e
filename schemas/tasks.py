"""The task list: one row per (indicator, reporting unit, target)."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

LEVELS = ("省级", "市级", "区级", "县级")
KINDS = ("数量", "节点")
STAGES = ("未开工", "前期工作", "推进中", "基本完成", "已完成")


class TaskList(pa.DataFrameModel):
    code: Series[str] = pa.Field(str_length={"min_value": 1})
    seq: Series[int] = pa.Field(ge=0)
    level: Series[str]
    project: Series[str]
    indicator: Series[str] = pa.Field(str_length={"min_value": 1})
    target: Series[float] = pa.Field(nullable=True, ge=0)
    measure: Series[str]
    kind: Series[str] = pa.Field(isin=list(KINDS))
    leader: Series[str]
    lead_units: Series[str]
    unit: Series[str] = pa.Field(str_length={"min_value": 1})
    email: Series[str]
    order: Series[int]

    @pa.dataframe_check(name="duplicate-task")
    def one_row_per_code_and_unit(cls, df):
        return ~df.duplicated(["code", "unit"], keep=False)

    class Config:
        strict = "filter"
        coerce = True
