"""The per-unit fill-in templates: one workbook per unit and period, the preferred form of a return.

A template carries the unit's tasks pre-filled and locked (指标编号, 项目名称, 指标任务, 目标值,
计量单位, and 上期累计 from the history), shaded input cells for what the unit reports, Chinese
input messages and checks on the numbers, and a very hidden sheet ``_consolidate_meta`` with
the unit and period, so a returned template is recognised whatever its file name.

The header wordings are the reader's own aliases (pipeline.intake.layout.ALIASES), so a filled
template reads back with no warnings. 上期累计 is deliberately not an alias of any field: the
reader ignores it, and it can never be taken for 已完成.

Sheet protection has no password (审阅 → 撤销工作表保护 lifts it): it guards against slips,
not against the unit.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xlsxwriter
import xlsxwriter.packager

from schemas import STAGES

from .config import Config
from .errors import ConfigError
from .intake.read import META_SHEET
from .report.bulk import literal_shared_strings
from .report.styles import DECIMAL_FORMAT, INTEGER_FORMAT
from .report.workbook import text_lines
from .text import text_key

TEMPLATE_VERSION = 1
TEMPLATE_SHEET = "填报表"
TEMPLATE_FOLDER = "templates"
LOCKED_FILL = "#F2F2F2"
INPUT_FILL = "#FFF2CC"
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


@dataclass(frozen=True)
class TemplateColumn:
    key: str
    header: str
    width: float
    editable: bool


def template_columns(period: str) -> list[TemplateColumn]:
    """The data table's columns; headers fold (header_key) to the reader's aliases."""
    month = int(period[5:7])
    now = f"1-{month}月" if month > 1 else "1月"
    before = f"1-{month - 1}月" if month > 2 else ("1月" if month == 2 else "上年")
    return [
        TemplateColumn("code", "指标编号", 8, False),
        TemplateColumn("project", "项目名称", 14, False),
        TemplateColumn("indicator", "指标任务", 28, False),
        TemplateColumn("target", "目标值", 10, False),
        TemplateColumn("measure", "计量\n单位", 7, False),
        TemplateColumn("previous", f"上期累计\n（{before}）", 10, False),
        TemplateColumn("completed", f"已完成\n（{now}累计）", 14, True),
        TemplateColumn("rate", "完成率\n（可不填）", 10, True),
        TemplateColumn("rank", "排名\n（可不填）", 10, True),
        TemplateColumn("stage", "进度阶段\n（节点类填写）", 14, True),
        TemplateColumn("narrative", "完成情况", 44, True),
        TemplateColumn("remarks", "备注", 14, True),
    ]


def template_name(unit: str, period: str) -> str:
    """区人社局_2023-05_填报模板.xlsx"""
    return f"{_UNSAFE_NAME.sub('_', unit).strip() or '单位'}_{period}_填报模板.xlsx"


def template_title(title: str) -> str:
    """The report's title as a fill-in form's: …完成情况汇总表 → …完成情况填报表."""
    base = title.removesuffix("汇总表").removesuffix("表")
    return f"{base}填报表"


def instructions(period: str) -> str:
    month = int(period[5:7])
    now = f"1-{month}月" if month > 1 else "1月"
    stages = "、".join(STAGES)
    return (
        "填报说明：1. 只填浅黄色单元格；灰色单元格为下发的任务内容，已锁定（工作表保护未设密码，如任务有误请联系督查室，"
        "不要自行修改）。请勿增删行列、修改表头或工作表名称。\n"
        f"2. “已完成”填写{now}的累计完成数，只填数字（如 3500），单位见“计量单位”；不要写“3500人”“约3500”。"
        "累计数不应小于“上期累计”。\n"
        "3. “完成率”“排名”可不填：汇总时按“已完成÷目标值”计算完成率；如填写，请与计算结果一致。"
        "排名请写“3/12”或“第3名”。\n"
        f"4. 节点类指标（无具体数量）请在“进度阶段”中下拉选择：{stages}。\n"
        "5. “完成情况”简要写明进展、存在问题和下步打算。填好后填写填报人和联系电话，原文件直接发回即可（文件名可不改）。"
    )


def write_template(
    tasks: pd.DataFrame,
    previous: pd.DataFrame | None,
    unit: str,
    period: str,
    path: Path,
    *,
    title: str = "重点民生实事项目完成情况汇总表",
    body_font: str = "仿宋_GB2312",
) -> Path:
    """Write one unit's template to ``path`` (atomically: a temporary file renamed into place).

    ``tasks`` is the task list (all units or this unit's rows); ``previous`` holds the previous
    period's values (code, unit, completed) for 上期累计, or is None/empty.
    """
    own = tasks[tasks["unit"] == unit].sort_values("order", kind="stable")
    if own.empty:
        raise ConfigError(f"任务清单中没有单位“{unit}”的任务。")
    prior = {}
    if previous is not None and not previous.empty:
        mine = previous[previous["unit"] == unit]
        prior = {code: value for code, value in zip(mine["code"], mine["completed"], strict=True) if pd.notna(value)}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".~{path.stem}.{os.getpid()}.tmp.xlsx")
    try:
        _write(own, prior, unit, period, temp, title, body_font)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def write_templates(
    tasks: pd.DataFrame,
    previous: pd.DataFrame | None,
    period: str,
    folder: Path,
    *,
    units: list[str] | None = None,
    title: str = "重点民生实事项目完成情况汇总表",
    body_font: str = "仿宋_GB2312",
) -> list[Path]:
    """One template per unit (all units of the task list, in its order, unless ``units`` is given)."""
    chosen = units or list(dict.fromkeys(tasks["unit"]))
    return [
        write_template(
            tasks, previous, unit, period, folder / template_name(unit, period), title=title, body_font=body_font
        )
        for unit in chosen
    ]


def previous_values(state: Path, period: str) -> pd.DataFrame:
    """The previous period's accepted values (code, unit, completed), from the history store.

    January starts a new year's cumulative count: nothing is carried over into it.
    """
    from .run import previous_values as stored_previous_values
    from .store import DB_NAME, Store

    empty = pd.DataFrame({"code": pd.Series(dtype=str), "unit": pd.Series(dtype=str),
                          "completed": pd.Series(dtype=float)})  # fmt: skip
    if not (state / DB_NAME).exists():
        return empty
    store = Store(state)
    try:
        values = stored_previous_values(store, period)
    finally:
        store.close()
    return empty if values is None else values


def templates_for_config(config: Config, units: list[str] | tuple[str, ...] = ()) -> list[Path]:
    """`consolidate templates`: read the task list and the history, write outbox/templates/*.xlsx."""
    from .intake.normalize import TaskIndex
    from .tasks import read_task_list

    tasks = read_task_list(config.paths.tasks)
    known = list(dict.fromkeys(tasks["unit"]))
    chosen = []
    if units:
        index = TaskIndex.from_tasks(tasks)
        for name in units:
            unit = name if name in known else index.match_unit(name)
            if unit is None:
                raise ConfigError(f"任务清单中没有单位“{name}”。任务清单中的单位：{'、'.join(known)}。")
            chosen.append(unit)
    previous = previous_values(config.paths.state, config.report.period)
    return write_templates(
        tasks, previous, config.report.period, config.paths.outbox / TEMPLATE_FOLDER,
        units=list(dict.fromkeys(chosen)) or None, title=config.report.title, body_font=config.report.body_font,
    )  # fmt: skip


def write_unit_template(config: Config, unit: str, folder: Path) -> Path:
    """One unit's template for the configured period, written into ``folder`` (催报 attaches it)."""
    from .tasks import read_task_list

    tasks = read_task_list(config.paths.tasks)
    previous = previous_values(config.paths.state, config.report.period)
    path = Path(folder) / template_name(unit, config.report.period)
    return write_template(tasks, previous, unit, config.report.period, path,
                          title=config.report.title, body_font=config.report.body_font)  # fmt: skip


# -- the workbook ------------------------------------------------------------------------------


class _Formats:
    def __init__(self, book, font: str):
        base = {"font_name": font, "font_size": 11, "border": 1, "valign": "vcenter", "text_wrap": True}
        locked = {**base, "bg_color": LOCKED_FILL, "locked": True}
        editable = {**base, "bg_color": INPUT_FILL, "locked": False}
        self.title = book.add_format({"font_name": font, "font_size": 18, "bold": True, "align": "center",
                                      "valign": "vcenter"})  # fmt: skip
        self.label = book.add_format({"font_name": font, "font_size": 11, "valign": "vcenter", "align": "left"})
        self.label_right = book.add_format({"font_name": font, "font_size": 11, "valign": "vcenter", "align": "right"})
        self.line_input = book.add_format({"font_name": font, "font_size": 11, "valign": "vcenter", "locked": False,
                                           "bottom": 1, "bg_color": INPUT_FILL, "num_format": "@"})  # fmt: skip
        self.note = book.add_format({"font_name": font, "font_size": 10, "valign": "top", "text_wrap": True,
                                     "border": 1, "bg_color": "#FAFAFA"})  # fmt: skip
        self.header = book.add_format({**base, "bold": True, "align": "center", "bg_color": "#D9D9D9"})
        self.header_input = book.add_format({**base, "bold": True, "align": "center", "bg_color": "#FFE699"})
        self.text = book.add_format({**locked, "align": "left"})
        self.center = book.add_format({**locked, "align": "center"})
        self.integer = book.add_format({**locked, "align": "right", "num_format": INTEGER_FORMAT})
        self.decimal = book.add_format({**locked, "align": "right", "num_format": DECIMAL_FORMAT})
        # A cell the unit does not fill (进度阶段 of a 数量 row): grey, finely dotted.
        self.blocked = book.add_format({**locked, "pattern": 17, "fg_color": "#BFBFBF"})
        self.input_text = book.add_format({**editable, "align": "left", "num_format": "@"})
        self.input_center = book.add_format({**editable, "align": "center", "num_format": "@"})
        self.input_number = book.add_format({**editable, "align": "right"})
        self.input_percent = book.add_format({**editable, "align": "right", "num_format": "0.00%"})

    def number(self, value):
        return self.integer if float(value).is_integer() else self.decimal


def _write(own: pd.DataFrame, prior: dict, unit: str, period: str, path: Path, title: str, font: str) -> None:
    book = xlsxwriter.Workbook(
        str(path), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
    )
    book.set_properties({"title": f"{unit} {period} 填报模板", "author": "consolidate", "comments": f"unit={unit}"})
    formats = _Formats(book, font)
    sheet = book.add_worksheet(TEMPLATE_SHEET)
    columns = template_columns(period)
    col = {column.key: i for i, column in enumerate(columns)}
    last = len(columns) - 1
    for i, column in enumerate(columns):
        sheet.set_column(i, i, column.width)
    month = int(period[5:7])
    label = f"{period[:4]}年1-{month}月" if month > 1 else f"{period[:4]}年1月"

    sheet.merge_range(0, 0, 0, last, template_title(title), formats.title)
    sheet.set_row(0, 34)
    sheet.merge_range(1, 0, 1, col["indicator"], f"填报单位：{unit}", formats.label)
    sheet.merge_range(1, col["target"], 1, col["previous"], f"报送期间：{label}（累计）", formats.label)
    sheet.write_string(1, col["completed"], "填报人：", formats.label_right)
    sheet.merge_range(1, col["rate"], 1, col["rank"], "", formats.line_input)
    sheet.write_string(1, col["stage"], "联系电话：", formats.label_right)
    sheet.write_blank(1, col["narrative"], None, formats.line_input)
    sheet.set_row(1, 24)
    sheet.merge_range(2, 0, 2, last, instructions(period), formats.note)
    sheet.set_row(2, 88)

    header = 3
    for i, column in enumerate(columns):
        sheet.write_string(header, i, column.header, formats.header_input if column.editable else formats.header)
    sheet.set_row(header, 48)

    first = header + 1
    records = own.to_dict("records")
    heights = []
    for offset, task in enumerate(records):
        row = first + offset
        milestone = task["kind"] == "节点"
        sheet.write_string(row, col["code"], task["code"], formats.center)
        _locked_number(sheet, row, col["target"], task["target"], formats)
        _locked_text(sheet, row, col["measure"], task["measure"], formats.center)
        _locked_number(sheet, row, col["previous"], prior.get(task["code"]), formats)
        sheet.write_blank(row, col["completed"], None, formats.input_number)
        sheet.write_blank(row, col["rate"], None, formats.input_percent)
        sheet.write_blank(row, col["rank"], None, formats.input_center)
        sheet.write_blank(row, col["stage"], None, formats.input_center if milestone else formats.blocked)
        sheet.write_blank(row, col["narrative"], None, formats.input_text)
        sheet.write_blank(row, col["remarks"], None, formats.input_text)
        # Room for the indicator, and for three lines of narrative to be typed.
        heights.append(max(_height(text_lines(task["indicator"], columns[col["indicator"]].width)), _height(3)))
        if milestone:
            sheet.data_validation(row, col["stage"], row, col["stage"], {
                "validate": "list", "source": list(STAGES),
                "input_title": "进度阶段",
                "input_message": "节点类指标：请从下拉列表中选择所处阶段，并在“完成情况”中写明进展。",
                "error_title": "请从列表中选择",
                "error_message": f"进度阶段只能是：{'、'.join(STAGES)}。",
            })  # fmt: skip
    _write_projects(sheet, records, first, col, columns, heights, formats.text)
    for offset, height in enumerate(heights):
        sheet.set_row(first + offset, height)
    end = first + len(records) - 1
    now = f"1-{month}月" if month > 1 else "1月"
    sheet.data_validation(first, col["completed"], end, col["completed"], {
        "validate": "decimal", "criteria": ">=", "value": 0,
        "input_title": "已完成（累计数）",
        "input_message": f"填写{now}累计完成数，只填数字，如 3500；单位见“计量单位”列。累计数不应小于“上期累计”。",
        "error_title": "请填写数字",
        "error_message": "“已完成”只能填写不小于 0 的数字（如 3500），不要填写文字或单位。进展情况请写在“完成情况”中。",
    })  # fmt: skip
    sheet.data_validation(first, col["rate"], end, col["rate"], {
        "validate": "decimal", "criteria": ">=", "value": 0,
        "input_title": "完成率（可不填）",
        "input_message": "可不填，汇总时按 已完成÷目标值 计算。如填写，请填百分数，如 43%。",
        "error_title": "请填写百分数",
        "error_message": "完成率请填写百分数，如 43%；也可以不填。",
    })  # fmt: skip
    sheet.data_validation(first, col["rank"], end, col["rank"], {
        "validate": "any", "input_title": "排名（可不填）",
        "input_message": "如上级通报了排名，请写“3/12”（第3名，共12个）或“第3名”；没有可不填。",
    })  # fmt: skip
    sheet.data_validation(first, col["narrative"], end, col["narrative"], {
        "validate": "any", "input_title": "完成情况",
        "input_message": "简要写明进展、存在问题和下步打算。数量类指标请同时在“已完成”中填写数字。",
    })  # fmt: skip
    sheet.protect("", {"format_columns": True, "format_rows": True,
                       "select_locked_cells": True, "select_unlocked_cells": True})  # fmt: skip
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.fit_to_pages(1, 0)
    sheet.repeat_rows(header)
    sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.5)
    sheet.set_footer("&C— &P —")
    sheet.activate()
    sheet.set_selection(first, col["completed"], first, col["completed"])

    meta = book.add_worksheet(META_SHEET)
    for row, (key, value) in enumerate((("unit", unit), ("period", period), ("version", str(TEMPLATE_VERSION)))):
        meta.write_string(row, 0, key)
        meta.write_string(row, 1, value)
    meta.very_hidden()
    with literal_shared_strings(xlsxwriter.packager):  # a task text reading "<r>…</r>" stays text
        book.close()


def _write_projects(sheet, records: list[dict], first: int, col: dict, columns, heights: list, style) -> None:
    """项目名称 once over the consecutive rows of one project (the reader fills merges down);
    a one-indicator project named as its indicator gets one cell over both columns."""
    start = 0
    project_width = columns[col["project"]].width
    for offset in range(1, len(records) + 1):
        if offset < len(records) and records[offset]["project"] == records[start]["project"]:
            continue
        end = offset - 1
        text = records[start]["project"]
        together = end == start and text_key(text) == text_key(records[start]["indicator"])
        if together:
            sheet.merge_range(
                first + start, col["project"], first + start, col["indicator"], records[start]["indicator"], style
            )
        else:
            for row in range(start, end + 1):
                sheet.write_string(first + row, col["indicator"], records[row]["indicator"], style)
            if end > start:
                sheet.merge_range(first + start, col["project"], first + end, col["project"], text, style)
            else:
                sheet.write_string(first + start, col["project"], text, style)
            needed = _height(text_lines(text, project_width))
            have = sum(heights[start : end + 1])
            if needed > have:
                heights[end] += needed - have
        start = offset


def _height(lines: int) -> float:
    return round(lines * 11 * 1.3 + 6, 1)


def _locked_number(sheet, row: int, col: int, value, formats: _Formats) -> None:
    if value is None or pd.isna(value):
        sheet.write_blank(row, col, None, formats.center)
    else:
        sheet.write_number(row, col, float(value), formats.number(value))


def _locked_text(sheet, row: int, col: int, value, style) -> None:
    if value:
        sheet.write_string(row, col, str(value), style)
    else:
        sheet.write_blank(row, col, None, style)
