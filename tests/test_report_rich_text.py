"""Text that reads like rich-text markup ("<r>…</r>") is written as the text it is, in every sheet.

xlsxwriter writes such a shared string raw, as rich-text XML: a title, unit name or task text
like that would break the workbook or inject markup. Both readers must see the exact text.
"""

from __future__ import annotations

import zipfile

import openpyxl
import pytest
from python_calamine import CalamineWorkbook

from pipeline.report.workbook import workbook_name

from .conftest import Workspace, invoke, make_return

TITLE = "<r><t>标题</t></r>"
UNIT = "<r><t>区残联</t></r>"
INDICATOR = '<r><rPr><b/></rPr><t xml:space="preserve">城镇新增就业</t></r>'
PROJECT = "<r>促进就业</r>"


@pytest.fixture
def rich_book(tmp_path):
    tasks = [
        ["1-1", 1, "省级", PROJECT, INDICATOR, 8150, "人", "数量", "亓磊", "区人社局", ""],
        ["1-2", 1, "省级", PROJECT, "职业技能培训1200人次", 1200, "人次", "数量", "亓磊", "区人社局", ""],
        ["2-1", 2, "省级", "残疾人关爱", "康复救助残疾儿童181人", 181, "人", "数量", "张哲君", UNIT, ""],
    ]
    workspace = Workspace(tmp_path / "ws", tasks)
    text = workspace.config.read_text(encoding="utf-8")
    workspace.config.write_text(text.replace('title = "测试汇总表"', f"title = '{TITLE}'"), encoding="utf-8")
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 1000, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
    )
    result = invoke(workspace.config, "run")
    assert result.exit_code == 0, result.output
    # The title is also the file's name, where "<", "/" and ">" become their full-width twins.
    return workspace.outbox / "＜r＞＜t＞标题＜／t＞＜／r＞（1-5月）.xlsx"


EXPECTED = {  # sheet: texts written cell by cell (write_string, merge_range) or in a block
    "汇总表": {TITLE, INDICATOR, PROJECT, UNIT},
    "明细": {INDICATOR, PROJECT, UNIT},
    "未报送": {UNIT},
    "统计": {UNIT},
}


def test_openpyxl_reads_the_exact_text_as_string_cells(rich_book):
    book = openpyxl.load_workbook(rich_book)
    for sheet, texts in EXPECTED.items():
        cells = {cell.value: cell for row in book[sheet].iter_rows() for cell in row if isinstance(cell.value, str)}
        for text in texts:
            assert text in cells, (sheet, text)
            assert cells[text].data_type == "s"
    assert book["汇总表"]["A1"].value == TITLE


def test_calamine_reads_the_exact_text(rich_book):
    book = CalamineWorkbook.from_path(str(rich_book))
    for sheet, texts in EXPECTED.items():
        values = {value for row in book.get_sheet_by_name(sheet).to_python() for value in row}
        assert texts <= values, sheet
    assert book.get_sheet_by_name("汇总表").to_python()[0][0] == TITLE


def test_no_markup_reaches_the_package_raw(rich_book):
    with zipfile.ZipFile(rich_book) as archive:
        assert archive.testzip() is None
        for name in archive.namelist():
            if name.startswith("xl/worksheets/") or name == "xl/sharedStrings.xml":
                assert b"<r><t>" not in archive.read(name), name


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("2023年重点民生实事完成情况汇总表", "2023年重点民生实事完成情况汇总表（1-5月）.xlsx"),
        ("民生实事/进展", "民生实事／进展（1-5月）.xlsx"),
        ('a\\b:c*d?e"f<g>h|i', "a＼b：c＊d？e＂f＜g＞h｜i（1-5月）.xlsx"),
        ("标题\t\x00换行\n", "标题换行（1-5月）.xlsx"),
        ("..隐藏", "隐藏（1-5月）.xlsx"),
    ],
)
def test_the_title_becomes_a_file_name_any_system_can_hold(title, name):
    assert workbook_name(title, "2023-05") == name


def test_a_title_too_long_for_a_file_name_is_cut_short(tmp_path):
    name = workbook_name("重点民生实事" * 30, "2023-05")
    assert len(name.encode()) <= 255 and name.endswith("（1-5月）.xlsx")
    (tmp_path / name).write_bytes(b"")  # the file system takes it
