"""A normalized return row: one per (data row of a returned sheet, task it reports on).

Numbers are parsed before validation: ``completed`` is NaN where the cell is blank or not a
number, and ``completed_raw`` keeps what was typed, so that "not a number" is a check here
rather than a coercion error (pandera reports coercion failures but then skips the range checks).
"""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

RETURN_COLUMNS = [
    "file", "sheet", "row", "unit", "period", "code", "indicator_text",
    "completed", "completed_raw", "completed_source",
    "target_reported", "target_raw", "reported_rate", "rate_raw",
    "reported_rank", "reported_rank_of", "stage", "narrative", "remarks",
    "cell_code", "cell_completed", "cell_target", "cell_rate", "cell_narrative",
]  # fmt: skip


class ReturnRows(pa.DataFrameModel):
    file: Series[str]
    sheet: Series[str]
    row: Series[int] = pa.Field(ge=1)
    unit: Series[str]
    period: Series[str] = pa.Field(str_matches=r"^\d{4}-\d{2}$")
    code: Series[str]
    indicator_text: Series[str]
    completed: Series[float] = pa.Field(nullable=True, ge=0)
    completed_raw: Series[str]
    completed_source: Series[str] = pa.Field(isin=["填报", "文本提取", ""])
    target_reported: Series[float] = pa.Field(nullable=True, ge=0)
    target_raw: Series[str]
    reported_rate: Series[float] = pa.Field(nullable=True, ge=0)
    rate_raw: Series[str]
    reported_rank: Series[float] = pa.Field(nullable=True, ge=1)
    reported_rank_of: Series[float] = pa.Field(nullable=True, ge=1)
    stage: Series[str]
    narrative: Series[str]
    remarks: Series[str]
    cell_code: Series[str]
    cell_completed: Series[str]
    cell_target: Series[str]
    cell_rate: Series[str]
    cell_narrative: Series[str]

    @pa.dataframe_check(name="not-a-number")
    def completed_is_a_number(cls, df):
        return df["completed"].notna() | (df["completed_raw"] == "")

    @pa.dataframe_check(name="target-not-a-number")
    def target_is_a_number(cls, df):
        return df["target_reported"].notna() | (df["target_raw"] == "")

    @pa.dataframe_check(name="rate-not-a-number")
    def rate_is_a_number(cls, df):
        return df["reported_rate"].notna() | (df["rate_raw"] == "")

    class Config:
        strict = True
        coerce = True
