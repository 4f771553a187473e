"""Find the table in a returned sheet: the header row(s), which column holds what, and the unit.

Units put title rows above the header, merge a group header over two columns (完成情况 over
已完成 / 完成率), rename and reorder columns. The header is found by scoring the first rows
against the known aliases; the best-scoring row (or pair of rows) wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..text import clean_text, fold, header_key
from .read import RawSheet

HEADER_SEARCH_ROWS = 20

# field → header wordings (compared after header_key: folded, no spaces, no bracketed suffix).
ALIASES: dict[str, tuple[str, ...]] = {
    "code": ("指标编号", "编号", "指标代码", "任务编号", "代码"),
    "seq": ("序号", "项目序号", "编号序号"),
    "project": ("项目名称", "项目", "民生实事项目", "实事项目"),
    "indicator": ("指标任务", "项目名称及指标任务", "指标内容", "任务指标", "指标", "建设内容",
                  "目标任务内容", "具体指标", "主要指标", "指标名称"),
    "target": ("目标值", "目标任务", "年度目标", "任务数", "目标数", "年度任务", "全年目标",
               "目标任务数", "计划数", "年度目标任务"),
    "measure": ("计量单位",),
    "completed": ("已完成", "累计完成", "完成数", "完成值", "累计完成数", "完成数量", "实际完成",
                  "累计完成值", "已完成数", "本年累计完成", "1-本月累计完成", "累计完成情况数"),
    "narrative": ("完成情况", "进展情况", "工作进展", "进度情况", "完成情况及进展", "工作进展情况",
                  "推进情况", "项目进展情况", "完成进展情况", "进展"),
    "rate": ("完成率", "上报完成率", "完成比例", "完成进度", "完成百分比"),
    "rank": ("排名", "上报排名", "全市排名", "名次"),
    "remarks": ("备注", "说明", "存在问题", "备注说明"),
    "unit": ("填报单位", "责任单位", "单位名称", "县市区", "报送单位", "县(市区)", "县市区名称"),
    "leader": ("牵头领导", "责任领导", "分管领导"),
    "lead_units": ("牵头责任单位", "牵头单位", "责任单位(牵头)"),
    "stage": ("进度阶段", "项目阶段", "形象进度", "当前阶段", "项目状态"),
    "level": ("级别", "层级"),
}  # fmt: skip
# Fields that say which task a row is about; a header must have one of them.
KEY_FIELDS = ("code", "indicator", "project")
VALUE_FIELDS = ("completed", "narrative", "rate", "stage")
# A header that spans two columns and means two fields (the reference table's layout).
SPLIT_HEADERS = {"项目名称及指标任务": ("project", "indicator")}

_UNIT_LABEL = re.compile(r"^(?:填报|报送|责任)?单位(?:名称)?(?:\(盖章\))?[:：]?\s*(.*)$")


@dataclass
class Layout:
    header_rows: tuple[int, ...]  # 0-based rows that make the header
    columns: dict[str, int]  # field → 0-based column
    duplicated: list[tuple[str, list[int]]] = field(default_factory=list)  # a field claimed twice
    unit_text: str = ""  # text of a 填报单位 cell above the table
    unit_cell: str = ""

    @property
    def first_data_row(self) -> int:
        return max(self.header_rows) + 1

    @property
    def score(self) -> int:
        return len(self.columns)


def build_alias_index(extra: dict[str, tuple[str, ...]] | None = None) -> dict[str, str]:
    """header_key → field, with the config's [aliases] added (they win over built-ins)."""
    index = {header_key(alias): name for name, aliases in ALIASES.items() for alias in aliases}
    for name, aliases in (extra or {}).items():
        for alias in aliases:
            index[header_key(alias)] = name
    return index


def find_layout(sheet: RawSheet, aliases: dict[str, str]) -> Layout | None:
    """The best header in the first rows, or None when no row looks like our table's header."""
    rows = sheet.rows[:HEADER_SEARCH_ROWS]
    merged_header = _merged_lookup(sheet, len(rows))
    key, grid = _key_lookup(rows, merged_header)
    # A row without any header word can be neither a one-row header nor part of a two-row one.
    headed = [_keys_have_header(keys, aliases) for keys in grid]
    best: Layout | None = None
    for top in range(len(rows)):
        if not headed[top]:
            continue
        for depth in (1, 2):
            if top + depth > len(rows) or (depth == 2 and not headed[top + 1]):
                continue
            layout = _try_header(rows, merged_header, key, top, depth, aliases)
            # More recognised columns win; at a tie, the shallower header (a title row above a
            # one-row header is not part of it).
            if layout and (best is None or (layout.score, -depth) > (best.score, -len(best.header_rows))):
                best = layout
    if best is not None:
        best.unit_text, best.unit_cell = _unit_above(rows[: best.header_rows[0]])
    return best


def _key_lookup(rows, merged_header):
    """header_key of a cell, computed once per cell: the search visits each cell up to 4 times.

    Every cell of the searched rows is needed (whether a row holds any header word reads them
    all), so the keys are taken row by row up front, and a visit is a list index.
    """
    grid = [["" if value is None else header_key(value) for value in row] for row in rows]
    for (r, c), value in merged_header.items():
        if c < len(rows[r]) and rows[r][c] is None:
            grid[r][c] = header_key(value)  # a blank cell under a merge reads as its top-left (_cell)

    def key(r: int, c: int) -> str:
        keys = grid[r]
        if c < len(keys):
            return keys[c]
        return header_key(merged_header.get((r, c)))  # past the row's end only a merge reaches

    return key, grid


def _try_header(rows, merged_header, key_of, top, depth, aliases) -> Layout | None:
    width = max(len(rows[r]) for r in range(top, top + depth)) if depth else 0
    claims: dict[str, list[int]] = {}
    for col in range(width):
        # The lowest recognised header wins (已完成 under a merged 完成情况 group header).
        name = None
        for r in range(top + depth - 1, top - 1, -1):
            key = key_of(r, col)
            if key in SPLIT_HEADERS:
                name = ("split", key)
                break
            if key in aliases:
                name = aliases[key]
                break
        if name is None:
            continue
        if isinstance(name, tuple):
            claims.setdefault(name[1], []).append(col)
        else:
            claims.setdefault(name, []).append(col)
    columns: dict[str, int] = {}
    duplicated = []
    for key, cols in claims.items():
        if key in SPLIT_HEADERS:
            fields = SPLIT_HEADERS[key]
            if len(cols) >= 2:
                columns.setdefault(fields[0], cols[0])
                columns.setdefault(fields[1], cols[1])
            else:
                columns.setdefault(fields[1], cols[0])
            continue
        if key in columns:
            continue
        columns[key] = cols[0]
        if len(cols) > 1 and not _same_merge(merged_header, top, depth, cols):
            duplicated.append((key, cols))
    if not any(k in columns for k in KEY_FIELDS) or not any(k in columns for k in VALUE_FIELDS):
        return None
    if depth == 2 and not (_row_has_header(rows, key_of, top, aliases)
                           and _row_has_header(rows, key_of, top + 1, aliases)):
        return None
    return Layout(tuple(range(top, top + depth)), columns, duplicated)


def _row_has_header(rows, key_of, r, aliases) -> bool:
    """A two-row header only when both rows hold header text (not a title or the first data row)."""
    return _keys_have_header([key_of(r, c) for c in range(len(rows[r]))], aliases)


def _keys_have_header(keys: list[str], aliases) -> bool:
    if aliases.keys().isdisjoint(keys) and SPLIT_HEADERS.keys().isdisjoint(keys):
        return False  # most rows (titles, data): settled by two set checks, without a loop
    return any(key in aliases or key in SPLIT_HEADERS for key in keys if key)  # a blank key is no header


def _cell(rows, merged_header, r, c):
    value = rows[r][c] if c < len(rows[r]) else None
    if value is None:
        value = merged_header.get((r, c))
    return value


def _merged_lookup(sheet: RawSheet, limit: int) -> dict[tuple[int, int], object]:
    """Cells covered by a merge in the header area → the merge's top-left value."""
    lookup = {}
    for r0, c0, r1, c1 in sheet.merged:
        if r0 >= limit or (r1 - r0 + 1) * (c1 - c0 + 1) > 400:
            continue
        value = sheet.rows[r0][c0] if r0 < len(sheet.rows) and c0 < len(sheet.rows[r0]) else None
        for r in range(r0, min(r1, limit - 1) + 1):
            for c in range(c0, c1 + 1):
                if (r, c) != (r0, c0):
                    lookup[(r, c)] = value
    return lookup


def _same_merge(merged_header, top, depth, cols) -> bool:
    """Two columns under one merged header cell are one header, not a duplicate."""
    return all((r, c) in merged_header for c in cols[1:] for r in range(top, top + depth))


def _unit_above(rows: list[list]) -> tuple[str, str]:
    """A "填报单位：区人社局" cell (or a 填报单位 label and the next cell) above the header."""
    from ..errors import cell_address

    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            text = fold(clean_text(value)).replace(" ", "")
            match = _UNIT_LABEL.match(text)
            if not match or not text.startswith(("填报", "报送", "责任", "单位")):
                continue
            rest = match.group(1).strip()
            if not rest:
                rest = next((clean_text(v) for v in row[c + 1 :] if clean_text(v)), "")
            rest = re.split(r"\s{2,}|填报人|联系人|填报日期|日期|时间", rest)[0].strip()
            if rest:
                return rest, cell_address(r + 1, c)
    return "", ""
