"""The reference table's own layout, as units send it back: parse the transcription, write returns.

The reference (tests/data/reference_table.txt) is tab-separated: 序号 | 项目名称 | 指标任务 |
牵头领导 | 牵头责任单位 | 完成情况 | 备注, with continuation rows (blank 序号) for further
indicators of a project, repeated headers at page breaks, and a footnote.
"""

from __future__ import annotations

from pathlib import Path

import xlsxwriter

DATA = Path(__file__).resolve().parent / "data"


def parse_reference(path: Path = DATA / "reference_table.txt") -> list[dict]:
    """Data rows with project, leader and unit carried down over continuation rows."""
    rows, current = [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        cells = line.split("\t")
        if len(cells) < 5 or cells[0] == "序号":
            continue
        if len(cells) == 6:  # the last pages: one column for 项目名称及指标任务
            cells = [cells[0], cells[1], "", *cells[2:]]
        cells += [""] * (7 - len(cells))
        seq, project, indicator, leader, unit, narrative, remarks = (c.strip() for c in cells[:7])
        if seq:
            current = {"seq": seq, "project": project, "leader": leader, "unit": unit}
        row = dict(current)
        if leader:
            row["leader"] = leader
        if unit:
            row["unit"] = unit
        row.update(indicator=indicator, narrative=narrative, remarks=remarks, starts_project=bool(seq))
        rows.append(row)
    return rows


def first_unit(units: str) -> str:
    return units.replace("、", " ").split()[0]


def write_reference_return(path: Path, rows: list[dict], *, title: str = "2023年省市区重点民生实事项目完成情况汇总表") -> Path:
    """One unit's rows in the reference layout, with the merges a real copy of the table has."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False})
    sheet = book.add_worksheet("Sheet1")
    wrap = book.add_format({"text_wrap": True, "border": 1, "valign": "vcenter"})
    sheet.merge_range(0, 0, 0, 6, title, book.add_format({"bold": True, "font_size": 16, "align": "center"}))
    sheet.merge_range(1, 0, 1, 6, "(1月至5月份完成情况)", book.add_format({"align": "center"}))
    header = ["序号", "项目名称及指标任务", None, "牵头领导", "牵头责任单位", "完成情况", "备注"]
    for col, name in enumerate(header):
        if name:
            sheet.write_string(2, col, name, wrap)
    sheet.merge_range(2, 1, 2, 2, "项目名称及指标任务", wrap)
    r = 3
    groups: list[list[dict]] = []
    for row in rows:
        if groups and groups[-1][0]["seq"] == row["seq"]:
            groups[-1].append(row)
        else:
            groups.append([row])
    for group in groups:
        top = r
        for row in group:
            if row["indicator"]:
                sheet.write_string(r, 2, row["indicator"], wrap)
            sheet.write_string(r, 5, row["narrative"], wrap)
            if row["remarks"]:
                sheet.write_string(r, 6, row["remarks"], wrap)
            r += 1
        head = group[0]
        for col, key in ((0, "seq"), (1, "project"), (3, "leader"), (4, "unit")):
            if r - top > 1:
                sheet.merge_range(top, col, r - 1, col, head[key], wrap)
            else:
                sheet.write_string(top, col, head[key], wrap)
        if not any(row["indicator"] for row in group) and len(group) == 1:
            sheet.merge_range(top, 1, top, 2, head["project"], wrap)
    sheet.write_string(r + 1, 0, "填报人：李四    联系电话：0730-1234567")
    book.close()
    return path


def split_by_unit(rows: list[dict]) -> dict[str, list[dict]]:
    units: dict[str, list[dict]] = {}
    for row in rows:
        units.setdefault(first_unit(row["unit"]), []).append(row)
    return units
