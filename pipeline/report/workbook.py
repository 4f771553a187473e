"""Write the consolidated workbook with xlsxwriter: 汇总表, 明细, 问题清单, 未报送 and friends.

Every text cell is written with ``write_string``: a narrative that starts with "=" stays text
(output is data, never code). The file is written to a temporary name beside the target and
renamed into place by the caller, so a reader never sees half a workbook.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import xlsxwriter

from ..errors import ERROR, Issue
from .styles import STATUS_COLOURS, Styles

LEVEL_ORDER = ("省级", "市级", "区级", "县级")
LEVEL_NUMERALS = "一二三四五六七八九十"


@dataclass
class WorkbookInput:
    """Everything the workbook shows, computed before writing."""

    title: str
    period: str  # "2023-05"
    master: pd.DataFrame  # MasterTable columns
    issues: list[Issue]
    missing_units: list[str]
    tasks: pd.DataFrame
    title_font: str = "方正小标宋简体"
    body_font: str = "仿宋_GB2312"
    footnote: str = ""
    severe_points: float = 20.0
    generated_at: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def month(self) -> int:
        return int(self.period[5:7])

    @property
    def period_label(self) -> str:
        return f"1-{self.month}月" if self.month > 1 else "1月"


def workbook_name(title: str, period: str) -> str:
    """outbox/<title>（1-M月）.xlsx"""
    month = int(period[5:7])
    label = f"1-{month}月" if month > 1 else "1月"
    return f"{title}（{label}）.xlsx"


def write_workbook(data: WorkbookInput, path: Path) -> None:
    """Write every sheet to ``path`` (the caller renames it into place)."""
    book = xlsxwriter.Workbook(
        str(path),
        {
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            "nan_inf_to_errors": False,
        },
    )
    book.set_properties({"title": f"{data.title}（{data.period_label}）", "author": "consolidate"})
    styles = Styles(book, data.title_font, data.body_font)
    multi_unit = data.master.groupby("code")["unit"].nunique().max() > 1 if not data.master.empty else False
    write_summary(book, styles, data, multi_unit)
    write_detail(book, styles, data)
    write_issues(book, styles, data)
    write_missing(book, styles, data)
    write_lagging(book, styles, data)
    write_statistics(book, styles, data)
    book.close()


# -- 汇总表 ------------------------------------------------------------------------------------


def write_summary(book, styles: Styles, data: WorkbookInput, multi_unit: bool) -> None:
    sheet = book.add_worksheet("汇总表")
    columns = [
        ("序号", 5),
        ("项目名称", 16),
        ("指标任务", 26),
        ("牵头领导", 8),
        ("牵头责任单位", 12),
        *([("填报单位", 11)] if multi_unit else []),
        ("目标值", 9),
        ("已完成", 9),
        ("完成率", 8),
        ("状态", 8),
        ("排名", 7),
        ("完成情况", 40),
        ("备注", 14),
    ]
    index = {name: i for i, (name, _) in enumerate(columns)}
    last = len(columns) - 1
    for col, (_, width) in enumerate(columns):
        sheet.set_column(col, col, width)
    sheet.merge_range(0, 0, 0, last, data.title, styles.title)
    sheet.set_row(0, 36)
    sheet.merge_range(1, 0, 1, last, f"（1月至{data.month}月份完成情况）", styles.subtitle)
    sheet.set_row(1, 22)
    legend = "状态：" + "  ".join(STATUS_COLOURS_LEGEND)
    sheet.merge_range(2, 0, 2, last, f"序时进度 {data.month}/12 = {data.month / 12:.2%}    {legend}", styles.note)
    header_row = 3
    for name, col in index.items():
        if name in ("项目名称", "指标任务"):
            continue
        sheet.write_string(header_row, col, name, styles.header)
    sheet.merge_range(header_row, index["项目名称"], header_row, index["指标任务"], "项目名称及指标任务", styles.header)
    sheet.set_row(header_row, 30)
    row = header_row + 1
    master = data.master
    levels = [level for level in LEVEL_ORDER if level in set(master["level"])] + sorted(
        set(master["level"]) - set(LEVEL_ORDER) - {""}
    )
    if (master["level"] == "").any():
        levels.append("")
    for number, level in enumerate(levels):
        group = master[master["level"] == level]
        if len(levels) > 1 and level:
            projects = group["seq"].nunique()
            title = f"{LEVEL_NUMERALS[number % 10]}、{level}重点民生实事（{projects}项）"
            sheet.merge_range(row, 0, row, last, title, styles.band)
            sheet.set_row(row, 22)
            row += 1
        for _, project in group.groupby(["seq", "project"], sort=False):
            row = _write_project(sheet, styles, project, row, index, multi_unit)
    footnote = data.footnote or _footnote(master)
    if footnote:
        sheet.merge_range(row + 1, 0, row + 1, last, footnote, styles.note)
        sheet.set_row(row + 1, 30)
    sheet.freeze_panes(header_row + 1, 0)
    sheet.repeat_rows(header_row)
    sheet.set_landscape()
    sheet.set_paper(9)  # A4
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.4, right=0.4, top=0.6, bottom=0.6)
    sheet.center_horizontally()
    sheet.set_footer("&C— &P —")
    sheet.hide_gridlines(0)


STATUS_COLOURS_LEGEND = ["■已完成", "■正常", "■滞后", "■严重滞后", "■未报送"]


def _write_project(sheet, styles: Styles, project: pd.DataFrame, row: int, index: dict, multi_unit: bool) -> int:
    first = row
    for item in project.itertuples(index=False):
        status_format = styles.status(item.status)
        _text(sheet, row, index["指标任务"], item.indicator, styles.text)
        if multi_unit:
            _text(sheet, row, index["填报单位"], item.unit, styles.center)
        _number(sheet, row, index["目标值"], item.target, styles.number)
        _number(sheet, row, index["已完成"], item.completed, styles.number)
        _number(sheet, row, index["完成率"], item.rate, styles.percent)
        _text(sheet, row, index["状态"], item.status, status_format)
        rank = "" if pd.isna(item.rank) else f"{int(item.rank)}/{int(item.rank_count)}"
        _text(sheet, row, index["排名"], rank, styles.center)
        _text(sheet, row, index["完成情况"], item.narrative, styles.text)
        _text(sheet, row, index["备注"], item.remarks, styles.text)
        sheet.set_row(row, _row_height(item.narrative, item.indicator))
        row += 1
    head = project.iloc[0]
    spans = [
        ("序号", str(head.seq)),
        ("项目名称", head.project),
        ("牵头领导", head.leader),
        ("牵头责任单位", head.lead_units),
    ]
    for name, value in spans:
        col = index[name]
        style = styles.text if name == "项目名称" else styles.center
        if row - first > 1:
            sheet.merge_range(first, col, row - 1, col, "", style)
        _text(sheet, first, col, value, style)
    return row


def _row_height(narrative: str, indicator: str) -> float:
    """Enough lines for the longest wrapped text (about 20 characters a line at width 40)."""
    lines = max(len(narrative or "") / 20, len(indicator or "") / 13, 1)
    return min(15 * math.ceil(lines) + 6, 300)


def _footnote(master: pd.DataFrame) -> str:
    parts = []
    for level in LEVEL_ORDER:
        seqs = sorted(set(master.loc[master["level"] == level, "seq"]))
        if seqs:
            span = f"{seqs[0]}-{seqs[-1]}" if len(seqs) > 1 else f"{seqs[0]}"
            parts.append(f"{span} 项为{level}重点民生实事")
    return "注：" + "，".join(parts) if len(parts) > 1 else ""


# -- 明细 --------------------------------------------------------------------------------------

DETAIL_COLUMNS = [
    ("指标编号", "code", 9, "text"),
    ("序号", "seq", 6, "int"),
    ("级别", "level", 6, "text"),
    ("项目名称", "project", 24, "text"),
    ("指标任务", "indicator", 30, "text"),
    ("填报单位", "unit", 14, "text"),
    ("目标值", "target", 10, "number"),
    ("计量单位", "measure", 8, "text"),
    ("已完成", "completed", 10, "number"),
    ("取值方式", "completed_source", 9, "text"),
    ("上期累计", "previous", 10, "number"),
    ("本期新增", "change", 10, "number"),
    ("完成率", "rate", 9, "percent"),
    ("序时进度", "schedule", 9, "percent"),
    ("状态", "status", 9, "status"),
    ("排名", "rank", 6, "int"),
    ("参与排名数", "rank_count", 9, "int"),
    ("上报完成率", "reported_rate", 10, "percent"),
    ("上报排名", "reported_rank", 8, "int"),
    ("完成情况", "narrative", 50, "text"),
    ("备注", "remarks", 20, "text"),
    ("来源文件", "source_file", 24, "text"),
]


def write_detail(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("明细")
    for col, (name, _, width, kind) in enumerate(DETAIL_COLUMNS):
        sheet.write_string(0, col, name, styles.header)
        column_format = {"number": styles.plain_number, "percent": styles.plain_percent}.get(kind)
        sheet.set_column(col, col, width, column_format)
    columns = [data.master[key].tolist() for _, key, _, _ in DETAIL_COLUMNS]
    kinds = [kind for *_, kind in DETAIL_COLUMNS]
    for offset, values in enumerate(zip(*columns, strict=True), start=1):
        for col, (kind, value) in enumerate(zip(kinds, values, strict=True)):
            if kind == "text":
                if value:
                    sheet.write_string(offset, col, str(value))
            elif kind == "status":
                sheet.write_string(offset, col, value, styles.status_plain(value))
            elif value is not None and not pd.isna(value):
                sheet.write_number(offset, col, int(value) if kind == "int" else float(value))
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(data.master), 1), len(DETAIL_COLUMNS) - 1)


# -- 问题清单 ----------------------------------------------------------------------------------


def sorted_issues(issues: list[Issue]) -> list[Issue]:
    """Grouped by unit (then file), errors before warnings, in reading order within a file."""
    units = list(dict.fromkeys(issue.unit for issue in issues))
    return sorted(
        issues, key=lambda i: (units.index(i.unit) if i.unit else len(units), i.file, i.level != ERROR)
    )


def write_issues(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("问题清单")
    headers = [("文件", 28), ("单位", 14), ("位置", 14), ("级别", 6), ("问题", 80)]
    for col, (name, width) in enumerate(headers):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    for row, issue in enumerate(sorted_issues(data.issues), start=1):
        level_style = styles.error if issue.level == ERROR else styles.warning
        sheet.write_string(row, 0, issue.file, styles.text)
        sheet.write_string(row, 1, issue.unit, styles.text)
        sheet.write_string(row, 2, issue.location, styles.text)
        sheet.write_string(row, 3, issue.level, level_style)
        sheet.write_string(row, 4, issue.message, styles.text)
    if not data.issues:
        sheet.write_string(1, 0, "本期未发现问题。", styles.text)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(data.issues), 1), len(headers) - 1)


# -- 未报送 ------------------------------------------------------------------------------------


def write_missing(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("未报送")
    headers = [("序号", 6), ("单位", 20), ("未报送指标数", 12), ("指标编号", 30), ("牵头领导", 16)]
    for col, (name, width) in enumerate(headers):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    tasks = data.tasks
    for row, unit in enumerate(data.missing_units, start=1):
        own = tasks[tasks["unit"] == unit]
        sheet.write_number(row, 0, row, styles.center)
        sheet.write_string(row, 1, unit, styles.text)
        sheet.write_number(row, 2, len(own), styles.center)
        sheet.write_string(row, 3, "、".join(own["code"]), styles.text)
        leaders = "、".join(dict.fromkeys(x for x in own["leader"] if x))
        sheet.write_string(row, 4, leaders, styles.text)
    if not data.missing_units:
        sheet.write_string(1, 1, "各单位均已报送。", styles.text)
    sheet.freeze_panes(1, 0)


# -- 滞后事项 ----------------------------------------------------------------------------------


def write_lagging(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("滞后事项")
    headers = [("指标编号", 9), ("指标任务", 34), ("填报单位", 14), ("牵头领导", 10), ("完成率", 9),
               ("序时进度", 9), ("差距", 9), ("状态", 9), ("完成情况", 60)]  # fmt: skip
    for col, (name, width) in enumerate(headers):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    lagging = lagging_items(data.master)
    for row, item in enumerate(lagging.itertuples(index=False), start=1):
        sheet.write_string(row, 0, item.code, styles.center)
        sheet.write_string(row, 1, item.indicator, styles.text)
        sheet.write_string(row, 2, item.unit, styles.text)
        sheet.write_string(row, 3, item.leader, styles.text)
        _number(sheet, row, 4, item.rate, styles.percent)
        _number(sheet, row, 5, item.schedule, styles.percent)
        _number(sheet, row, 6, item.gap, styles.percent)
        sheet.write_string(row, 7, item.status, styles.status(item.status))
        sheet.write_string(row, 8, item.narrative, styles.text)
    if lagging.empty:
        sheet.write_string(1, 1, "本期没有滞后于序时进度的事项。", styles.text)
    sheet.freeze_panes(1, 0)


def lagging_items(master: pd.DataFrame) -> pd.DataFrame:
    """The rows behind schedule, worst first."""
    lagging = master[master["status"].isin(["严重滞后", "滞后"])]
    return lagging.sort_values(["gap", "order"], kind="stable")


# -- 统计 --------------------------------------------------------------------------------------


def write_statistics(book, styles: Styles, data: WorkbookInput) -> None:
    from .statistics import write_statistics_sheet

    write_statistics_sheet(book, styles, data)


# -- cells -------------------------------------------------------------------------------------


def _text(sheet, row: int, col: int, value, style) -> None:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if text:
        sheet.write_string(row, col, text, style)
    else:
        sheet.write_blank(row, col, None, style)


def _number(sheet, row: int, col: int, value, style) -> None:
    if value is None or pd.isna(value):
        sheet.write_blank(row, col, None, style)
    else:
        sheet.write_number(row, col, float(value), style)


__all__ = ["STATUS_COLOURS", "WorkbookInput", "lagging_items", "workbook_name", "write_workbook"]
