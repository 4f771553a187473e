"""The consolidated workbook: what the leaders print (汇总表), the statistics, the lists.

Formatting is checked by reopening the file with openpyxl (merges, number formats, print
setup), charts by the parts of the .xlsx package, and "opens without a repair prompt" by
LibreOffice converting it to PDF (skipped, with the reason, where LibreOffice is not installed).
"""

from __future__ import annotations

import csv
import json
import warnings
import zipfile

import openpyxl
import pandas as pd
import pytest

from pipeline.errors import ERROR, WARNING, Issue
from pipeline.report.render import RenderError, find_soffice, pdf_pages, pdf_to_png, to_pdf
from pipeline.report.statistics import unit_table
from pipeline.report.styles import STATUS_COLOURS
from pipeline.report.workbook import issue_action, lagging_items, sorted_issues, text_lines

from .conftest import TASK_HEADER, Workspace, invoke, make_return

FOOTNOTE = "注：1-9 项为省级重点民生实事，10-15 项为市级重点民生实事，16-29 项为区级重点民生实事"


@pytest.fixture(scope="module")
def example_book(tmp_path_factory):
    """The shipped example's workbook, written once for the module."""
    from .conftest import copy_example

    target = copy_example(tmp_path_factory.mktemp("example"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xlsxwriter warns about what Excel would "repair"
        result = invoke(target / "config.toml", "run", "--json")
    assert result.exit_code == 0, result.output
    return target / "outbox" / "2023年省市区重点民生实事项目完成情况汇总表（1-5月）.xlsx"


def fill(cell) -> str:
    return (cell.fill.fgColor.rgb or "")[-6:].upper()


def find(ws, text):
    return next(c for row in ws.iter_rows() for c in row if c.value == text)


def merged_over(ws, cell) -> str | None:
    return next((str(r) for r in ws.merged_cells.ranges if cell.coordinate in r), None)


# -- 汇总表 ---------------------------------------------------------------------------------------


def test_summary_sheets_in_reading_order(example_book):
    book = openpyxl.load_workbook(example_book)
    assert book.sheetnames == ["汇总表", "明细", "问题清单", "未报送", "滞后事项", "统计"]
    assert book.active.title == "汇总表"


def test_summary_print_setup(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    assert ws.page_setup.orientation == "landscape"
    assert int(ws.page_setup.paperSize) == 9  # A4
    assert ws.sheet_properties.pageSetUpPr.fitToPage is True
    assert ws.page_setup.fitToWidth in (None, 1)  # absent means 1 page wide
    assert ws.page_setup.fitToHeight == 0  # as many pages down as needed
    assert ws.print_title_rows == "$4:$4"  # the header row on every printed page
    assert ws.freeze_panes == "A5"
    assert ws.oddFooter.center.text == "— &P —"
    assert ws.print_options.gridLines in (None, False)
    header = [c.value for c in ws[4]]
    assert header[:5] == ["序号", "项目名称及指标任务", None, "牵头领导", "牵头责任单位"]
    assert "完成情况" in header and "备注" in header and "完成率" in header and "状态" in header


def test_summary_title_period_footnote_and_fonts(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    assert ws["A1"].value == "2023年省市区重点民生实事项目完成情况汇总表"
    assert ws["A1"].font.name == "方正小标宋简体"
    assert ws["A2"].value == "（1月至5月份完成情况）"
    assert find(ws, "上线服务事项700项").font.name == "仿宋_GB2312"
    assert find(ws, FOOTNOTE).row > find(ws, "新建长动菜市场，提质改造梅溪桥片区农集贸市场").row
    bands = [c.value for c in ws["A"] if isinstance(c.value, str) and "重点民生实事（" in c.value]
    assert bands == ["一、省级重点民生实事（9项）", "二、市级重点民生实事（6项）", "三、区级重点民生实事（14项）"]


def test_summary_merges_projects_over_their_indicators(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    first, last = find(ws, "上线服务事项700项").row, find(ws, "用户数突破29.31万").row
    assert last == first + 3
    for col in "ABDE":  # 序号, 项目名称, 牵头领导, 牵头责任单位
        assert f"{col}{first}:{col}{last}" in {str(r) for r in ws.merged_cells.ranges}
    assert ws[f"B{first}"].value == "建设“湘易办”超级服务端"
    # Project 8 has two lead leaders and units: each stays on its own indicator.
    a, b = (
        find(ws, "开工改造110个城镇老旧小区（我区实际开工改造228个城镇老旧小区）").row,
        find(ws, "完成5985户城镇住宅小区居民“一户一表”改造接收").row,
    )
    assert (ws[f"D{a}"].value, ws[f"D{b}"].value) == ("李熊", "亓磊")
    assert (ws[f"E{a}"].value, ws[f"E{b}"].value) == ("区住建局", "区发改局")
    # A one-indicator project named as its indicator: one cell over both columns, as in the reference.
    single = find(ws, "支持既有住宅加装电梯138台")
    assert merged_over(ws, single) == f"B{single.row}:C{single.row}"


def test_summary_numbers_rates_and_traffic_light(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    header = {c.value: c.column_letter for c in ws[4] if c.value}
    row = find(ws, "城镇新增就业8150人").row
    rate = ws[f"{header['完成率']}{row}"]
    assert rate.value == pytest.approx(3500 / 8150) and rate.number_format == "0.00%"
    assert ws[f"{header['目标值']}{row}"].number_format == "#,##0"
    status = ws[f"{header['状态']}{row}"]
    assert status.value == "正常" and fill(status) == STATUS_COLOURS["正常"][1][1:]
    severe = ws[f"{header['状态']}{find(ws, '集成可应用的电子证照种类超过80类').row}"]
    assert severe.value == "严重滞后" and fill(severe) == STATUS_COLOURS["严重滞后"][1][1:]
    missing = ws[f"{header['状态']}{find(ws, '其中创业培训300人次').row}"]
    assert missing.value == "未报送" and fill(missing) == STATUS_COLOURS["未报送"][1][1:]


def test_summary_legend_is_coloured_cells(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    legend = {c.value: fill(c) for c in ws[3] if c.value in STATUS_COLOURS}
    assert legend == {status: colours[1][1:] for status, colours in STATUS_COLOURS.items()}
    assert any("序时进度" in str(c.value) for c in ws[3])
    assert any("严重滞后：低于序时进度20个百分点以上" in str(c.value) for c in ws[3])


def test_summary_severe_margin_and_fonts_come_from_config(workspace):
    text = workspace.config.read_text(encoding="utf-8").replace(
        "[paths]", 'severe_lag_points = 10\ntitle_font = "黑体"\nbody_font = "楷体_GB2312"\n\n[paths]'
    )
    workspace.config.write_text(text, encoding="utf-8")
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 2173, "", "", "", ""]])
    invoke(workspace.config, "run")
    ws = openpyxl.load_workbook(workspace.workbook())["汇总表"]
    assert ws["A1"].font.name == "黑体"
    assert find(ws, "城镇新增就业8150人").font.name == "楷体_GB2312"
    assert any("低于序时进度10个百分点以上" in str(c.value) for c in ws[3])
    # 2173/8150 = 26.7 %: 15 points below 41.67 % — 严重滞后 with a 10-point margin (滞后 with 20).
    assert {r["指标编号"]: r["状态"] for r in workspace.detail()}["1-1"] == "严重滞后"


def test_row_heights_grow_with_long_narratives(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    short = find(ws, "上线服务事项700项").row
    long = find(ws, "建设铁西片区居民职业技能培训服务中心").row
    assert ws.row_dimensions[long].height > 3 * ws.row_dimensions[short].height
    assert text_lines("已全部完成。", 44) == 1
    assert text_lines("一" * 60, 44) == 3
    assert text_lines("a\nb", 44) == 2


def test_projects_are_not_split_over_printed_pages(example_book):
    ws = openpyxl.load_workbook(example_book)["汇总表"]
    breaks = [brk.id for brk in ws.row_breaks.brk]
    assert breaks
    for brk in breaks:  # a break (after 1-based row brk) never falls inside a merged project
        assert not any(r.min_row <= brk < r.max_row for r in ws.merged_cells.ranges), brk


# -- 明细, 问题清单, 未报送, 滞后事项 ----------------------------------------------------------------------


def test_detail_number_formats(example_book):
    ws = openpyxl.load_workbook(example_book)["明细"]
    header = {c.value: c.column_letter for c in ws[1]}
    row = next(r for r in range(2, ws.max_row + 1) if ws[f"A{r}"].value == "9-3")
    assert ws[f"{header['目标值']}{row}"].number_format == "#,##0"  # not "#,##0.##": Excel shows "108000."
    assert ws[f"{header['完成率']}{row}"].number_format == "0.00%"
    assert ws[f"{header['序时进度']}{row}"].number_format == "0.00%"
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref


def test_lagging_sheet_lists_only_lagging_items_worst_first(example_book):
    rows = list(openpyxl.load_workbook(example_book)["滞后事项"].iter_rows(values_only=True))
    header, items = rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert header == ("序号", "指标编号", "指标任务", "填报单位", "牵头领导", "目标值", "已完成", "完成率",
                      "序时进度", "落后序时进度", "状态", "完成情况")  # fmt: skip
    assert {item["状态"] for item in items} <= {"滞后", "严重滞后"}
    behind = [item["落后序时进度"] for item in items]
    assert behind == sorted(behind, reverse=True)
    first = items[0]
    assert (first["指标编号"], first["填报单位"], first["牵头领导"]) == ("5-1", "区民政局", "张哲君")
    assert first["落后序时进度"] == pytest.approx(100 * 5 / 12)
    assert first["完成情况"] == "正在制定方案和评估工作。"


def test_lagging_items_order():
    master = pd.DataFrame({"status": ["滞后", "正常", "严重滞后", "滞后"], "gap": [-0.1, 0.2, -0.3, -0.1],
                           "order": [3, 1, 2, 0], "code": ["a", "b", "c", "d"]})  # fmt: skip
    assert lagging_items(master)["code"].tolist() == ["c", "d", "a"]


def test_issues_grouped_by_unit_errors_first_with_what_to_do():
    issues = [
        Issue("b.xlsx", "区残联", "Sheet1!E3", WARNING, "rate-mismatch", "完成率不一致"),
        Issue("a.xlsx", "区人社局", "", WARNING, "superseded", "已被取代"),
        Issue("x.xlsx", "", "", ERROR, "unknown-unit", "无法确定填报单位"),
        Issue("c.xlsx", "区人社局", "Sheet1!D2", ERROR, "not-a-number", "不是数字"),
        Issue("b.xlsx", "区残联", "Sheet1!D5", ERROR, "not-a-number", "不是数字"),
    ]
    ordered = sorted_issues(issues, ["区人社局", "区残联"])
    assert [(i.unit, i.level, i.file) for i in ordered] == [
        ("区人社局", ERROR, "c.xlsx"), ("区人社局", WARNING, "a.xlsx"),
        ("区残联", ERROR, "b.xlsx"), ("区残联", WARNING, "b.xlsx"),
        ("", ERROR, "x.xlsx"),
    ]  # fmt: skip
    assert issue_action(issues[1]).startswith("无需处理")
    assert issue_action(issues[3]).startswith("未采用")
    assert issue_action(issues[0]).startswith("已采用")


def test_issues_and_missing_sheets(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, "见附件", "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
    )
    invoke(workspace.config, "run")
    issues = workspace.issues()
    assert issues and all(i["处理"] for i in issues)
    assert issues[0]["级别"] == "错误"
    missing = workspace.sheet_rows("未报送")
    assert missing[0] == ("序号", "单位", "指标数", "涉及指标", "牵头领导")
    assert missing[1][1:3] == ("区残联", 1) and missing[1][3] == "2-1　康复救助残疾儿童181人"


# -- 统计 -------------------------------------------------------------------------------------------


def _master(rows):
    columns = ["unit", "code", "kind", "target", "rate", "status", "returned"]
    return pd.DataFrame([dict(zip(columns, row, strict=True)) for row in rows])


def test_unit_ranking_rule():
    master = _master([
        ("甲", "1", "数量", 100, 1.5, "已完成", True),   # capped at 100 %
        ("甲", "2", "数量", 100, 0.2, "严重滞后", True),  # (1 + 0.2) / 2 = 60 %
        ("乙", "3", "数量", 100, 0.6, "正常", True),      # 60 %: ties with 甲
        ("丙", "4", "数量", 100, 0.9, "正常", True),
        ("丙", "5", "数量", 100, None, "未报送", True),   # left blank: counts as 0 → 45 %
        ("丁", "6", "节点", None, None, "推进中", True),  # only 节点: not ranked
        ("戊", "7", "数量", 100, None, "未报送", False),  # no return: not ranked
    ])  # fmt: skip
    table = unit_table(master, ["戊"])
    ranks = dict(zip(table["单位"], table["排名"], strict=True))
    assert ranks["甲"] == ranks["乙"] == 1 and ranks["丙"] == 3
    assert pd.isna(ranks["丁"]) and pd.isna(ranks["戊"])
    assert table["单位"].tolist()[:3] == ["甲", "乙", "丙"]
    row = table.set_index("单位").loc["戊"]
    assert row["是否报送"] == "否" and row["未报送指标"] == 1
    assert table.set_index("单位").loc["甲", "平均完成率"] == pytest.approx(0.6)


def test_statistics_sheet_tables_and_charts(example_book):
    rows = list(openpyxl.load_workbook(example_book)["统计"].iter_rows(values_only=True))
    flat = [v for row in rows for v in row if v is not None]
    assert "一、各级别指标状态（个）" in flat and "二、各级别指标状态占比" in flat
    assert "三、各单位完成情况与排名" in flat and "四、图表" in flat
    counts = next(i for i, row in enumerate(rows) if row[0] == "级别")
    header = rows[counts]
    total = next(row for row in rows[counts:] if row[0] == "合计")
    assert total[header.index("合计")] == 45
    assert sum(total[1 : header.index("合计")]) == 45
    shares = next(i for i, row in enumerate(rows) if i > counts and row[0] == "级别")
    share_total = next(row for row in rows[shares:] if row[0] == "合计")
    assert share_total[header.index("合计")] == pytest.approx(1.0)
    units = next(i for i, row in enumerate(rows) if row[:2] == ("排名", "单位"))
    assert rows[units + 1][:2] == (1, "区医保局")
    assert any(isinstance(v, str) and v.startswith("排名规则") for v in flat)
    with zipfile.ZipFile(example_book) as package:
        charts = sorted(n for n in package.namelist() if n.startswith("xl/charts/chart"))
        xml = "".join(package.read(n).decode("utf-8") for n in charts)
    assert len(charts) == 2
    assert "<c:barChart>" in xml and "<c:lineChart>" in xml
    assert "序时进度" in xml and "各级别指标状态" in xml


# -- 序时进度 from the task list's plan ---------------------------------------------------------------


def test_planned_schedule_end_to_end(tmp_path):
    """Planned cumulative shares by quarter or month replace M/12 for their indicators."""
    ws = Workspace(tmp_path / "ws", [])
    header = [*TASK_HEADER, "一季度序时进度", "二季度序时进度", "5月计划", "6月计划"]
    rows = [
        ["1-1", 1, "省级", "促进就业", "城镇新增就业8150人", 8150, "人", "数量", "亓磊", "区人社局", "", "20%", "50%", "", ""],
        ["1-2", 1, "省级", "促进就业", "职业技能培训1200人次", 1200, "人次", "数量", "亓磊", "区人社局", "", "", "", "60%", "70%"],
        ["1-3", 1, "省级", "促进就业", "创业培训300人次", 300, "人次", "数量", "亓磊", "区人社局", "", "", "", "", ""],
        ["1-4", 1, "省级", "促进就业", "公益岗位100个", 100, "个", "数量", "亓磊", "区人社局", "", "", "", "", "0.8"],
    ]  # fmt: skip
    with open(ws.root / "tasks.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    make_return(ws.inbox / "区人社局.xlsx", [["1-1", "", 8150, 2445, "", "", "", ""],   # 30 %
                                            ["1-2", "", 1200, 600, "", "", "", ""],     # 50 %
                                            ["1-3", "", 300, 120, "", "", "", ""],      # 40 %
                                            ["1-4", "", 100, 1, "", "", "", ""]])  # 1 %  # fmt: skip
    result = invoke(ws.config, "run", "--json")
    assert result.exit_code == 0, result.output
    detail = {row["指标编号"]: row for row in ws.detail()}
    # May: the latest milestone due is Q1 (20 %): 30 % is ahead of it.
    assert detail["1-1"]["序时进度"] == pytest.approx(0.2) and detail["1-1"]["状态"] == "正常"
    # A milestone for May itself applies in May: 50 % < 60 %.
    assert detail["1-2"]["序时进度"] == pytest.approx(0.6) and detail["1-2"]["状态"] == "滞后"
    # No plan: M/12.
    assert detail["1-3"]["序时进度"] == pytest.approx(5 / 12) and detail["1-3"]["状态"] == "滞后"
    # The only milestone is in June: nothing is due yet in May, so nothing lags.
    assert detail["1-4"]["序时进度"] == 0 and detail["1-4"]["状态"] == "正常"
    summary = openpyxl.load_workbook(ws.workbook())["汇总表"]
    header_row = [c.value for c in summary[4]]
    assert "序时进度" in header_row  # shown when indicators have their own schedule
    lagging = ws.sheet_rows("滞后事项")
    assert [row[1] for row in lagging[1:]] == ["1-2", "1-3"]
    assert lagging[1][8] == pytest.approx(0.6)


def test_planned_schedule_in_a_later_month_uses_the_next_milestone(tmp_path):
    ws = Workspace(tmp_path / "ws", [], period="2023-07")
    header = [*TASK_HEADER, "一季度", "二季度", "三季度", "四季度"]
    rows = [["1-1", 1, "省级", "促进就业", "城镇新增就业8150人", 8150, "人", "数量", "亓磊", "区人社局", "",
             0.1, 0.45, 0.75, 1]]  # fmt: skip
    with open(ws.root / "tasks.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    make_return(ws.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])  # 42.9 %
    invoke(ws.config, "run")
    row = ws.detail()[0]
    assert row["序时进度"] == pytest.approx(0.45) and row["状态"] == "滞后"  # July: Q2 is the latest due


# -- opens cleanly: LibreOffice renders it -------------------------------------------------------------


def test_libreoffice_renders_the_workbook(example_book, tmp_path):
    if find_soffice() is None:
        pytest.skip("LibreOffice (soffice) 未安装：apt-get install -y --no-install-recommends libreoffice-calc")
    try:
        pdf = to_pdf(example_book, tmp_path / "pdf")
    except RenderError as exc:
        pytest.fail(str(exc))
    assert pdf_pages(pdf) >= 5  # 汇总表 alone takes several A4 pages
    try:
        png = pdf_to_png(pdf, tmp_path / "page1.png", width=800)
    except RenderError as exc:
        if "pdftoppm" in str(exc):
            return  # poppler-utils is optional here
        raise
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detail_has_a_row_per_task_and_the_summary_counts_lagging(example_book):
    book = openpyxl.load_workbook(example_book, read_only=True)
    try:
        assert book["明细"].max_row == 46
    finally:
        book.close()
    last_run = json.loads((example_book.parent.parent / "state" / "last_run.json").read_text(encoding="utf-8"))
    assert last_run["lagging_count"] == 12


def test_city_level_summary_has_unit_and_rank_columns(tmp_path):
    """Several units share an indicator: a row per unit under one merged indicator cell, ranked."""
    counties = [("岳阳楼区", 8150), ("云溪区", 3000), ("君山区", 2500)]
    tasks = [["1-1", 1, "省级", "促进就业", "城镇新增就业", target, "人", "数量", "亓磊", "市人社局", county]
             for county, target in counties]  # fmt: skip
    ws = Workspace(tmp_path / "ws", tasks)
    for (county, target), share in zip(counties, (0.3, 0.6, 0.45), strict=True):
        make_return(ws.inbox / f"{county}.xlsx", [["1-1", "", target, round(target * share), "", "", "", ""]])
    assert invoke(ws.config, "run").exit_code == 0
    sheet = openpyxl.load_workbook(ws.workbook())["汇总表"]
    header = {c.value: c.column_letter for c in sheet[4] if c.value}
    assert "填报单位" in header and "排名" in header
    rows = {sheet[f"{header['填报单位']}{r}"].value: r for r in range(5, sheet.max_row + 1)}
    ranks = {county: sheet[f"{header['排名']}{rows[county]}"].value for county, _ in counties}
    assert ranks == {"岳阳楼区": "3/3", "云溪区": "1/3", "君山区": "2/3"}
    first, last = min(rows[c] for c, _ in counties), max(rows[c] for c, _ in counties)
    assert merged_over(sheet, sheet[f"B{first}"]) == f"B{first}:B{last}"  # the project
    assert merged_over(sheet, sheet[f"C{first}"]) == f"C{first}:C{last}"  # the indicator, over its units
    assert sheet[f"C{first}"].value == "城镇新增就业"


def test_chart_has_one_bar_per_shared_indicator():
    import pandas as pd

    from pipeline.report.statistics import chart_points

    master = pd.DataFrame({
        "code": ["1-1", "1-1", "1-1", "2-1"], "unit": ["a", "b", "c", "a"],
        "rate": [0.9, 0.3, 0.6, 1.2], "schedule": [5 / 12] * 4, "status": ["正常"] * 4,
    })  # fmt: skip
    points = chart_points(master, 20)
    assert list(points["label"]) == ["1-1（3个单位平均）", "2-1（1个单位平均）"]
    assert points["rate"].tolist() == pytest.approx([0.6, 1.2])
    assert list(points["status"]) == ["正常", "已完成"]
