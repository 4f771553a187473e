"""Write the consolidated workbook with xlsxwriter: 汇总表, 明细, 问题清单, 未报送, 滞后事项, 统计.

Every text cell is written with ``write_string``: a narrative that starts with "=" stays text
(output is data, never code), and so does text that reads like rich-text markup ("<r>…</r>",
see bulk.py). The file is written to a temporary name beside the target and renamed into
place by the caller, so a reader never sees half a workbook.

汇总表 is the page the leaders print: the reference table's layout (title, period line, 序号 /
项目名称及指标任务 / 牵头领导 / 牵头责任单位 / 完成情况 / 备注) plus the computed columns, grouped
by level, the project cells merged over their indicator rows, statuses as a traffic light with a
coloured legend, A4 landscape fitted to the page width, the header row repeated on every page.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import math
import operator
import re
import unicodedata
from collections import namedtuple
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import xlsxwriter
import xlsxwriter.packager
import xlsxwriter.workbook

from ..errors import ERROR, Issue
from ..offload import Offload
from ..text import text_key
from .bulk import BulkSheet, add_strings, fix_style_indices, literal_shared_strings, rows_xml
from .parallel import Segment, deflate_apart, parallel_deflate
from .styles import LEGEND_STATUSES, STATUS_COLOURS, Styles

LEVEL_ORDER = ("省级", "市级", "区级", "县级")
LEVEL_NUMERALS = "一二三四五六七八九十"
A4 = 9
LINE_POINTS = 1.3  # row height per line of wrapped text, as a multiple of the font size
MAX_ROW_HEIGHT = 409  # Excel's limit, in points
# A4 landscape less the margins of print_setup, in points; breaks leave a little to spare.
PRINTABLE_WIDTH = 842 - 72 * 0.8
PRINTABLE_HEIGHT = 595 - 72 * 1.1
PAGE_SAFETY = 0.97
# 明细 rows from which a second process renders them: ~15 ms of work per 1,000 rows, against a
# fork of a few milliseconds.
OFFLOAD_ROWS = 2000
DETAIL_CHUNK_ROWS = 5000  # 明细 rows rendered and sent at a time (the child's memory stays small)


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

    @property
    def period_line(self) -> str:
        """The reference table's second line: （1月至5月份完成情况）."""
        return f"（1月至{self.month}月份完成情况）" if self.month > 1 else "（1月份完成情况）"

    @property
    def units(self) -> list[str]:
        """Reporting units in task-list order."""
        return list(dict.fromkeys(self.tasks["unit"].tolist())) if "unit" in self.tasks else []


def content_digest(data: WorkbookInput) -> str:
    """A fingerprint of everything the workbook shows, and of the code that draws it.

    Equal digests mean an identical workbook, so a night with nothing new need not rewrite it
    (at province scale the writing is half the run).
    """
    digest = hashlib.sha256()
    for frame in (data.master, data.tasks.astype(str)):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        digest.update(repr(list(frame.columns)).encode())
    # Each issue as the tuple of its fields (every field, by the dataclass's own list): a
    # dataclasses.asdict per issue costs five times as much.
    issue_fields = operator.attrgetter(*(item.name for item in fields(Issue)))
    digest.update(repr([issue_fields(issue) for issue in data.issues]).encode())
    digest.update(repr((data.title, data.period, data.missing_units, data.title_font, data.body_font,
                        data.footnote, data.severe_points)).encode())  # fmt: skip
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def workbook_name(title: str, period: str) -> str:
    """outbox/<title>（1-M月）.xlsx, the title made fit for a file name on Windows and Linux.

    A character a file name cannot hold (/ \\ : * ? " < > |) becomes its full-width twin, as a
    Chinese title would write it anyway ("民生实事/进展" → "民生实事／进展"); control characters go;
    leading dots go (a hidden file); and a title too long for one file name (255 bytes) is cut
    short. The sheet keeps the title as it is.
    """
    month = int(period[5:7])
    label = f"1-{month}月" if month > 1 else "1月"
    name = _CONTROL_CHARACTERS.sub("", title).translate(_FILE_NAME_TWINS).strip().lstrip(".")
    room = _MAX_NAME_BYTES - len(f"（{label}）.xlsx".encode())
    while len(name.encode()) > room:
        name = name[:-1]
    return f"{name}（{label}）.xlsx"


_FILE_NAME_TWINS = str.maketrans({char: chr(ord(char) + 0xFEE0) for char in '/\\:*?"<>|'})
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")
_MAX_NAME_BYTES = 255  # ext4's and NTFS's limit (NTFS counts UTF-16 units: fewer than bytes here)


def write_workbook(data: WorkbookInput, path: Path) -> None:
    """Write every sheet to ``path`` (the caller renames it into place)."""
    with _without_cycle_collection():
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
        # A province's 明细 rows are rendered and deflated by a second process while this one
        # writes the other sheets, and taken last: its formats and texts get their indices first
        # (see bulk.py), and the rows go into the sheet added in its place just before storing.
        fix_style_indices(book)
        add_strings(book.str_table, detail_texts(data.master))
        render = functools.partial(detail_xml, data.master, styles, book.str_table)
        large = len(data.master) >= OFFLOAD_ROWS
        child = Offload(lambda: deflate_apart(render()), "consolidate-writer") if large else None
        with child or contextlib.nullcontext():
            write_summary(book, styles, data)
            detail_sheet = write_detail(book, styles, data)
            write_issues(book, styles, data)
            write_missing(book, styles, data)
            write_lagging(book, styles, data)
            write_statistics(book, styles, data)
            deflated = child.answer() if child else None
            segments = [Segment.read(deflated)] if deflated is not None else []
            # The child's rows go in deflated, at their placeholder (parallel.py); without a
            # child (none forked, or it failed) they are rendered here, as plain XML.
            rows = segments[0].placeholder if segments else "".join(render())
            detail_sheet.write_rendered(1, len(data.master), len(DETAIL_COLUMNS), rows)
            with parallel_deflate(xlsxwriter.workbook, segments), literal_shared_strings(xlsxwriter.packager):
                book.close()


@contextlib.contextmanager
def _without_cycle_collection():
    """Pause Python's cycle collector while the sheets are built.

    A province-scale workbook holds millions of cell tuples and row lists, none in a reference
    cycle; the collector would scan them again and again as they pile up. Measured at 3,000
    returns (CPU time, one process, alternating): 5.0 s with it, 3.9 s without. Reference
    counting still frees everything; one collection afterwards catches any cycle made meanwhile.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()


def print_setup(sheet, *, repeat_row: int | None = None, landscape: bool = True) -> None:
    """A4, fitted to the page width (as many pages down as needed), page number in the footer."""
    if landscape:
        sheet.set_landscape()
    sheet.set_paper(A4)
    sheet.fit_to_pages(1, 0)
    sheet.set_margins(left=0.4, right=0.4, top=0.5, bottom=0.6)
    sheet.center_horizontally()
    sheet.set_footer("&C— &P —")
    if repeat_row is not None:
        sheet.repeat_rows(repeat_row)


# -- 汇总表 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str  # master column, or a name handled by the writer
    header: str
    width: float
    kind: str  # text, center, number, percent, status, rank


def summary_columns(master: pd.DataFrame, month: int) -> list[Column]:
    """The 汇总表 columns; 填报单位, 序时进度 and 排名 only when they say something."""
    multi_unit = bool(not master.empty and master.groupby("code")["unit"].nunique().max() > 1)
    planned = bool(not master.empty and (master["schedule"] - month / 12).abs().max() > 1e-9)
    ranked = bool(not master.empty and master["rank"].notna().any())
    # Long remarks get a wider 备注 (taken from 完成情况), so no row grows a page tall.
    longest = max((len(text) for text in master["remarks"].tolist() if isinstance(text, str)), default=0)
    remarks_extra = 8 if longest > 40 else 0
    columns = [
        Column("seq", "序号", 5, "center"),
        Column("project", "项目名称及指标任务", 14, "text"),
        Column("indicator", "", 26, "text"),
        Column("leader", "牵头领导", 8, "center"),
        Column("lead_units", "牵头责任单位", 12, "center"),
        *([Column("unit", "填报单位", 11, "center")] if multi_unit else []),
        Column("measure", "计量\n单位", 7, "center"),
        Column("target", "目标值", 10, "number"),
        Column("completed", "已完成", 10, "number"),
        Column("rate", "完成率", 9, "percent"),
        *([Column("schedule", "序时进度", 9, "percent")] if planned else []),
        Column("status", "状态", 9, "status"),
        *([Column("rank", "排名", 8, "rank")] if ranked else []),
        Column("narrative", "完成情况", 44 - remarks_extra, "text"),
        Column("remarks", "备注", 12 + remarks_extra, "text"),
    ]
    return columns


def write_summary(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("汇总表", worksheet_class=BulkSheet)
    master = data.master
    columns = summary_columns(master, data.month)
    index = {column.key: i for i, column in enumerate(columns)}
    widths = [column.width for column in columns]
    last = len(columns) - 1
    for col, column in enumerate(columns):
        sheet.set_column(col, col, column.width)
    sheet.merge_range(0, 0, 0, last, data.title, styles.title)
    sheet.set_row(0, 40)
    sheet.merge_range(1, 0, 1, last, data.period_line, styles.subtitle)
    sheet.set_row(1, 24)
    legend_height = _write_legend(sheet, styles, data, index, widths)
    header_row = 3
    for col, column in enumerate(columns):
        if column.key not in ("project", "indicator"):
            sheet.write_string(header_row, col, column.header, styles.header)
    sheet.merge_range(header_row, index["project"], header_row, index["indicator"], "项目名称及指标任务", styles.header)
    sheet.set_row(header_row, 32)
    first_body = header_row + 1
    heights = {0: 40.0, 1: 24.0, 2: legend_height, header_row: 32.0}
    body: list[list] = []  # the rows below the header, written as one block
    body_heights: list[float] = []
    blocks = []  # (first row, last row) that should not be split over two printed pages
    levels = _levels(master)
    for number, level in enumerate(levels):
        group = master[master["level"] == level]
        band = None
        if len(levels) > 1 and level:
            projects = group["seq"].nunique()
            title = f"{LEVEL_NUMERALS[number % 10]}、{level}重点民生实事（{projects}项）"
            band = first_body + len(body)
            body.append([(title, styles.band)] + [(None, styles.band)] * last)
            body_heights.append(22.0)
            sheet.merge_block(band, 0, band, last)
        for _, project in group.groupby(["seq", "project"], sort=False):
            start = first_body + len(body)
            rows, row_heights, merges = _project_rows(styles, project, columns, index, widths)
            body.extend(rows)
            body_heights.extend(row_heights)
            for first_row, first_col, last_row, last_col in merges:
                sheet.merge_block(start + first_row, first_col, start + last_row, last_col)
            blocks.append((band if band is not None else start, start + len(rows) - 1))
            band = None
    row = sheet.write_block(first_body, body, body_heights)
    heights.update(zip(range(first_body, row), body_heights, strict=True))
    footnote = data.footnote or level_footnote(master)
    if footnote:
        sheet.merge_range(row, 0, row, last, footnote, styles.note)
        heights[row] = _height(text_lines(footnote, sum(widths), 10), 10)
        sheet.set_row(row, heights[row])
        if blocks:
            blocks[-1] = (blocks[-1][0], row)
        row += 1
    breaks = page_breaks(heights, blocks, header_row, widths)
    if breaks:
        sheet.set_h_pagebreaks(breaks)
    sheet.freeze_panes(header_row + 1, 0)
    print_setup(sheet, repeat_row=header_row)
    sheet.print_area(0, 0, max(row - 1, header_row), last)
    sheet.activate()


def _write_legend(sheet, styles: Styles, data: WorkbookInput, index: dict, widths: list[float]) -> float:
    """Row 3: 序时进度, then the five status colours as coloured cells, then what they mean."""
    row, last = 2, len(widths) - 1
    start = index["measure"]
    schedule = data.month / 12
    sheet.merge_range(
        row, 0, row, start - 1,
        f"序时进度：{data.month}/12 = {schedule:.2%}　　状态图例：", styles.legend_key,
    )  # fmt: skip
    for offset, status in enumerate(LEGEND_STATUSES):
        sheet.write_string(row, start + offset, status, styles.legend(status))
    explain_from = start + len(LEGEND_STATUSES)
    explanation = (
        f"严重滞后：低于序时进度{data.severe_points:g}个百分点以上；未报送：未报送或未填完成数；"
        "节点类指标显示所处阶段，未开工按滞后着色。"
    )
    if "schedule" in index:
        explanation += "任务清单列明计划进度的指标，序时进度按计划（见“序时进度”列）。"
    if "rank" in index:
        explanation += "排名：名次/参与排名的单位数。"
    explain_width = sum(widths[explain_from:]) if explain_from <= last else 0
    if explain_from < last:
        sheet.merge_range(row, explain_from, row, last, explanation, styles.legend_label)
    elif explain_from == last:
        sheet.write_string(row, last, explanation, styles.legend_label)
    lines = text_lines(explanation, explain_width, 10) if explain_width else 1
    height = max(24.0, _height(lines, 10))
    sheet.set_row(row, height)
    return height


def _levels(master: pd.DataFrame) -> list[str]:
    present = set(master["level"].tolist())
    levels = [level for level in LEVEL_ORDER if level in present]
    levels += sorted(present - set(LEVEL_ORDER) - {""})
    if "" in present:
        levels.append("")
    return levels


def _project_rows(styles: Styles, project: pd.DataFrame, columns, index, widths):
    """One project as block rows: a row per (indicator, unit); shared cells merged over their rows.

    Built a column at a time. Returns the rows, their heights and the merges (first row, first
    col, last row, last col), rows counted from the project's first row.
    """
    first_seen = {code: i for i, code in enumerate(dict.fromkeys(project["code"].tolist()))}
    project = project.assign(_code_order=project["code"].map(first_seen)).sort_values(
        ["_code_order", "order"], kind="stable"
    )
    wanted = {column.key for column in columns} | {"code", "project", "indicator", "rank_count"}
    values = {key: project[key].tolist() for key in wanted if key in project}
    codes = values["code"]
    count = len(codes)
    together = _project_is_indicator(values["project"][0], values["indicator"], codes)
    code_runs = _runs(codes)
    # Rows whose indicator cell is merged with a neighbour's (written below, once per run).
    in_merged_run = {offset for start, end in code_runs if end > start for offset in range(start, end + 1)}
    shared = {"seq", "project", "leader", "lead_units"}  # written below, merged over their rows
    cell_columns, lines = [], [1] * count
    for col, column in enumerate(columns):
        if column.key in shared or (column.key == "indicator" and together):
            cell_columns.append([None] * count)
            continue
        cells = _summary_cells(styles, column, values)
        if column.key == "indicator":
            cells = [None if offset in in_merged_run else cell for offset, cell in enumerate(cells)]
        if column.kind in ("text", "center"):
            lines = [
                max(n, text_lines(cell[0], widths[col]) if cell else 1) for n, cell in zip(lines, cells, strict=True)
            ]
        cell_columns.append(cells)
    rows = [list(row) for row in zip(*cell_columns, strict=True)]
    heights = [_height(n) for n in lines]
    spans = []  # (first row offset, last row offset, first col, last col, text, style)
    spans.append((0, count - 1, index["seq"], index["seq"], str(values["seq"][0]), styles.center))
    if together:
        spans.append((0, count - 1, index["project"], index["indicator"], values["indicator"][0], styles.text))
    else:
        spans.append((0, count - 1, index["project"], index["project"], values["project"][0], styles.text))
        for start, end in code_runs:
            if end > start:
                spans.append(
                    (start, end, index["indicator"], index["indicator"], values["indicator"][start], styles.text)
                )
    for key in ("leader", "lead_units"):
        for start, end in _runs(values[key]):
            spans.append((start, end, index[key], index[key], values[key][start], styles.center))
    merges = []
    for start, end, col0, col1, text, style in spans:
        for offset in range(start, end + 1):
            for col in range(col0, col1 + 1):
                rows[offset][col] = (None, style)  # the merged area's borders
        rows[start][col0] = (_plain_text(text), style)
        if start != end or col0 != col1:
            merges.append((start, col0, end, col1))
        width = sum(widths[col0 : col1 + 1])
        needed = _height(text_lines(text, width))
        have = sum(heights[start : end + 1])
        if needed > have:
            heights[end] += needed - have
    heights = [min(height, MAX_ROW_HEIGHT) for height in heights]
    return rows, heights, merges


def _summary_cells(styles: Styles, column: Column, values: dict[str, list]) -> list[tuple]:
    """One 汇总表 column's cells, (value, format) for every row of a project."""
    column_values = values[column.key]
    if column.kind == "number":
        return [(None, styles.integer) if _missing(v) else (float(v), styles.value(v)) for v in column_values]
    if column.kind == "percent":
        return [(None if _missing(v) else float(v), styles.percent) for v in column_values]
    if column.kind == "status":
        return [(_plain_text(v), styles.status(v)) for v in column_values]
    if column.kind == "rank":
        return [
            ("" if _missing(v) else f"{int(v)}/{int(n)}", styles.center)
            for v, n in zip(column_values, values["rank_count"], strict=True)
        ]
    style = styles.center if column.kind == "center" else styles.text
    return [(_plain_text(v), style) for v in column_values]


def _plain_text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def page_breaks(heights: dict[int, float], blocks: list[tuple[int, int]], header_row: int, widths) -> list[int]:
    """Rows to break before, so that no project is split over two printed pages.

    Estimates the fit-to-width scale from the column widths (Excel's 7-pixel digit) and the
    printable A4 landscape area; a project taller than a page is left to split where it must.
    """
    sheet_pixels = sum(int(width * 7 + 0.5) + 5 for width in widths)
    scale = min(1.0, math.floor(100 * PRINTABLE_WIDTH * 96 / 72 / sheet_pixels) / 100)
    capacity = PRINTABLE_HEIGHT / scale * PAGE_SAFETY
    repeated = heights.get(header_row, 0.0)
    used = sum(heights.get(r, 15.0) for r in range(header_row + 1))
    breaks = []
    for first, last in blocks:
        size = sum(heights.get(r, 15.0) for r in range(first, last + 1))
        if used + size > capacity and used > repeated + 1:
            breaks.append(first)
            used = repeated
        used += size
    return breaks


def _project_is_indicator(project: str, indicators: list[str], codes: list[str]) -> bool:
    """A one-indicator project whose name is its indicator: one cell over both columns, as in the reference."""
    if len(set(codes)) != 1:
        return False
    project, indicator = text_key(project), text_key(indicators[0])
    return bool(project) and (project == indicator or project in indicator)


def _runs(values: list) -> list[tuple[int, int]]:
    """Offsets of consecutive equal values."""
    runs, start = [], 0
    for offset in range(1, len(values) + 1):
        if offset == len(values) or values[offset] != values[start]:
            runs.append((start, offset - 1))
            start = offset
    return runs


def text_lines(value, width: float, font_size: float = 11) -> int:
    """How many lines ``value`` wraps to in a column ``width`` characters wide.

    Excel's width unit is the default font's digit (7 px); a CJK character (East Asian width W
    or F) at 11 pt is about 15 px, Latin letters and digits about half that.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 1
    text = str(value)
    if len(text) * font_size * 96 / 72 <= max(width * 7 - 6, 10) and "\n" not in text:
        return 1  # fits even if every character is wide
    return _wrapped_lines(text, width, font_size)


@functools.lru_cache(maxsize=1 << 16)  # unit and indicator names repeat on every row
def _wrapped_lines(text: str, width: float, font_size: float) -> int:
    usable = max(width * 7 - 6, 10)
    wide = font_size * 96 / 72
    lines = 0
    for paragraph in text.split("\n"):
        wide_count = len(_wide_characters().findall(paragraph))
        pixels = wide * wide_count + wide * 0.55 * (len(paragraph) - wide_count)
        lines += max(1, math.ceil(pixels / usable - 1e-9))
    return lines


@functools.cache
def _wide_characters() -> re.Pattern:
    """A character class of every East Asian wide or fullwidth code point up to plane 3 (the
    CJK planes), taken from ``unicodedata`` once (40 ms): a regex counts them at C speed."""
    ranges, start = [], None
    for code in range(0x40000):
        is_wide = unicodedata.east_asian_width(chr(code)) in "WF"
        if is_wide and start is None:
            start = code
        elif not is_wide and start is not None:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
            start = None
    if start is not None:
        ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(0x3FFFF))}")
    return re.compile(f"[{''.join(ranges)}]")


def _height(lines: int, font_size: float = 11) -> float:
    return round(lines * font_size * LINE_POINTS + 6, 1)


def level_footnote(master: pd.DataFrame) -> str:
    """注：1-9 项为省级重点民生实事，10-15 项为市级重点民生实事，16-29 项为区级重点民生实事"""
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


def write_detail(book, styles: Styles, data: WorkbookInput) -> BulkSheet:
    """明细: a header, filter and print setup. Its rows, one plain row per master row, are
    rendered by ``detail_xml`` (usually in another process) and handed to the sheet returned
    (``write_rendered`` from row 2) once they are ready."""
    sheet = book.add_worksheet("明细", worksheet_class=BulkSheet)
    for col, (name, _, width, _) in enumerate(DETAIL_COLUMNS):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(data.master), 1), len(DETAIL_COLUMNS) - 1)
    print_setup(sheet, repeat_row=0)
    return sheet


def detail_xml(master: pd.DataFrame, styles: Styles, strings) -> Iterator[str]:
    """明细's rows from row 2 down, as XML, a few thousand rows at a time; their texts are in
    ``strings`` already (``detail_texts``), so that this may run in another process."""
    for start in range(0, len(master), DETAIL_CHUNK_ROWS):
        chunk = master.iloc[start : start + DETAIL_CHUNK_ROWS]
        yield rows_xml(1 + start, detail_rows(chunk, styles), strings=strings, frozen=True)


def detail_texts(master: pd.DataFrame) -> list:
    """Every text cell of 明细 (``detail_rows`` writes a text column's values with ``str``)."""
    texts = []
    for _, key, _, kind in DETAIL_COLUMNS:
        if kind in ("text", "status"):
            texts.extend(master[key].tolist())
    return texts


def detail_rows(master: pd.DataFrame, styles: Styles) -> list[tuple]:
    """明细 as block rows, built a column at a time: plain cells, numbers formatted by kind."""
    columns = []
    for _, key, _, kind in DETAIL_COLUMNS:
        values = master[key].tolist()
        if kind == "text":
            cells = [(str(value), None) if value else None for value in values]
        elif kind == "status":
            cells = [(value, styles.status_plain(value)) for value in values]
        elif kind == "int":
            cells = [None if _missing(value) else (int(value), None) for value in values]
        elif kind == "percent":
            cells = [None if _missing(value) else (float(value), styles.plain_percent) for value in values]
        else:
            cells = [None if _missing(value) else (float(value), styles.plain_value(value)) for value in values]
        columns.append(cells)
    return list(zip(*columns, strict=True))


def _missing(value) -> bool:
    """None, NaN or pd.NA (a nullable column's gap); pd.isna per cell costs 10× more."""
    return value is None or value is pd.NA or value != value


# -- 问题清单 ----------------------------------------------------------------------------------

ACTIONS = {
    ERROR: "未采用。请联系该单位按“问题”栏更正后重新报送；更正后的文件放入 inbox/ 即自动取代旧文件。",
    "warning": "已采用。请核对；如确有错误，请该单位更正后重新报送。",
    "superseded": "无需处理：已按该单位较新的文件汇总。",
}


def sorted_issues(issues: list[Issue], units: list[str] | None = None) -> list[Issue]:
    """Grouped by unit (task-list order, files of unknown units last), errors before warnings,
    then by file, in reading order within a file."""
    order = list(dict.fromkeys([*(units or []), *(issue.unit for issue in issues if issue.unit)]))
    position = {unit: i for i, unit in enumerate(order)}
    return sorted(issues, key=lambda i: (position.get(i.unit, len(order)), i.level != ERROR, i.file))


def issue_action(issue: Issue) -> str:
    """What the coordinator does about an issue (the message says what the unit must fix)."""
    if issue.level == ERROR:
        return ACTIONS[ERROR]
    return ACTIONS.get(issue.code, ACTIONS["warning"])


def write_issues(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("问题清单", worksheet_class=BulkSheet)
    headers = [("文件", 26), ("单位", 14), ("位置", 13), ("级别", 6), ("问题", 70), ("处理", 30)]
    for col, (name, width) in enumerate(headers):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    rows, heights = [], []
    shade, previous_unit = False, None
    for issue in sorted_issues(data.issues, data.units):
        if issue.unit != previous_unit:
            shade, previous_unit = not shade, issue.unit
        text = styles.text_alt if shade else styles.text
        action = issue_action(issue)
        level_style = styles.error if issue.level == ERROR else styles.warning
        rows.append([(issue.file, text), (issue.unit, text), (issue.location, text), (issue.level, level_style),
                     (issue.message, text), (action, text)])  # fmt: skip
        heights.append(_height(max(text_lines(issue.message, 70), text_lines(issue.file, 26), text_lines(action, 30))))
    sheet.write_block(1, rows, heights)
    if not data.issues:
        sheet.write_string(1, 0, "本期未发现问题。", styles.text)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(len(data.issues), 1), len(headers) - 1)
    print_setup(sheet, repeat_row=0)


# -- 未报送 ------------------------------------------------------------------------------------


def write_missing(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("未报送")
    headers = [("序号", 6), ("单位", 18), ("指标数", 8), ("涉及指标", 60), ("牵头领导", 14)]
    for col, (name, width) in enumerate(headers):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    tasks = data.tasks
    for row, unit in enumerate(data.missing_units, start=1):
        own = tasks[tasks["unit"] == unit]
        listing = "\n".join(f"{t.code}　{t.indicator}" for t in own.itertuples(index=False))
        sheet.write_number(row, 0, row, styles.center)
        sheet.write_string(row, 1, unit, styles.text)
        sheet.write_number(row, 2, len(own), styles.center)
        _text(sheet, row, 3, listing, styles.text)
        leaders = "、".join(dict.fromkeys(x for x in own["leader"] if x))
        _text(sheet, row, 4, leaders, styles.center)
        sheet.set_row(row, _height(max(text_lines(listing, 60), 1)))
    if not data.missing_units:
        sheet.write_string(1, 1, "各单位均已报送。", styles.text)
    sheet.freeze_panes(1, 0)
    print_setup(sheet, repeat_row=0)


# -- 滞后事项 ----------------------------------------------------------------------------------


def write_lagging(book, styles: Styles, data: WorkbookInput) -> None:
    sheet = book.add_worksheet("滞后事项", worksheet_class=BulkSheet)
    headers = [("序号", 5), ("指标编号", 8), ("指标任务", 30), ("填报单位", 16), ("牵头领导", 9), ("目标值", 10),
               ("已完成", 10), ("完成率", 9), ("序时进度", 9), ("落后序时进度", 12), ("状态", 9),
               ("完成情况", 50)]  # fmt: skip
    for col, (name, width) in enumerate(headers):
        sheet.write_string(0, col, name, styles.header)
        sheet.set_column(col, col, width)
    sheet.set_row(0, 30)
    lagging = lagging_items(data.master)
    rows, heights = [], []
    items = (Item(*values) for values in zip(*(lagging[key].tolist() for key in Item._fields), strict=True))
    for number, item in enumerate(items, start=1):
        rows.append([
            (number, styles.center),
            (_plain_text(item.code), styles.center),
            (_plain_text(item.indicator), styles.text),
            (_plain_text(item.unit), styles.center),
            (_plain_text(item.leader), styles.center),
            (None, styles.integer) if _missing(item.target) else (float(item.target), styles.value(item.target)),
            (None, styles.integer) if _missing(item.completed) else (float(item.completed), styles.value(item.completed)),
            (None if _missing(item.rate) else float(item.rate), styles.percent),
            (None if _missing(item.schedule) else float(item.schedule), styles.percent),
            (None if _missing(item.gap) else -item.gap * 100, styles.points),
            (_plain_text(item.status), styles.status(item.status)),
            (_plain_text(item.narrative), styles.text),
        ])  # fmt: skip
        heights.append(_height(max(text_lines(item.narrative, 50), text_lines(item.indicator, 30))))
    sheet.write_block(1, rows, heights)
    if lagging.empty:
        sheet.write_string(1, 2, "本期没有滞后于序时进度的事项。", styles.text)
    sheet.freeze_panes(1, 0)
    print_setup(sheet, repeat_row=0)


Item = namedtuple(
    "Item", "code indicator unit leader target completed rate schedule gap status narrative"
)  # a 滞后事项 row


def lagging_items(master: pd.DataFrame) -> pd.DataFrame:
    """The rows behind schedule, worst first (largest gap to 序时进度), then in task-list order."""
    lagging = master[master["status"].isin(["严重滞后", "滞后"])]
    return lagging.sort_values(["gap", "order"], kind="stable")


# -- 统计 --------------------------------------------------------------------------------------


def write_statistics(book, styles: Styles, data: WorkbookInput) -> None:
    from .statistics import write_statistics_sheet

    write_statistics_sheet(book, styles, data)


# -- cells -------------------------------------------------------------------------------------


def _text(sheet, row: int, col: int, value, style) -> None:
    text = _plain_text(value)
    if text:
        sheet.write_string(row, col, text, style)
    else:
        sheet.write_blank(row, col, None, style)


__all__ = ["STATUS_COLOURS", "WorkbookInput", "lagging_items", "workbook_name", "write_workbook"]
