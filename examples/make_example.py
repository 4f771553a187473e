"""Build the shipped example from the reference transcription (tests/data/).

Writes ``tasks.xlsx`` (the task list) and one return per unit in ``inbox/``, as the units
returned them for May 2023: most in the template form, and three in the other forms units
really send — 区残联 a copy of the reference table's own layout (values only in the narrative),
区医保局 an old .xls, 区水利局 a GBK-encoded CSV from another system. The files are committed;
rerun this script only to regenerate them (the output is deterministic):

    python examples/make_example.py
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from pathlib import Path

import xlsxwriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reference_layout import parse_reference, split_by_unit, write_reference_return  # noqa: E402

FIXED_DATE = datetime.datetime(2023, 6, 2, 9, 0, 0)
TASK_HEADER = ["指标编号", "序号", "级别", "项目名称", "指标任务", "目标值", "计量单位", "指标类型", "牵头领导", "牵头责任单位"]
RETURN_HEADER = ["指标编号", "指标任务", "目标值", "计量单位", "已完成", "完成率", "排名", "完成情况", "备注"]


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def number(text: str):
    text = (text or "").strip()
    if not text:
        return None
    value = float(text)
    return int(value) if value == int(value) else value


def write_tasks(tasks: list[dict], path: Path) -> None:
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False})
    book.set_properties({"created": FIXED_DATE, "author": "督查室"})
    sheet = book.add_worksheet("任务清单")
    bold = book.add_format({"bold": True, "bg_color": "#F2F2F2", "border": 1, "text_wrap": True})
    for col, name in enumerate(TASK_HEADER):
        sheet.write_string(0, col, name, bold)
    for row, task in enumerate(tasks, start=1):
        for col, name in enumerate(TASK_HEADER):
            value = task[name]
            if name in ("序号", "目标值") and number(value) is not None:
                sheet.write_number(row, col, number(value))
            elif value:
                sheet.write_string(row, col, value)
    sheet.set_column(0, 2, 8)
    sheet.set_column(3, 4, 40)
    sheet.set_column(5, 9, 12)
    sheet.freeze_panes(1, 0)
    book.close()


def write_return(unit: str, rows: list[dict], tasks: dict[str, dict], path: Path) -> None:
    """One unit's return in the template form: title, 填报单位 line, header on row 3."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    book.set_properties({"created": FIXED_DATE})
    sheet = book.add_worksheet("Sheet1")
    title = book.add_format({"bold": True, "font_size": 16, "align": "center"})
    head = book.add_format({"bold": True, "border": 1, "align": "center", "text_wrap": True})
    pct = book.add_format({"num_format": "0.00%", "border": 1})
    cell = book.add_format({"border": 1, "text_wrap": True})
    sheet.merge_range(0, 0, 0, len(RETURN_HEADER) - 1, "2023年重点民生实事项目完成情况（1-5月）", title)
    sheet.write_string(1, 0, f"填报单位：{unit}")
    for col, name in enumerate(RETURN_HEADER):
        sheet.write_string(2, col, name, head)
    for row, item in enumerate(rows, start=3):
        task = tasks[item["指标编号"]]
        sheet.write_string(row, 0, item["指标编号"], cell)
        sheet.write_string(row, 1, task["指标任务"], cell)
        if number(task["目标值"]) is not None:
            sheet.write_number(row, 2, number(task["目标值"]), cell)
        sheet.write_string(row, 3, task["计量单位"], cell)
        if number(item["已完成"]) is not None:
            sheet.write_number(row, 4, number(item["已完成"]), cell)
        else:
            sheet.write_blank(row, 4, None, cell)
        rate = item["上报完成率"].strip()
        if rate:
            sheet.write_number(row, 5, round(float(rate.rstrip("%")) / 100, 6), pct)
        else:
            sheet.write_blank(row, 5, None, cell)
        sheet.write_string(row, 6, item["上报排名"], cell) if item["上报排名"] else sheet.write_blank(row, 6, None, cell)
        sheet.write_string(row, 7, item["完成情况"], cell) if item["完成情况"] else sheet.write_blank(row, 7, None, cell)
        sheet.write_string(row, 8, item["备注"], cell) if item["备注"] else sheet.write_blank(row, 8, None, cell)
    last = len(rows) + 4
    sheet.write_string(last, 0, "填报人：张三    联系电话：0730-8888888")
    sheet.set_column(0, 0, 9)
    sheet.set_column(1, 1, 36)
    sheet.set_column(2, 6, 10)
    sheet.set_column(7, 7, 50)
    sheet.set_column(8, 8, 20)
    book.close()


def write_xls(unit: str, rows: list[dict], tasks: dict[str, dict], path: Path) -> None:
    """An old-format .xls (BIFF8), as some units still save."""
    import xlwt

    book = xlwt.Workbook(encoding="utf-8")
    sheet = book.add_sheet("Sheet1")
    sheet.write(0, 0, "2023年重点民生实事项目完成情况（1-5月）")
    sheet.write(1, 0, f"填报单位：{unit}")
    for col, name in enumerate(RETURN_HEADER):
        sheet.write(2, col, name)
    for row, item in enumerate(rows, start=3):
        task = tasks[item["指标编号"]]
        values = [item["指标编号"], task["指标任务"], number(task["目标值"]), task["计量单位"], number(item["已完成"]),
                  item["上报完成率"], item["上报排名"], item["完成情况"], item["备注"]]  # fmt: skip
        for col, value in enumerate(values):
            if value not in (None, ""):
                sheet.write(row, col, value)
    book.save(str(path))


def write_gbk_csv(unit: str, rows: list[dict], tasks: dict[str, dict], path: Path) -> None:
    """A CSV exported by another system: GBK, its own column names, no title."""
    with open(path, "w", encoding="gbk", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["填报单位", "指标编号", "指标内容", "目标任务", "累计完成", "完成率", "工作进展"])
        for item in rows:
            task = tasks[item["指标编号"]]
            writer.writerow([unit, item["指标编号"], task["指标任务"], task["目标值"], item["已完成"],
                             item["上报完成率"], item["完成情况"]])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parent
    parser.add_argument("--reference", type=Path, default=here.parent / "tests" / "data")
    parser.add_argument("--root", type=Path, default=here.parent)
    args = parser.parse_args()
    tasks = read_csv(args.reference / "seed-tasks.csv")
    progress = read_csv(args.reference / "seed-progress-2023-05.csv")
    write_tasks(tasks, args.root / "tasks.xlsx")
    by_code = {task["指标编号"]: task for task in tasks}
    units: dict[str, list[dict]] = {}
    for item in progress:
        units.setdefault(item["填报单位"], []).append(item)
    inbox = args.root / "inbox"
    inbox.mkdir(exist_ok=True)
    reference_rows = split_by_unit(parse_reference(args.reference / "reference_table.txt"))
    for old in inbox.iterdir():
        if old.is_file():
            old.unlink()
    for unit, rows in units.items():
        if unit == "区残联":
            write_reference_return(inbox / "区残联（盖章）.xlsx", reference_rows[unit])
        elif unit == "区医保局":
            write_xls(unit, rows, by_code, inbox / f"{unit}.xls")
        elif unit == "区水利局":
            write_gbk_csv(unit, rows, by_code, inbox / "水利局1-5月民生实事进展.csv")
        else:
            write_return(unit, rows, by_code, inbox / f"{unit}.xlsx")
    print(f"wrote {args.root / 'tasks.xlsx'} and {len(units)} returns in {inbox}")


if __name__ == "__main__":
    main()
