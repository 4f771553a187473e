"""A reported rate typed into a cell formatted as a percentage: Excel stores 350% as 3.5.

calamine gives the stored number and no format; the inspection reads the styles and the sheet's
cells (xmlscan) so that 3.5 shown as 350% is not taken for a bare "3.5", meaning 3.5%.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zipfile

import openpyxl
import pytest
import xlsxwriter
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import LimitsConfig
from pipeline.intake.read import read_book
from pipeline.intake.safety import inspect_file
from pipeline.intake.xmlscan import _percent_cells, is_percent_format, percent_styles, scan_sheet_part, scan_xlsx

from .conftest import TEMPLATE_HEADER, make_return


def run(ws):
    result = CliRunner().invoke(cli, ["run", "--json", "--config", str(ws.config)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return json.loads(result.output.strip().splitlines()[-1])


# -- which format codes show a percentage ------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "percent"),
    [
        ("0%", True), ("0.00%", True), ("0.0%;[Red]-0.0%", True), ("#,##0.0%", True), ("[蓝色]0%", True),
        ('0"%"', False),  # a literal sign after the number: 35 shows as "35%"
        ("0\\%", False), ("0_%", False), ("0*%", False), ("[$%-804]0", False),
        ("General", False), ("#,##0", False), ("0.00", False), ("@", False), ("", False),
    ],
)  # fmt: skip
def test_which_format_codes_show_a_percentage(code, percent):
    assert is_percent_format(code) is percent


STYLES = (
    b'<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    b'<numFmts count="3"><numFmt numFmtId="164" formatCode="0.0%"/><numFmt numFmtId="165" formatCode="0&quot;%&quot;"/>'
    b'<numFmt numFmtId="9" formatCode="0.00"/></numFmts>'
    b'<cellStyleXfs count="1"><xf numFmtId="10"/></cellStyleXfs>'
    b'<cellXfs count="6"><xf numFmtId="0"/><xf numFmtId="10" applyNumberFormat="1"><alignment wrapText="1"/></xf>'
    b'<xf numFmtId="164"/><xf numFmtId="165"/><xf numFmtId="9"/><xf fontId="1"/></cellXfs></styleSheet>'
)


def test_percent_styles_are_indexes_into_cellxfs():
    # 1: built-in 0.00%; 2: custom 0.0%. 3 shows a literal %, 4 redefines built-in 9 as 0.00,
    # and the cellStyleXfs' xf is not a cell style.
    assert percent_styles(STYLES) == {1, 2}
    assert percent_styles(b"<styleSheet/>") == frozenset()
    assert percent_styles(b"not xml at all \x00\xff") == frozenset()
    # A format id of 5,000 digits (int() refuses it) is no format, not a crash.
    huge = b"9" * 5000
    assert percent_styles(STYLES.replace(b'numFmtId="164"', b'numFmtId="' + huge + b'"')) == {1}


def test_percent_cells_are_the_number_cells_in_those_styles():
    sheet = (
        b'<sheetData><row r="4" s="2" customFormat="1"><c r="F4" s="2"><v>3.5</v></c><c r="G4" s="2"/>'
        b'<c r="H4" s="2" t="s"><v>7</v></c><c r="AA4" t="n" s="1"><f>E4/C4</f><v>0.25</v></c>'
        b'<c r="B4" s="20"><v>9</v></c><c r="C4" s="1" t="str"><f>"x"</f><v>x</v></c>'
        b'<c r="D4" cm="1" s="2" vm="1"><v>1.2</v></c></row></sheetData>'
    )
    # F4 and AA4 and D4 hold numbers; G4 is empty, H4 a shared string, C4 a text result, and B4
    # is in style 20, not 2; the row's own s="2" is no cell.
    assert _percent_cells(sheet, frozenset({1, 2})) == {(3, 5), (3, 26), (3, 3)}
    assert scan_sheet_part(sheet, frozenset({1, 2})).percent_cells == {(3, 5), (3, 26), (3, 3)}
    assert scan_sheet_part(sheet) is None


def test_cells_with_a_namespace_prefix_are_found():
    # The OpenXML SDK and ClosedXML (.NET) write the spreadsheet namespace with a prefix.
    sheet = b'<x:sheetData><x:row r="2"><x:c r="E2" s="1"><x:v>3.5</x:v></x:c><x:c r="F2" s="1" t="s"><x:v>0</x:v></x:c></x:row>'
    assert _percent_cells(sheet, frozenset({1})) == {(1, 4)}
    styles = STYLES.replace(b"<cellXfs", b"<x:cellXfs").replace(b"</cellXfs>", b"</x:cellXfs>").replace(b"<xf ", b"<x:xf ")
    assert percent_styles(styles) == {1, 2}


def test_a_cell_written_style_first_is_missed_not_misread():
    # No common writer puts s before r; such a cell is read as if unformatted.
    assert _percent_cells(b'<c s="2" r="F4"><v>3.5</v></c>', frozenset({2})) == set()


# -- through the reader and the run ------------------------------------------------------------


def _return_with_rates(path, writer: str):
    """区人社局's return: 1-1 at 350% (a % cell holding 3.5), 1-2 at 51.25% (a % cell), 2-1 of
    another unit absent. Written by openpyxl or xlsxwriter."""
    rows = [["1-1", "城镇新增就业8150人", 8150, 28525, 3.5, None, "超额完成"], ["1-2", "职业技能培训1200人次", 1200, 615, 0.5125, None, ""]]
    header = ["指标编号", "指标任务", "目标值", "已完成", "完成率", "排名", "完成情况"]
    if writer == "openpyxl":
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.append(header)
        for row in rows:
            sheet.append(row)
        sheet["E2"].number_format = "0.00%"
        sheet["E3"].number_format = "0%"
        book.save(path)
    else:
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        percent = book.add_format({"num_format": "0.0%"})
        sheet.write_row(0, 0, header)
        for r, row in enumerate(rows, start=1):
            sheet.write_row(r, 0, row)
            sheet.write_number(r, 4, row[4], percent)
        book.close()
    return path


@pytest.mark.parametrize("writer", ["openpyxl", "xlsxwriter"])
def test_the_reader_marks_percent_cells_whichever_way_it_reads(tmp_path, writer):
    path = _return_with_rates(tmp_path / "r.xlsx", writer)
    assert [flags.percent_cells for flags in scan_xlsx(path).values()] == [{(1, 4), (2, 4)}]
    verdict = inspect_file(path, LimitsConfig(), scan_sheets=True, repack=True)
    book = read_book(str(path), verdict.kind, None, 1000, verdict.sheet_flags, verdict.package)
    assert book.sheets[0].percent_cells == {(1, 4), (2, 4)}
    # Without the inspection's flags the reader scans the file itself, to the same result.
    assert read_book(str(path), "xlsx").sheets[0].percent_cells == {(1, 4), (2, 4)}


@pytest.mark.parametrize("writer", ["openpyxl", "xlsxwriter"])
def test_a_rate_over_300_percent_in_a_percent_cell_is_read_as_written(workspace, writer):
    _return_with_rates(workspace.inbox / "区人社局.xlsx", writer)
    summary = run(workspace)
    assert summary["accepted"] == ["区人社局.xlsx"]
    rows = {row["指标编号"]: row for row in workspace.detail() if row["填报单位"] == "区人社局"}
    assert rows["1-1"]["上报完成率"] == pytest.approx(3.5)  # 350%, not 3.5%
    assert rows["1-1"]["完成率"] == pytest.approx(28525 / 8150)
    assert rows["1-2"]["上报完成率"] == pytest.approx(0.5125)
    assert not [i for i in workspace.issues() if i["问题类型"] == "rate-mismatch" or "完成率" in str(i["说明"])]


def test_unformatted_rates_keep_the_rule_for_bare_numbers(workspace):
    # A bare 350 is 350%; a bare 3.5, in a cell with no % format, is still read as 3.5%: the
    # computed 350% then disagrees, and the warning says so.
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "城镇新增就业8150人", 8150, 28525, 350], ["1-2", "职业技能培训1200人次", 1200, 42, 3.5]],
        header=["指标编号", "指标任务", "目标值", "已完成", "完成率"],
    )
    run(workspace)
    rows = {row["指标编号"]: row for row in workspace.detail() if row["填报单位"] == "区人社局"}
    assert rows["1-1"]["上报完成率"] == pytest.approx(3.5)
    assert rows["1-2"]["上报完成率"] == pytest.approx(0.035)
    assert rows["1-2"]["完成率"] == pytest.approx(0.035)


def test_text_in_a_percent_cell_is_read_as_text(workspace):
    # The format applies to numbers only: "350" typed as text is a bare 350, i.e. 350%.
    path = make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "城镇新增就业8150人", 8150, 28525, "350"], ["1-2", "职业技能培训1200人次", 1200, 615, "51.25%"]],
        header=["指标编号", "指标任务", "目标值", "已完成", "完成率"],
    )
    book = openpyxl.load_workbook(path)
    book.active["E2"].number_format = "0%"
    book.active["E3"].number_format = "0%"
    book.save(path)
    with zipfile.ZipFile(path) as archive:
        assert b't="s"' in archive.read("xl/worksheets/sheet1.xml") or b"inlineStr" in archive.read("xl/worksheets/sheet1.xml")
    run(workspace)
    rows = {row["指标编号"]: row for row in workspace.detail() if row["填报单位"] == "区人社局"}
    assert rows["1-1"]["上报完成率"] == pytest.approx(3.5)
    assert rows["1-2"]["上报完成率"] == pytest.approx(0.5125)


def test_the_template_header_still_reads(workspace):
    # The shipped template's columns, rate formatted 0.00% as the template does.
    path = workspace.inbox / "区残联.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, TEMPLATE_HEADER)
    sheet.write_row(1, 0, ["2-1", "康复救助残疾儿童181人", 181, 724])
    sheet.write_number(1, 4, 4.0, book.add_format({"num_format": "0.00%"}))
    book.close()
    run(workspace)
    row = next(r for r in workspace.detail() if r["填报单位"] == "区残联")
    assert row["上报完成率"] == pytest.approx(4.0)
    assert row["完成率"] == pytest.approx(4.0)


@pytest.mark.parametrize(("stored", "shown"), [(1e308, "∞%"), (1e15, "1e+17%"), (3.5, "350%")])
def test_a_huge_rate_in_a_percent_cell_is_told_as_a_number(workspace, stored, shown):
    path = make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "城镇新增就业8150人", 8150, 3500, stored]],
        header=["指标编号", "指标任务", "目标值", "已完成", "完成率"],
    )
    book = openpyxl.load_workbook(path)
    book.active["E2"].number_format = "0.00%"
    book.save(path)
    assert run(workspace)["exit_code"] == 0
    messages = [issue["问题"] for issue in workspace.issues() if issue["位置"] and issue["位置"].endswith("!E2")]
    assert messages == [
        f"E2：指标 1-1 上报完成率 {shown} 与计算值 42.94%（3500/8150）不一致，汇总表采用计算值，请核对后更正。"
    ]


def test_a_return_read_by_an_older_parser_is_read_again(workspace):
    # A coordinator upgrading mid-year: results stored by the previous parser version (which read
    # this 350% as 3.5%) are redone from the file in inbox/, once.
    _return_with_rates(workspace.inbox / "区人社局.xlsx", "openpyxl")
    assert run(workspace)["new_files"] == 1
    conn = sqlite3.connect(workspace.state / "history.sqlite")
    with conn:
        conn.execute("UPDATE results SET parser_version = parser_version - 1")
        conn.execute("UPDATE rows SET reported_rate = 0.035 WHERE code = '1-1'")
    conn.close()
    assert run(workspace)["new_files"] == 1
    rows = {row["指标编号"]: row for row in workspace.detail() if row["填报单位"] == "区人社局"}
    assert rows["1-1"]["上报完成率"] == pytest.approx(3.5)
    assert run(workspace)["new_files"] == 0


def _with_namespace_prefix(xml: bytes) -> bytes:
    """The part as the OpenXML SDK writes it: the spreadsheet namespace under the prefix x."""
    text = xml.decode("utf-8").replace(
        'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
        'xmlns:x="http://schemas.openxmlformats.org/spreadsheetml/2006/main"',
    )
    return re.sub(r"<(/?)(?![?!])([A-Za-z]+)", r"<\1x:\2", text).encode("utf-8")


def test_a_return_written_with_a_namespace_prefix_reads_its_formats_and_formulas(workspace):
    source = workspace.root / "plain.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["指标编号", "指标任务", "目标值", "已完成", "完成率"])
    sheet.append(["1-1", "城镇新增就业8150人", 8150, 28525, 3.5])
    sheet.append(["1-2", "职业技能培训1200人次", 1200, "=1/0", None])  # saved without a result
    sheet["E2"].number_format = "0.00%"
    book.save(source)
    with zipfile.ZipFile(source) as plain, zipfile.ZipFile(workspace.inbox / "区人社局.xlsx", "w") as prefixed:
        for item in plain.infolist():
            data = plain.read(item)
            if item.filename.startswith("xl/worksheets/") or item.filename == "xl/styles.xml":
                data = _with_namespace_prefix(data)
                assert b"<x:c " in data or b"<x:cellXfs" in data
            prefixed.writestr(item, data, zipfile.ZIP_DEFLATED)
    run(workspace)
    rows = {row["指标编号"]: row for row in workspace.detail() if row["填报单位"] == "区人社局"}
    assert rows["1-1"]["上报完成率"] == pytest.approx(3.5)
    assert rows["1-2"]["已完成"] is None
    messages = {issue["位置"]: issue["问题"] for issue in workspace.issues()}
    assert "没有保存计算结果" in messages["Sheet!D3"]  # openpyxl's sheet name
