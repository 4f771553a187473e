"""Validate every returned row at once with pandera (lazily), and turn failures into issues.

One ``validate(lazy=True)`` call over the rows of all returns costs a fixed ~5 ms; per-file
calls cost that 3,000 times over (issue 7). Each failure case carries the frame index, which
leads back to the file, sheet and cell the unit typed the value into.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from schemas import ReturnRows

from .errors import ERROR, Issue
from .text import format_number

# check name → (which cell to point at, message template, rejects the row)
MESSAGES: dict[str, tuple[str, str]] = {
    "not-a-number": ("cell_completed", "{cell}：已完成“{completed_raw}”不是数字，请填写累计完成数（只填数字，如 3500）"),
    "negative": ("cell_completed", "{cell}：已完成为负数（{completed}），请填写累计完成数"),
    "target-not-a-number": ("cell_target", "{cell}：目标值“{target_raw}”不是数字，请按任务清单填写目标值"),
    "target-negative": ("cell_target", "{cell}：目标值为负数，请按任务清单填写目标值"),
    "rate-not-a-number": ("cell_rate", "{cell}：完成率“{rate_raw}”不是数字，请填写百分数（如 43%），或留空由系统计算"),
    "rate-negative": ("cell_rate", "{cell}：完成率为负数，请填写百分数（如 43%），或留空由系统计算"),
    "unknown-code": ("cell_code", "{cell}：指标编号“{code}”不在任务清单中，请核对指标编号（见下发的模板）"),
    "not-your-task": ("cell_code", "{cell}：指标“{code}”不是{unit}的任务，请删除该行，或由该指标的填报单位报送"),
    "duplicate-row": ("cell_code", "{cell}：指标“{code}”在本文件中重复填报，已采用第一行，请删除重复的行"),
    "rank-invalid": ("cell_code", "{cell}：排名应为正整数，请核对"),
    "unexpected": ("cell_code", "{cell}：第{row}行的数据不符合要求，已不采用。请按下发的模板填写该行"),
    "error-value": ("cell_completed", "{cell}：已完成单元格显示错误值“{completed_raw}”，请改为填写累计完成数（数字）"),
    "formula-no-value": ("cell_completed", "{cell}：已完成是公式“{completed_raw}”，但文件中没有保存计算结果，"
                         "请用 Excel 或 WPS 打开后保存，或直接填写数字"),
}  # fmt: skip
_COLUMN_CHECKS = {
    ("completed", "greater_than_or_equal_to(0)"): "negative",
    ("target_reported", "greater_than_or_equal_to(0)"): "target-negative",
    ("reported_rate", "greater_than_or_equal_to(0)"): "rate-negative",
    ("reported_rank", "greater_than_or_equal_to(1)"): "rank-invalid",
    ("reported_rank_of", "greater_than_or_equal_to(1)"): "rank-invalid",
}


def return_schema(codes: set[str], pairs: set[tuple[str, str]]) -> pa.DataFrameSchema:
    """ReturnRows plus the checks that depend on this task list."""
    schema = ReturnRows.to_schema()
    code_known = pa.Check(lambda s: s.isin(codes), name="unknown-code")
    schema = schema.update_column("code", checks=[code_known])

    def belongs_to_unit(df: pd.DataFrame) -> pd.Series:
        known = df["code"].isin(codes)
        # tolist(): iterating the Series itself boxes each value through pandas (5x slower).
        pairs_seen = zip(df["code"].tolist(), df["unit"].tolist(), strict=True)
        pair_ok = pd.Series([(c, u) in pairs for c, u in pairs_seen], index=df.index)
        return ~known | pair_ok

    def first_of_duplicates(df: pd.DataFrame) -> pd.Series:
        return ~df.duplicated(["file", "unit", "code"], keep="first")

    schema.checks = list(schema.checks) + [
        pa.Check(belongs_to_unit, name="not-your-task"),
        pa.Check(first_of_duplicates, name="duplicate-row"),
    ]
    return schema


def validate_returns(
    frame: pd.DataFrame, codes: set[str], pairs: set[tuple[str, str]]
) -> tuple[pd.DataFrame, list[Issue]]:
    """Rows that passed every check, and one issue per failing cell (rows with errors dropped)."""
    if frame.empty:
        return frame, []
    schema = return_schema(codes, pairs)
    try:
        return schema.validate(frame, lazy=True), []
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases
    issues, rejected = _issues_from_failures(frame, failures)
    accepted = frame.drop(index=sorted(rejected))
    return schema.validate(accepted, lazy=False) if not accepted.empty else accepted, issues


def _refine(name: str, row: pd.Series) -> str:
    """A cell error or an uncomputed formula deserves its own advice."""
    if name == "not-a-number":
        raw = str(row["completed_raw"])
        if raw.startswith("#"):
            return "error-value"
        if raw.startswith("="):
            return "formula-no-value"
    return name


def _issues_from_failures(frame: pd.DataFrame, failures: pd.DataFrame) -> tuple[list[Issue], set]:
    issues, rejected, seen = [], set(), set()
    for case in failures.itertuples(index=False):
        if case.index is None or pd.isna(case.index):
            continue  # a whole-frame failure (a column missing) cannot come from the users' files
        check = str(case.check)
        name = _COLUMN_CHECKS.get((case.column, check), check)
        if name not in MESSAGES:
            name = "unexpected"  # a check without its own advice still rejects only its row
        key = (name, case.index)
        if key in seen:
            continue
        seen.add(key)
        row = frame.loc[case.index]
        cell_column, template = MESSAGES[_refine(name, row)]
        cell = row[cell_column] or row["cell_code"] or f"第{row['row']}行"
        values = {k: (format_number(v) if isinstance(v, float) else v) for k, v in row.items()}
        message = template.format(**{**values, "cell": cell})
        location = f"{row['sheet']}!{cell}" if row["sheet"] else cell
        issues.append(Issue(row["file"], row["unit"], location, ERROR, name, message))
        rejected.add(case.index)
    return issues, rejected
