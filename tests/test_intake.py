"""Reading returns as people really send them: one test per form and per mess."""

from __future__ import annotations

import csv
import json
import os
import zipfile

import openpyxl
import pytest
import xlsxwriter
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.intake.narrative import extract_facts, parse_amount, parse_rank
from pipeline.text import ParsedNumber, parse_number, parse_rate

from .conftest import TEMPLATE_HEADER, make_return


def run(ws, *args):
    result = CliRunner().invoke(cli, ["run", "--json", "--config", str(ws.config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result, json.loads(result.output.strip().splitlines()[-1])


def values(ws) -> dict:
    return {(row["指标编号"], row["填报单位"]): row["已完成"] for row in ws.detail()}


# -- numbers as people type them ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (3500, 3500), ("3500", 3500), ("3,500", 3500), ("３５００", 3500), ("3500人", 3500),
        ("1.42万", 14200), ("1.42万人", 14200), (" 3500 ", 3500), ("3500.0", 3500), ("43%", 0.43),
        ("", None), (None, None), ("—", None), ("/", None), ("无", None), ("－", None),
    ],
)  # fmt: skip
def test_number_forms(typed, expected):
    parsed = parse_number(typed)
    assert parsed.ok
    assert parsed.value == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize("typed", ["见附件", "约3500", "3500-4000", "三千五", "12/12/2023"])
def test_not_numbers(typed):
    assert not parse_number(typed).ok


@pytest.mark.parametrize(("typed", "expected"), [("43%", 0.43), (43, 0.43), (0.43, 0.43), ("105.2%", 1.052), (1.052, 1.052)])
def test_rate_forms(typed, expected):
    assert parse_rate(typed).value == pytest.approx(expected)


def test_every_number_form_end_to_end(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, "３５００", "", "", "", ""], ["1-2", "", 1200, "1,200人次", "", "", "", ""]],
    )
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, "—", "", "", "已完成0.0108万人", ""]])
    _, summary = run(workspace)
    got = values(workspace)
    assert got[("1-1", "区人社局")] == 3500
    assert got[("1-2", "区人社局")] == 1200
    assert got[("2-1", "区残联")] == 108  # "—" is not reported: the narrative's number is taken
    assert summary["rejected"] == []


# -- headers --------------------------------------------------------------------------------------


def test_header_not_on_first_row_and_columns_reordered(workspace):
    header = ["备注", "完成情况", "已完成（人）", "目标值", "指标\n编号"]
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["", "进展顺利", 3500, 8150, "1-1"], ["", "", 615, 1200, "1-2"]],
        header=header,
        title_rows=[["2023年重点民生实事完成情况"], [], ["填报单位：区人社局", "", "", "填报日期：6月2日"]],
    )
    _, summary = run(workspace)
    assert values(workspace)[("1-1", "区人社局")] == 3500
    assert values(workspace)[("1-2", "区人社局")] == 615
    assert summary["accepted"] == ["区人社局.xlsx"]


def test_two_row_header_with_merged_group(workspace):
    path = workspace.inbox / "区人社局.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.merge_range(0, 0, 1, 0, "指标编号")
    sheet.merge_range(0, 1, 1, 1, "指标任务")
    sheet.merge_range(0, 2, 0, 3, "完成情况")
    sheet.write(1, 2, "已完成")
    sheet.write(1, 3, "完成率")
    sheet.write_row(2, 0, ["1-1", "城镇新增就业", 3500, 0.43])
    book.close()
    run(workspace)
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["已完成"] == 3500
    assert row["上报完成率"] == pytest.approx(0.43)


def test_alias_from_config(workspace):
    text = workspace.config.read_text(encoding="utf-8") + '\n[aliases]\ncompleted = ["截至目前完成量"]\n'
    workspace.config.write_text(text, encoding="utf-8")
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", 3500]], header=["指标编号", "截至目前完成量"])
    run(workspace)
    assert values(workspace)[("1-1", "区人社局")] == 3500


def test_duplicated_header_is_a_file_error(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", 3500, 3400]], header=["指标编号", "已完成", "累计完成"])
    result, summary = run(workspace)
    assert summary["rejected"] == ["区人社局.xlsx"]
    issue = workspace.issues()[0]
    assert "表头重复" in issue["问题"] and "B1" in issue["问题"] and "C1" in issue["问题"]


def test_no_header_is_rejected_with_advice(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["a", "b"]], header=["随便", "什么"])
    _, summary = run(workspace)
    assert summary["rejected"] == ["区人社局.xlsx"]
    assert "找不到表头" in workspace.issues()[0]["问题"]


# -- the unit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["岳阳楼区人社局（盖章）.xlsx", "区人社局2023年5月报表.xlsx", "关于报送区人社局5月进度的函.xlsx"])
def test_unit_from_file_name_with_prefixes_and_suffixes(workspace, name):
    make_return(workspace.inbox / name, [["1-1", "", 8150, 3500, "", "", "", ""]])
    _, summary = run(workspace)
    assert summary["accepted"] == [name]
    assert values(workspace)[("1-1", "区人社局")] == 3500


def test_unit_cell_wins_over_file_name(workspace):
    make_return(
        workspace.inbox / "新建 Microsoft Excel 工作表.xlsx",
        [["2-1", "", 181, 108, "", "", "", ""]],
        title_rows=[["填报单位（盖章）：", "区残联"]],
    )
    _, summary = run(workspace)
    assert values(workspace)[("2-1", "区残联")] == 108


def test_unit_column(workspace):
    make_return(
        workspace.inbox / "汇总.xlsx",
        [["区人社局", "1-1", 3500], ["区残联", "2-1", 108]],
        header=["填报单位", "指标编号", "已完成"],
    )
    run(workspace)
    got = values(workspace)
    assert got[("1-1", "区人社局")] == 3500 and got[("2-1", "区残联")] == 108


def test_unknown_unit_is_rejected_with_how_to_name_it(workspace):
    make_return(workspace.inbox / "新建 Microsoft Excel 工作表.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    _, summary = run(workspace)
    assert summary["rejected"] == ["新建 Microsoft Excel 工作表.xlsx"]
    assert "请把文件命名为单位名称" in workspace.issues()[0]["问题"]


# -- formats --------------------------------------------------------------------------------------


def test_xls_file(workspace):
    xlwt = pytest.importorskip("xlwt")
    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    for col, name in enumerate(["指标编号", "已完成", "完成情况"]):
        sheet.write(1, col, name)
    sheet.write(0, 0, "填报单位：区残联")
    sheet.write(2, 0, "2-1")
    sheet.write(2, 1, 108)
    sheet.write(2, 2, "进展顺利")
    book.save(str(workspace.inbox / "残联.xls"))
    _, summary = run(workspace)
    assert summary["accepted"] == ["残联.xls"]
    assert values(workspace)[("2-1", "区残联")] == 108


def test_ods_file(workspace):
    pytest.importorskip("odf")
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow
    from odf.text import P

    doc = OpenDocumentSpreadsheet()
    table = Table(name="Sheet1")
    for row_values in (["指标编号", "已完成"], ["2-1", 108]):
        row = TableRow()
        for value in row_values:
            if isinstance(value, int):
                cell = TableCell(valuetype="float", value=value)
            else:
                cell = TableCell(valuetype="string")
            cell.addElement(P(text=str(value)))
            row.addElement(cell)
        table.addElement(row)
    doc.spreadsheet.addElement(table)
    doc.save(str(workspace.inbox / "区残联.ods"))
    _, summary = run(workspace)
    assert summary["accepted"] == ["区残联.ods"]
    assert values(workspace)[("2-1", "区残联")] == 108


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk"])
def test_csv_encodings(workspace, encoding):
    path = workspace.inbox / "区残联.csv"
    with open(path, "w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["指标编号", "指标任务", "已完成", "完成情况"])
        writer.writerow(["2-1", "康复救助残疾儿童181人", "108", "已完成108人，完成率59.7%"])
    _, summary = run(workspace)
    assert summary["accepted"] == ["区残联.csv"]
    row = next(r for r in workspace.detail() if r["指标编号"] == "2-1")
    assert row["已完成"] == 108 and row["完成情况"] == "已完成108人，完成率59.7%"


def test_csv_under_an_xlsx_name_is_read(workspace):
    (workspace.inbox / "区残联.xlsx").write_text("指标编号,已完成\n2-1,108\n", encoding="utf-8")
    _, summary = run(workspace)
    assert values(workspace)[("2-1", "区残联")] == 108


def test_xlsx_under_an_xls_name_is_read(workspace):
    # calamine picks its reader by the name when given a path: the worker hands it the bytes.
    make_return(workspace.inbox / "区残联.xls", [["2-1", "", 181, 108, "", "", "", ""]])
    _, summary = run(workspace)
    assert summary["accepted"] == ["区残联.xls"]
    assert values(workspace)[("2-1", "区残联")] == 108


def test_html_table_saved_as_xls(workspace):
    html = (
        "<html><body><table><tr><td colspan=2>填报单位：区残联</td></tr>"
        "<tr><th>指标编号</th><th>已完成</th></tr><tr><td>2-1</td><td>108</td></tr></table></body></html>"
    )
    (workspace.inbox / "export.xls").write_text(html, encoding="utf-8")
    _, summary = run(workspace)
    assert summary["accepted"] == ["export.xls"]
    assert values(workspace)[("2-1", "区残联")] == 108


def test_lock_hidden_and_other_files_are_skipped_not_errors(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 3500, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
    )
    (workspace.inbox / "~$区人社局.xlsx").write_bytes(b"lock")
    (workspace.inbox / ".区残联.xlsx").write_bytes(b"hidden")
    (workspace.inbox / "说明.pdf").write_bytes(b"%PDF-1.4")
    result, summary = run(workspace)
    assert result.exit_code == 0
    assert sorted(summary["skipped"]) == sorted(["~$区人社局.xlsx", ".区残联.xlsx", "说明.pdf"])
    assert workspace.issues() == []


# -- sheets and rows ------------------------------------------------------------------------------


def test_instruction_sheet_first_and_hidden_sheet_skipped(workspace):
    path = workspace.inbox / "区人社局.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "填报说明"
    book.active.append(["请在“数据”表中填报，已完成填累计数。"])
    hidden = book.create_sheet("旧数据")
    hidden.append(["指标编号", "已完成"])
    hidden.append(["1-1", 1])
    hidden.sheet_state = "hidden"
    data = book.create_sheet("数据")
    data.append(["指标编号", "已完成"])
    data.append(["1-1", 3500])
    book.save(path)
    _, summary = run(workspace)
    assert values(workspace)[("1-1", "区人社局")] == 3500
    logs = list((workspace.state / "logs").glob("run-*.log"))
    assert "读取了工作表“数据”" in logs[0].read_text(encoding="utf-8")


def test_hidden_row_with_values_is_warned(workspace):
    path = make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 3500, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
    )
    book = openpyxl.load_workbook(path)
    book.active.row_dimensions[3].hidden = True
    book.save(path)
    run(workspace)
    warnings = [i for i in workspace.issues() if "隐藏行" in i["问题"]]
    assert len(warnings) == 1 and warnings[0]["位置"] == "Sheet1!A3"


def test_notes_blank_rows_and_subtotals_are_not_data(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 3500, "", "", "", ""], [], ["1-2", "", 1200, 615, "", "", "", ""],
         ["合计", "", "", 4000, "", "", "", ""]],
        notes=["填报人：张三  联系电话：0730-8888888", "注：已完成填写累计数"],
    )  # fmt: skip
    result, summary = run(workspace)
    assert summary["rejected"] == [] and summary["partial"] == []
    issues = workspace.issues()
    assert [i["位置"] for i in issues] == ["Sheet1!D5"]
    assert "合计行为 4000" in issues[0]["问题"] and "4115" in issues[0]["问题"]


def test_error_cell_is_reported_not_read_as_blank(workspace):
    path = make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    _patch_cell(path, "D2", '<c r="D2" t="e"><f>1/0</f><v>#DIV/0!</v></c>')
    run(workspace)
    issue = workspace.issues()[0]
    assert issue["位置"] == "Sheet1!D2" and "#DIV/0!" in issue["问题"] and issue["级别"] == "错误"


def test_formula_without_cached_value_is_recomputed(workspace):
    path = make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    _patch_cell(path, "D2", '<c r="D2"><f>C2*0.4+240</f></c>')
    run(workspace)
    assert values(workspace)[("1-1", "区人社局")] == pytest.approx(8150 * 0.4 + 240)


def test_formula_that_cannot_be_recomputed_is_an_error(workspace):
    path = make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    _patch_cell(path, "D2", '<c r="D2"><f>VLOOKUP(A2,[1]Sheet1!A:B,2,0)</f></c>')
    run(workspace)
    issue = workspace.issues()[0]
    assert issue["位置"] == "Sheet1!D2" and "没有保存计算结果" in issue["问题"]


def _patch_cell(path, ref: str, xml: str) -> None:
    """Replace one cell's XML in a saved workbook (what tools that do not calculate write)."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    start = sheet.index(f'<c r="{ref}"')
    end = sheet.index("</c>", start) + 4
    parts["xl/worksheets/sheet1.xml"] = (sheet[:start] + xml + sheet[end:]).encode()
    os.remove(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


# -- row-level errors ---------------------------------------------------------------------------


def test_each_row_level_error_rejects_only_its_row(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [
            ["1-1", "", 8150, "见附件", "", "", "", ""],
            ["1-2", "", 1200, -5, "", "", "", ""],
            ["9-9", "", 10, 5, "", "", "", ""],
            ["2-1", "", 181, 100, "", "", "", ""],
            ["1-1", "", 8150, 3000, "", "", "", ""],
        ],
    )
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, 108, "abc", "", "", ""]])
    _, summary = run(workspace)
    messages = {i["位置"]: i["问题"] for i in workspace.issues() if i["级别"] == "错误"}
    assert messages == {
        "Sheet1!D2": "D2：已完成“见附件”不是数字，请填写累计完成数（只填数字，如 3500）",
        "Sheet1!D3": "D3：已完成为负数（-5），请填写累计完成数",
        "Sheet1!A4": "A4：指标编号“9-9”不在任务清单中，请核对指标编号（见下发的模板）",
        "Sheet1!A5": "A5：指标“2-1”不是区人社局的任务，请删除该行，或由该指标的填报单位报送",
        "Sheet1!A6": "A6：指标“1-1”在本文件中重复填报，已采用第一行，请删除重复的行",
        "Sheet1!E2": "E2：完成率“abc”不是数字，请填写百分数（如 43%），或留空由系统计算",
    }
    assert summary["rejected"] == ["区人社局.xlsx", "区残联.xlsx"]
    assert summary["missing_units"] == ["区人社局", "区残联", "区文旅广体局"]


def test_an_infinite_number_cell_is_named_not_a_crash(workspace):
    """A crafted file's "1e999" reads as infinity: in 已完成 it is a number to fix, in a column the
    run does not use it changes nothing (it rejected the whole file as a program error)."""
    path = make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 777777, "", "", "", "", 888888], ["1-2", "", 1200, 615, "", "", "", "", 888888]],
        header=[*TEMPLATE_HEADER, "其他"],
    )
    with zipfile.ZipFile(path) as source:
        parts = [(item, source.read(item.filename)) for item in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item, data in parts:
            if item.filename.startswith("xl/worksheets/"):
                data = data.replace(b"<v>777777</v>", b"<v>1e999</v>").replace(b"<v>888888</v>", b"<v>-1e999</v>")
            target.writestr(item, data)
    _, summary = run(workspace)
    messages = {i["位置"]: i["问题"] for i in workspace.issues() if i["级别"] == "错误"}
    assert messages == {"Sheet1!D2": "D2：已完成“∞”不是数字，请填写累计完成数（只填数字，如 3500）"}
    assert summary["partial"] == ["区人社局.xlsx"]
    assert next(r for r in workspace.detail() if r["指标编号"] == "1-2")["已完成"] == 615


def test_hundreds_of_digits_are_not_a_number_and_do_not_stop_the_run(workspace):
    """400 digits read as infinity (the workbook cannot hold it: the whole run stopped), and 5,000
    digits are more than int() takes (the file was rejected as a program error)."""
    digits = "9" * 400
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, digits, "", "", "", ""], ["1-2", "", 1200, "", "", "", f"已完成{digits}人次，完成率{digits}%", ""]],
    )
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, 100, "", "第" + "9" * 5000 + "名", "", ""]])
    result, summary = run(workspace)
    assert result.exit_code == 1 and workspace.workbook().exists()
    errors = {i["位置"]: i["问题"] for i in workspace.issues() if i["级别"] == "错误"}
    assert list(errors) == ["Sheet1!D2"] and errors["Sheet1!D2"].startswith("D2：已完成“999")
    assert errors["Sheet1!D2"].endswith("”不是数字，请填写累计完成数（只填数字，如 3500）")
    detail = {r["指标编号"]: r for r in workspace.detail()}
    assert detail["1-2"]["已完成"] is None and detail["2-1"]["已完成"] == 100
    assert summary["accepted"] == ["区人社局.xlsx", "区残联.xlsx"]


def test_number_readers_refuse_what_no_float_or_rank_can_be():
    assert parse_number("9" * 400) == ParsedNumber(None, False)
    assert parse_number("1e5") == ParsedNumber(None, False)  # as before: not how people write
    assert parse_rate("9" * 400 + "%") == ParsedNumber(None, False)
    assert parse_rank("第" + "9" * 5000 + "名") == (None, None)
    assert parse_rank("在12个县市区中排名第" + "9" * 5000) == (None, None)
    assert parse_rank("第3名") == (3, None)
    facts = extract_facts("已完成" + "9" * 400 + "人", target=100.0, measure="人", indicator="培训")
    assert facts.completed is None and facts.completed_fragment is None
    assert parse_amount("9" * 400 + "人") is None


def test_target_differing_from_task_list_is_a_warning(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 9000, 3500, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
    )
    run(workspace)
    [issue] = workspace.issues()
    assert issue["级别"] == "警告" and "9000" in issue["问题"] and "8150" in issue["问题"]
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["目标值"] == 8150



def test_spreadsheetml_2003_saved_as_xls(workspace):
    xml = (
        '<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet" '
        'xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet"><Worksheet ss:Name="Sheet1"><Table>'
        '<Row><Cell><Data ss:Type="String">指标编号</Data></Cell><Cell><Data ss:Type="String">已完成</Data></Cell></Row>'
        '<Row><Cell><Data ss:Type="String">2-1</Data></Cell><Cell><Data ss:Type="Number">108</Data></Cell></Row>'
        "</Table></Worksheet></Workbook>"
    )
    (workspace.inbox / "区残联.xls").write_text(xml, encoding="utf-8")
    _, summary = run(workspace)
    assert summary["accepted"] == ["区残联.xls"]
    assert values(workspace)[("2-1", "区残联")] == 108


def test_more_rows_than_the_limit_is_refused(workspace):
    text = workspace.config.read_text(encoding="utf-8").replace("settle_seconds = 0", "settle_seconds = 0\nmax_rows = 50")
    workspace.config.write_text(text, encoding="utf-8")
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, 108, "", "", "", ""]] + [["", "", "", "", "x"]] * 80)
    _, summary = run(workspace)
    assert summary["rejected"] == ["区残联.xlsx"]
    assert "行数超过上限" in workspace.issues()[0]["问题"]


# -- the quick paths (memo, plain floats, long texts) answer as the plain ones --------------------


def test_number_reading_is_the_same_when_repeated_or_long():
    from pipeline.text import ParsedNumber

    for _ in range(2):  # the second answer comes from the memo
        assert parse_number("3500人") == ParsedNumber(3500.0, True, False, "人")
        assert parse_number("见附件") == ParsedNumber(None, False)
    assert parse_number("3500" + " " * 300).value == 3500  # too long to be kept in the memo
    assert parse_number(3.0) == ParsedNumber(3.0, True)
    assert parse_number(float("nan")) == ParsedNumber(None, True)
    assert parse_number(float("inf")) == ParsedNumber(None, False)
    assert parse_rate(43.0).value == pytest.approx(0.43) and parse_rate(3.0).value == 3.0


def test_keys_of_long_texts_are_taken_as_of_short_ones():
    from pipeline.text import header_key, text_key

    assert header_key("城镇新增就业（人）" + " " * 300) == header_key("城镇新增就业（人）") == "城镇新增就业"
    assert text_key("城镇新增就业８１５０人" + "，" * 300) == text_key("城镇新增就业8150人") == "城镇新增就业8150人"


def test_task_index_by_code_keeps_the_task_list_order():
    import pandas as pd

    from pipeline.intake.normalize import TaskIndex

    tasks = pd.DataFrame(
        {
            "unit": ["区民政局", "区民政局", "区残联"],
            "code": ["9-1", "9-1", "9-1"],
            "indicator": ["新增养老床位100张", "改造养老院2个", "康复救助残疾儿童181人"],
            "project": ["养老服务", "养老服务", "残疾人康复"],
            "target": [100.0, float("nan"), 181.0],
            "measure": ["张", "个", "人"],
            "kind": ["数量", "数量", "数量"],
        }
    )
    index = TaskIndex.from_tasks(tasks)
    both = index.by_unit_code["区民政局"]["9-1"]
    assert [task["indicator"] for task in both] == ["新增养老床位100张", "改造养老院2个"]
    assert [task["target"] for task in both] == [100.0, None]
    assert both == index.by_unit["区民政局"] and index.pairs == {("9-1", "区民政局"), ("9-1", "区残联")}
