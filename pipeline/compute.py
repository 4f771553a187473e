"""Pure computations on the merged table: rates, 序时进度, status, ranks, change, checks.

Rules (DESIGN.md): 完成率 = 已完成 / 目标值 for 数量 rows with a target, uncapped; 序时进度 =
M/12 unless the task list gives a plan; 已完成 at ≥ 100 %, 滞后 below 序时进度, 严重滞后 more than
``severe_points`` below; ranks by descending rate among the rows of one indicator, ties sharing
the best rank, blank when fewer than two take part.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from schemas import MASTER_COLUMNS, STAGES

from .errors import WARNING, Issue
from .text import format_number

NOT_RETURNED = "未报送"


def schedule_share(month: int, plan: dict | None) -> float:
    """序时进度 for a month: the plan's latest milestone due by then, else month/12."""
    if plan:
        due = [month_due for month_due in plan if month_due <= month]
        return float(plan[max(due)]) if due else 0.0
    return month / 12


def compute_master(merged: pd.DataFrame, month: int, severe_points: float) -> pd.DataFrame:
    """Fill rate, schedule, gap, status, rank and change; return the MasterTable columns."""
    frame = merged.copy(deep=False)  # columns are only ever replaced, never written in place
    plans = frame["plan"] if "plan" in frame else pd.Series([None] * len(frame), index=frame.index)
    by_month = schedule_share(month, None)
    frame["schedule"] = [schedule_share(month, plan) if plan else by_month for plan in plans]
    quantity = (frame["kind"] == "数量") & (frame["target"] > 0)
    frame["rate"] = np.where(quantity, frame["completed"] / frame["target"], np.nan)
    frame["gap"] = frame["rate"] - frame["schedule"]
    frame["status"] = _status(frame, severe_points)
    frame["change"] = frame["completed"] - frame["previous"]
    rank, count = rank_within_indicator(frame)
    frame["rank"] = rank
    frame["rank_count"] = count
    frame["source_file"] = frame["file"].fillna("")
    for column in ("completed_source", "narrative", "remarks"):
        frame[column] = frame[column].fillna("")
    order = frame["order"]
    if not (order.is_monotonic_increasing and order.is_unique):  # task-list order already: no sort
        frame = frame.sort_values(["order", "unit"], kind="stable")
    return frame.reset_index(drop=True)


def master_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[MASTER_COLUMNS]


def _status(frame: pd.DataFrame, severe_points: float) -> pd.Series:
    severe = severe_points / 100
    rate, schedule = frame["rate"], frame["schedule"]
    status = pd.Series("正常", index=frame.index, dtype=object)
    status[rate < schedule] = "滞后"
    status[rate < schedule - severe] = "严重滞后"
    status[rate >= 1] = "已完成"
    milestone = frame["kind"] == "节点"
    known_stage = frame["stage"].isin(STAGES)
    stage = frame["stage"].where(known_stage, "推进中")
    status[milestone] = stage[milestone]
    # A 数量 row returned without a number shows the stage its narrative states, else 未报送.
    unvalued = (frame["kind"] == "数量") & (frame["target"] > 0) & frame["completed"].isna()
    status[unvalued & known_stage] = frame["stage"][unvalued & known_stage]
    status[(unvalued & ~known_stage) | ~frame["returned"]] = NOT_RETURNED
    return status


def rank_within_indicator(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(排名, 参与排名数): descending rate per indicator, ties share the best rank (1, 2, 2, 4)."""
    rated = frame["rate"].notna()
    # Rates from different divisions that are equal on paper must tie: compare at 1e-9.
    rounded = frame["rate"].round(9)
    count = rated.groupby(frame["code"]).transform("sum").astype("int64")
    rank = rounded.where(rated).groupby(frame["code"]).rank(method="min", ascending=False)
    rank = rank.where(count >= 2).astype("Int64")
    return rank, count.where(rated, count)


def check_reported(frame: pd.DataFrame, tolerance_points: float) -> list[Issue]:
    """Warnings where what a unit wrote disagrees with what we computed or were told."""
    issues = []
    tolerance = tolerance_points / 100
    for row in frame[_may_disagree(frame, tolerance)].itertuples(index=False):
        location = _location(row.sheet, row.cell_rate or row.cell_narrative)
        if pd.notna(row.reported_rate) and pd.notna(row.rate) and abs(row.reported_rate - row.rate) > tolerance + 1e-12:
            cell = row.cell_rate or row.cell_narrative
            issues.append(
                Issue(row.file, row.unit, location, WARNING, "rate-mismatch",
                      f"{cell}：指标 {row.code} 上报完成率 {_pct(row.reported_rate)} 与计算值 {_pct(row.rate)}"
                      f"（{format_number(row.completed)}/{format_number(row.target)}）不一致，"
                      "汇总表采用计算值，请核对后更正。")
            )  # fmt: skip
        if pd.notna(row.target_reported) and pd.notna(row.target) and abs(row.target_reported - row.target) > 1e-9:
            issues.append(
                Issue(row.file, row.unit, _location(row.sheet, row.cell_target), WARNING, "target-mismatch",
                      f"{row.cell_target}：指标 {row.code} 填报的目标值 {format_number(row.target_reported)} 与任务清单的 "
                      f"{format_number(row.target)} 不一致，汇总表以任务清单为准；如目标有调整，请联系牵头科室更新任务清单。")
            )  # fmt: skip
        if pd.notna(row.change) and row.change < 0:
            issues.append(
                Issue(row.file, row.unit, _location(row.sheet, row.cell_completed or row.cell_narrative), WARNING,
                      "decreased",
                      f"指标 {row.code} 的累计完成数 {format_number(row.completed)} 比上期的 "
                      f"{format_number(row.previous)} 少，累计数不应减少，请核对。")
            )  # fmt: skip
        if row.kind == "数量" and pd.notna(row.target) and row.target > 0 and pd.isna(row.completed):
            issues.append(
                Issue(row.file, row.unit, _location(row.sheet, row.cell_completed), WARNING, "no-value",
                      f"{row.cell_completed or _row_label(row.row)}：指标 {row.code} 没有填写已完成数，"
                      "完成情况中也没有写明完成数，本期无法计算完成率。请填写累计完成数。")
            )  # fmt: skip
    return issues


def _may_disagree(frame: pd.DataFrame, tolerance: float) -> pd.Series:
    """The returned rows that ``check_reported`` must look at, found with whole-column arithmetic.

    Looking at each of 70k rows in Python costs half a second, and only a few disagree. The
    tests here are the loop's own, on the same float64 values (IEEE arithmetic is the same in
    numpy and Python), so no row is skipped that the loop would flag; with any other dtype
    (hand-built frames) every returned row is looked at, as before.
    """
    returned = frame["returned"]
    numbers = ["reported_rate", "rate", "target_reported", "target", "change", "completed"]
    if not all(column in frame and frame[column].dtype == "float64" for column in numbers):
        return returned
    rate_off = (frame["reported_rate"] - frame["rate"]).abs() > tolerance + 1e-12  # NaN compares False
    target_off = (frame["target_reported"] - frame["target"]).abs() > 1e-9
    decreased = frame["change"] < 0
    no_value = (frame["kind"] == "数量") & (frame["target"] > 0) & frame["completed"].isna()
    return returned & (rate_off | target_off | decreased | no_value)


def _row_label(row) -> str:
    return f"第{int(row)}行" if pd.notna(row) else "该指标"


def _location(sheet, cell) -> str:
    if not cell:
        return sheet or ""
    return f"{sheet}!{cell}" if sheet else cell


def _pct(value: float) -> str:
    """0.4294 → "42.94%"; a huge rate (a % cell holding 1e308) as format_number writes it, not
    as "inf%" or 300 digits."""
    percent = value * 100
    if abs(percent) < 1e15:
        return f"{percent:.2f}".rstrip("0").rstrip(".") + "%"
    return format_number(percent) + "%"
