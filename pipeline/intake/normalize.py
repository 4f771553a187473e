"""Raw cells of one returned file → normalized return rows (schemas.ReturnRows) + file issues.

This is where a sheet's own layout is turned into ours: which sheet holds the table, whose
return it is, which task each row reports on, and what number each cell means. Every value
keeps the address of the cell it came from, so that validation can point at it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from ..errors import ERROR, WARNING, Issue, cell_address, column_letter
from ..text import (
    PERCENT_ABOVE,
    clean_text,
    fold,
    parse_number,
    parse_rate,
    sanitize,
    shorten,
    split_names,
    text_key,
)
from .layout import Layout, find_layout
from .narrative import NarrativeFacts, extract_facts, parse_rank, split_for_indicators
from .read import CellError, RawBook, RawSheet

# Rows under the table that are notes, not data.
_NOTE = re.compile(r"^(填报人|填表人|联系人|联系电话|电话|审核人|审核|制表|制表人|负责人|注|备注|说明|填报日期|日期)\s*[:：]")
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_SUBTOTAL = re.compile(r"^(合计|小计|总计|共计)$")
# Columns whose merged cells mean "the same for every row below" (a project over its indicators).
_FILL_DOWN = ("seq", "project", "leader", "lead_units", "unit", "level")
# The columns whose cell addresses a record or an issue quotes.
_ADDRESSED = ("code", "indicator", "project", "completed", "target", "rate", "narrative", "remarks")
_FILENAME_NOISE = re.compile(r"(盖章|签章|\d{4}年|\d{1,2}月份?|1-\d{1,2}月|报表|报送|填报|回执|最新|修改版?|终版|定稿|v\d+)")


@dataclass
class TaskIndex:
    """The task list, indexed for matching returned rows to tasks."""

    units: list[str]
    codes: set[str]
    pairs: set[tuple[str, str]]  # (code, unit)
    by_unit: dict[str, list[dict]]  # unit → its tasks (code, indicator/project keys, target, measure)

    @classmethod
    def from_tasks(cls, tasks: pd.DataFrame) -> TaskIndex:
        by_unit: dict[str, list[dict]] = {}
        keys: dict[str, str] = {}  # a shared indicator's text recurs once per unit: fold it once
        # Whole columns as Python lists: a province's task list has ~70k rows, and pd.isna or
        # attribute access per row cost more than the rest of the loop.
        columns = [tasks[name].tolist() for name in ("unit", "code", "indicator", "project", "measure", "kind", "target")]
        blank_targets = tasks["target"].isna().tolist()
        for unit, code, indicator, project, measure, kind, target, blank in zip(*columns, blank_targets, strict=True):
            for text in (indicator, project):
                if text not in keys:
                    keys[text] = text_key(text)
            by_unit.setdefault(unit, []).append(
                {
                    "code": code,
                    "indicator": indicator,
                    "indicator_key": keys[indicator],
                    "project_key": keys[project],
                    "target": None if blank else float(target),
                    "measure": measure,
                    "kind": kind,
                }
            )
        return cls(
            units=list(by_unit),
            codes=set(tasks["code"]),
            pairs=set(zip(tasks["code"], tasks["unit"], strict=True)),
            by_unit=by_unit,
        )

    @cached_property
    def by_unit_code(self) -> dict[str, dict[str, list[dict]]]:
        """unit → code → its tasks with that code, in task-list order (a lookup, not a scan per row)."""
        lookup: dict[str, dict[str, list[dict]]] = {}
        for unit, tasks in self.by_unit.items():
            by_code = lookup[unit] = {}
            for task in tasks:
                by_code.setdefault(task["code"], []).append(task)
        return lookup

    @cached_property
    def unit_keys(self) -> list[tuple[str, str]]:
        """(unit, its text_key) in task-list order, folded once rather than once per file."""
        return [(unit, text_key(unit)) for unit in self.units]

    @cached_property
    def unit_by_key(self) -> dict[str, str]:
        by_key: dict[str, str] = {}
        for unit, key in self.unit_keys:
            by_key.setdefault(key, unit)  # the first unit with that key, as a scan would find
        return by_key

    def match_unit(self, text: str) -> str | None:
        """The task-list unit a free text names ("岳阳楼区人社局（盖章）" → "区人社局"), or None."""
        key = text_key(text)
        if not key:
            return None
        exact = self.unit_by_key.get(key)
        if exact is not None:
            return exact
        inside = [(unit, unit_key) for unit, unit_key in self.unit_keys if unit_key and unit_key in key]
        if inside:
            return max(inside, key=lambda pair: len(pair[1]))[0]
        around = [unit for unit, unit_key in self.unit_keys if len(key) >= 2 and key in unit_key]
        return around[0] if len(around) == 1 else None


@dataclass
class FileReturn:
    """What one returned file yields before validation."""

    file: str
    unit: str = ""
    period: str = ""
    sheet: str = ""
    rows: list[dict] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rejected: bool = False

    def reject(self, message: str, code: str, location: str = "") -> FileReturn:
        self.issues.append(Issue(self.file, self.unit, location, ERROR, code, message))
        self.rejected = True
        return self


def normalize_book(
    book: RawBook, file_name: str, index: TaskIndex, aliases: dict[str, str], period: str
) -> FileReturn:
    """Find the table, the unit and the period, and turn each data row into return rows."""
    stated = book.meta.get("period", "")
    result = FileReturn(file=file_name, period=stated if _PERIOD.match(stated) else period)
    if stated and not _PERIOD.match(stated):
        result.notes.append(f"模板中的期间“{stated}”格式不对，按本期 {period} 处理")
    for sheet in book.sheets:
        if not sheet.name:
            sheet.name = file_name.rsplit(".", 1)[0]
    result.notes.extend(book.notes)
    chosen = _choose_sheet(book, aliases, result)
    if chosen is None:
        return result.reject(
            "找不到表头：前20行中没有“指标编号”“指标任务”“已完成”“完成情况”等列标题。"
            "请使用下发的模板填报，或在表格上方保留列标题行。",
            "no-header",
        )
    sheet, layout = chosen
    result.sheet = sheet.name
    if sheet.truncated:
        return result.reject(
            f"工作表“{sheet.name}”的行数超过上限（config.toml [limits] max_rows），可能含有大量多余的行。"
            "请删除表格下方多余的行（或只保留本单位的指标行）后重新发送。",
            "too-many-rows",
            sheet.name,
        )
    _fill_split_header(sheet, layout)
    file_unit = _file_unit(book, layout, file_name, index, result)
    if result.rejected:
        return result
    for dup_field, cols in layout.duplicated:
        if dup_field in ("completed", "code", "indicator", "rate"):
            names = "、".join(cell_address(layout.header_rows[-1] + 1, c) for c in cols)
            return result.reject(
                f"表头重复：{names} 都是“{_header_text(sheet, layout, cols[0])}”列，无法确定用哪一列。"
                "请删除多余的列后重新发送。",
                "duplicate-header",
                f"{sheet.name}!{cell_address(layout.header_rows[-1] + 1, cols[0])}",
            )
    _collect_rows(sheet, layout, file_unit, index, result)
    if not result.rows and not result.rejected:
        result.reject(
            f"工作表“{sheet.name}”中没有可以对应到任务清单的数据行。请检查指标编号或指标名称是否与下发的模板一致。",
            "no-rows",
            sheet.name,
        )
    return result


def _choose_sheet(book: RawBook, aliases, result: FileReturn) -> tuple[RawSheet, Layout] | None:
    best = None
    for position, sheet in enumerate(book.sheets):
        if sheet.hidden:
            if find_layout(sheet, aliases):
                result.notes.append(f"跳过隐藏工作表“{sheet.name}”")
            continue
        layout = find_layout(sheet, aliases)
        if layout and (best is None or layout.score > best[1].score):
            best = (sheet, layout)
            if position:
                result.notes.append(f"数据不在第一个工作表，读取了工作表“{sheet.name}”")
    return best


def _fill_split_header(sheet: RawSheet, layout: Layout) -> None:
    """项目名称及指标任务 over two columns without a merge (CSV): the blank-headed column after it."""
    columns = layout.columns
    if "project" in columns or "indicator" not in columns:
        return
    col = columns["indicator"]
    header_blank = all(
        col + 1 >= len(sheet.rows[r]) or sheet.rows[r][col + 1] is None for r in layout.header_rows
    )
    used = set(columns.values())
    data = [row[col + 1] for row in sheet.rows[layout.first_data_row :] if col + 1 < len(row)]
    if header_blank and col + 1 not in used and any(value is not None for value in data):
        columns["project"] = col
        columns["indicator"] = col + 1


def _file_unit(book, layout, file_name, index, result) -> str:
    """The unit, from template metadata, a 填报单位 cell, a unit column, or the file name."""
    candidates = [
        (book.meta.get("unit", ""), "模板"),
        (layout.unit_text, f"{result.sheet}!{layout.unit_cell}"),
    ]
    for text, where in candidates:
        if text:
            unit = index.match_unit(text)
            if unit:
                result.unit = unit
                return unit
            result.reject(
                f"填报单位“{text}”不在任务清单的单位中（{where}）。请写明任务清单中的单位名称，"
                f"例如“{index.units[0]}”。",
                "unknown-unit",
                where if "!" in where else "",
            )
            return ""
    if "unit" in layout.columns:
        return ""  # per row
    stem = file_name.rsplit(".", 1)[0]
    unit = index.match_unit(stem) or index.match_unit(_FILENAME_NOISE.sub("", fold(stem)))
    if unit:
        result.unit = unit
        return unit
    result.reject(
        "无法确定填报单位：文件名和表格中都没有写明单位。请把文件命名为单位名称（例如“"
        f"{index.units[0]}.xlsx”），或在表头上方填写“填报单位：{index.units[0]}”。",
        "unknown-unit",
    )
    return ""


def _collect_rows(sheet: RawSheet, layout: Layout, file_unit: str, index: TaskIndex, result: FileReturn):
    columns = layout.columns
    fill = _fill_down_values(sheet, layout)
    header_keys = {text_key(sheet.rows[r][c]) for r in layout.header_rows for c in columns.values()
                   if c < len(sheet.rows[r])}  # fmt: skip
    # Column letters once per file: every record quotes up to six cell addresses.
    letters = [(name, column_letter(columns[name]) if name in columns else "") for name in _ADDRESSED]
    seen_units = set()
    subtotals: list[tuple[int, object]] = []
    fill_down = [(name, col) for name, col in columns.items() if name in _FILL_DOWN]
    # The rows whose reported rate is a number shown as a percentage (3.5 there is 350%).
    rate_col = columns.get("rate")
    percent_rows = {r for r, c in sheet.percent_cells if c == rate_col} if rate_col is not None else set()
    for r in range(layout.first_data_row, len(sheet.rows)):
        row = sheet.rows[r]
        width = len(row)
        # The row's cell for each recognised column, looked up once: a row asks for ~11 of them.
        cells = {name: row[col] if col < width else None for name, col in columns.items()}
        if fill:
            for name, col in fill_down:
                if cells[name] is None:
                    cells[name] = fill.get((r, col))
        value = cells.get  # value("completed"): the cell, or None when the sheet has no such column

        # The cells whose clean_text() is not blank. Asked of text and number cells, the usual kinds,
        # without the call: a text cell's clean_text is v.strip(), a finite number's is never blank.
        present = [
            v for v in row
            if v is not None and (v.strip() if type(v) is str else (type(v) is float and math.isfinite(v)) or clean_text(v))
        ]  # fmt: skip
        if not present:
            continue
        first = fold(clean_text(present[0])).replace(" ", "")
        if _NOTE.match(first) or (len(present) == 1 and not _has_key(value) and len(first) > 20):
            continue
        if _SUBTOTAL.match(text_key(value("code")) or text_key(value("seq")) or text_key(value("indicator"))):
            subtotals.append((r, value("completed")))
            continue
        # The header repeated (printed page breaks)? A data row fails on its first value, so test
        # that one before setting up the scan of the rest.
        if text_key(present[0]) in header_keys and all(text_key(v) in header_keys for v in present[1:]):
            continue
        if r + 1 in sheet.hidden_rows:
            result.issues.append(
                Issue(result.file, file_unit, f"{sheet.name}!A{r + 1}", WARNING, "hidden-row",
                      f"第{r + 1}行是隐藏行但有内容，已按正常数据读取。请确认该行是否应当填报。")
            )  # fmt: skip
        unit = file_unit
        if not unit:
            unit_text = clean_text(value("unit"))
            unit = index.match_unit(unit_text) or unit_text
            seen_units.add(unit)
        lead_units = clean_text(value("lead_units"))
        result.rows.extend(_row_records(sheet, letters, r, value, unit, index, lead_units, result, r in percent_rows))
    if not file_unit and len(seen_units) == 1:
        result.unit = next(iter(seen_units))
    _check_subtotals(sheet, layout, subtotals, result)


def _check_subtotals(sheet: RawSheet, layout: Layout, subtotals, result: FileReturn) -> None:
    """A 合计 row is never data; when it disagrees with the rows above it, say so."""
    col = layout.columns.get("completed")
    for r, raw in subtotals:
        stated = parse_number(raw)
        if col is None or stated.value is None:
            continue
        above = [row for row in result.rows if row["row"] < r + 1 and row["completed_source"] == "填报"]
        total = sum(row["completed"] for row in above)
        if abs(total - stated.value) > 1e-6 * max(1.0, abs(total)):
            where = cell_address(r + 1, col)
            result.issues.append(
                Issue(result.file, result.unit, f"{sheet.name}!{where}", WARNING, "subtotal-mismatch",
                      f"{where}：合计行为 {clean_text(raw)}，与上方各行已完成之和 {total:g} 不一致，请核对"
                      "（合计行不计入汇总）。")
            )  # fmt: skip


def _has_key(value) -> bool:
    return any(clean_text(value(name)) for name in ("code", "completed", "rate"))


def _row_records(sheet, letters, r, value, unit, index, lead_units, result, rate_percent=False):
    """One data row → one record per task it reports on (usually one). ``rate_percent``: the
    row's rate cell shows its number as a percentage."""
    row_number = r + 1
    # where("completed"): this row's cell in that column ("E7", as cell_address() writes it), or ""
    # when the sheet has no such column.
    where = {name: f"{letter}{row_number}" if letter else "" for name, letter in letters}.__getitem__

    code = fold(clean_text(value("code"))).replace(" ", "")
    indicator_text = clean_text(value("indicator")) or clean_text(value("project"))
    narrative = clean_text(value("narrative"))
    if not code and not indicator_text:
        return []
    if code:
        tasks = index.by_unit_code.get(unit, {}).get(code) or [
            {"code": code, "indicator": indicator_text, "target": None, "measure": "", "kind": "数量"}
        ]
    else:
        tasks = _match_by_text(indicator_text, clean_text(value("project")), index.by_unit.get(unit, []))
        if not tasks:
            if lead_units and unit not in split_names(lead_units):
                return []  # another unit's row in a returned copy of the whole table
            if narrative or clean_text(value("completed")):
                result.issues.append(
                    Issue(result.file, unit, f"{sheet.name}!{where('indicator') or where('project')}", WARNING,
                          "unmatched-row",
                          f"第{row_number}行“{indicator_text[:30]}”与本单位在任务清单中的指标都对不上，已忽略。"
                          "请核对指标名称，或填写指标编号。")
                )  # fmt: skip
            return []
    if len(tasks) == 1:  # the usual row: one task, the whole narrative its own
        return [
            _record(sheet, r, value, where, unit, tasks[0], narrative, code, indicator_text, result,
                    rate_percent=rate_percent)
        ]  # fmt: skip
    parts = split_for_indicators(narrative, [t["indicator"] for t in tasks])
    # When the narrative could not be split, its numbers belong to the row's first (headline)
    # indicator only: "培训1200人次，其中创业培训300人次 … 已完成615人次" says nothing of the 300.
    unsplit = len(tasks) > 1 and len(set(parts)) == 1
    records = []
    for position, (task, part) in enumerate(zip(tasks, parts, strict=True)):
        own_numbers = not (unsplit and position > 0)
        records.append(
            _record(sheet, r, value, where, unit, task, part or narrative, code, indicator_text, result, own_numbers,
                    rate_percent)
        )  # fmt: skip
    return records


def _match_by_text(indicator_text: str, project_text: str, tasks: list[dict]) -> list[dict]:
    """Tasks a row's text names.

    Equal after folding wins; otherwise every task whose text (nearly) all appears in the row
    (a row that covers two indicators: "上线服务事项700项,其中“一网通办”事项达到50项"); otherwise
    the one task that contains (nearly) all of the row's text (an abbreviated row).
    """
    key = text_key(indicator_text)
    if not key:
        return []
    exact = [t for t in tasks if key == t["indicator_key"]]
    if exact:
        return exact
    by_project = [t for t in tasks if key == t["project_key"]]
    if len(by_project) == 1:
        return by_project
    row_grams = _bigrams(key)
    covered = [t for t in tasks if len(t["indicator_key"]) >= 4 and _coverage(t["indicator_key"], row_grams) >= 0.85]
    if covered:
        return covered
    if by_project:
        return by_project
    scored = [(_coverage(key, _bigrams(t["indicator_key"])), t) for t in tasks]
    scored = [(score, t) for score, t in scored if score >= 0.85 and len(key) >= 6]
    if scored:
        best = max(score for score, _ in scored)
        winners = [t for score, t in scored if score == best]
        return winners if len(winners) == 1 else []
    project_key = text_key(project_text)
    return [t for t in tasks if project_key and key == project_key == t["project_key"]]


def _bigrams(key: str) -> set[str]:
    return {key[i : i + 2] for i in range(len(key) - 1)} or {key}


def _coverage(key: str, grams: set[str]) -> float:
    """Share of ``key``'s character pairs found in ``grams``."""
    own = _bigrams(key)
    return len(own & grams) / len(own)


def _record(
    sheet, r, value, where, unit, task, narrative, code, indicator_text, result, own_numbers=True, rate_percent=False
) -> dict:
    completed_cell = value("completed")
    completed_raw, completed, source = _number_cell(completed_cell)
    if completed is not None:
        source = "填报"
    rate_raw, rate = _rate_cell(value("rate"), rate_percent)
    rank_text = clean_text(value("rank"))
    rank, rank_of = parse_rank(rank_text) if rank_text else (None, None)
    target_raw, target, _ = _number_cell(value("target"))
    stage = clean_text(value("stage"))
    if narrative:
        facts = extract_facts(narrative, target=task["target"], measure=task["measure"], indicator=task["indicator"])
        if completed is None and not completed_raw and task["kind"] == "数量":
            if facts.full and task["target"] is not None:
                completed, source = task["target"], "文本提取"
            elif not own_numbers:
                if facts.completed is not None or facts.reported_rate is not None:
                    result.issues.append(
                        Issue(result.file, unit, f"{sheet.name}!{where('narrative')}", WARNING, "ambiguous-narrative",
                              f"{where('narrative')}：这一行含多个指标，完成情况中的数字无法确定是否属于指标 "
                              f"{task['code']}（{task['indicator']}），请分行填写该指标的完成数。")
                    )  # fmt: skip
                facts = NarrativeFacts(None, None, False, None, None, None, None, None)
            elif facts.completed is not None:
                completed, source = facts.completed, "文本提取"
            elif facts.stage in ("未开工", "前期工作") and not facts.ambiguous:
                completed, source = 0.0, "文本提取"  # nothing built yet: zero done, stated in words
            elif facts.ambiguous:
                result.issues.append(
                    Issue(result.file, unit, f"{sheet.name}!{where('narrative')}", WARNING, "ambiguous-narrative",
                          f"{where('narrative')}：{facts.ambiguous}")
                )  # fmt: skip
        if rate is None and not rate_raw and facts.reported_rate is not None:
            rate = facts.reported_rate
        if rank is None and facts.reported_rank is not None:
            rank, rank_of = facts.reported_rank, facts.reported_rank_of
        if not stage and facts.stage:
            stage = facts.stage
    texts = {}
    for name, text, column in (("narrative", narrative, "narrative"), ("remarks", clean_text(value("remarks")), "remarks"),
                               ("indicator_text", indicator_text, "indicator")):
        texts[name], problems = sanitize(text)
        if problems:
            cell = where(column) or where("project")
            result.issues.append(
                Issue(result.file, unit, f"{sheet.name}!{cell}", WARNING, "text-cleaned", f"{cell}：{'；'.join(problems)}。")
            )
    return {
        "file": result.file,
        "sheet": sheet.name,
        "row": r + 1,
        "unit": unit,
        "period": result.period,
        "code": task["code"] if task.get("code") else code,
        "indicator_text": texts["indicator_text"],
        "completed": completed,
        "completed_raw": shorten(sanitize(completed_raw)[0]) if completed is None else "",
        "completed_source": source if completed is not None else "",
        "target_reported": target,
        "target_raw": shorten(sanitize(target_raw)[0]) if target is None else "",
        "reported_rate": rate,
        "rate_raw": shorten(sanitize(rate_raw)[0]) if rate is None else "",
        "reported_rank": rank,
        "reported_rank_of": rank_of,
        "stage": shorten(sanitize(stage)[0], 20),
        "narrative": texts["narrative"],
        "remarks": texts["remarks"],
        "cell_code": where("code") or where("indicator"),
        "cell_completed": where("completed"),
        "cell_target": where("target"),
        "cell_rate": where("rate"),
        "cell_narrative": where("narrative"),
    }


def _number_cell(cell) -> tuple[str, float | None, str]:
    """(what was typed when it is not a number, the number, "") for one numeric cell."""
    if cell is None:
        return "", None, ""  # blank: not reported (parse_number's answer, without asking it)
    if type(cell) is float and math.isfinite(cell):
        return "", cell, ""  # the usual number cell: parse_number would return it as it is
    if isinstance(cell, CellError):
        return str(cell), None, ""
    parsed = parse_number(cell)
    if not parsed.ok:
        return clean_text(cell), None, ""
    return "", parsed.value, ""


def _rate_cell(cell, percent_format: bool = False) -> tuple[str, float | None]:
    """The reported rate's cell: (its text when it is no rate, the rate as a fraction).
    ``percent_format``: the cell shows its number as a percentage, so 3.5 is 350%."""
    if cell is None:
        return "", None
    if type(cell) is float and math.isfinite(cell):
        if percent_format or abs(cell) <= PERCENT_ABOVE:
            return "", cell
        return "", cell / 100  # parse_rate's rule, for the usual cell
    if isinstance(cell, CellError):
        return str(cell), None
    parsed = parse_rate(cell, percent_format=percent_format and not isinstance(cell, str))  # text shows no format
    if not parsed.ok:
        return clean_text(cell), None
    return "", parsed.value


def _fill_down_values(sheet: RawSheet, layout: Layout) -> dict[tuple[int, int], object]:
    """Merged cells in the fill-down columns → their top-left value for every covered cell."""
    cols = {layout.columns[name] for name in _FILL_DOWN if name in layout.columns}
    values = {}
    for r0, c0, r1, _c1 in sheet.merged:
        if c0 not in cols or r1 < layout.first_data_row:
            continue
        top = sheet.rows[r0][c0] if r0 < len(sheet.rows) and c0 < len(sheet.rows[r0]) else None
        for rr in range(max(r0, layout.first_data_row), r1 + 1):
            values[(rr, c0)] = top
    return values


def _header_text(sheet: RawSheet, layout: Layout, col: int) -> str:
    for r in reversed(layout.header_rows):
        if col < len(sheet.rows[r]) and sheet.rows[r][col] is not None:
            return clean_text(sheet.rows[r][col])
    return ""


def frame_from_returns(returns: list[FileReturn]) -> pd.DataFrame:
    """All returned rows of a run as one frame (validated once, not per file)."""
    from schemas import RETURN_COLUMNS

    records = [row for ret in returns if not ret.rejected for row in ret.rows]
    frame = pd.DataFrame.from_records(records, columns=RETURN_COLUMNS)
    for column in ("completed", "target_reported", "reported_rate", "reported_rank", "reported_rank_of"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    frame["row"] = frame["row"].astype("int64")
    return frame
