"""The bulk row writer: what it writes must be what xlsxwriter's own cell-by-cell calls write."""

from __future__ import annotations

import zipfile

import openpyxl
import pytest
import xlsxwriter
import xlsxwriter.packager

from pipeline.report.bulk import BulkSheet, add_strings, fix_style_indices, literal_shared_strings, rows_xml

ROWS = [
    ["=SUM(A1:A9)", 3500, 0.4294, None, "+86 电话", "@某人"],
    ["已完成3500人", 12.5, None, "", "-", "第二行\n换行"],
    [" 前后空格 ", 0, 1e15, "x" * 40000, "A&B<C>", "控制\x07字符"],  # 40,000: cut to 32,767 as Excel must
]


def _cells(fmt_text, fmt_number):
    """ROWS as block cells: text in fmt_text, numbers in fmt_number, None as a formatted blank."""
    return [
        [(value, fmt_number if isinstance(value, int | float) else fmt_text) for value in row] for row in ROWS
    ]


def _write(path, bulk: bool | str) -> None:
    """bulk: False cell by cell, True a block, "rendered" a block rendered apart (frozen strings)."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_numbers": False})
    text = book.add_format({"text_wrap": True, "border": 1, "font_color": "#9C0006"})
    number = book.add_format({"num_format": "0.00%", "border": 1})
    header = book.add_format({"bold": True})
    sheet = book.add_worksheet("数据", worksheet_class=BulkSheet if bulk else None)
    sheet.write_string(0, 0, "表头", header)  # a row before the block
    sheet.set_row(0, 30)
    first = 1
    heights = [20.0, 33.3, None]
    if bulk == "rendered":
        fix_style_indices(book)
        cells = _cells(text, number)
        add_strings(book.str_table, [value for row in cells for value, _ in row if isinstance(value, str)])
        xml = rows_xml(first, cells, heights, strings=book.str_table, frozen=True)
        sheet.write_rendered(first, len(cells), len(cells[0]), xml)
        sheet.merge_block(first, 3, first + 1, 3)
    elif bulk:
        sheet.write_block(first, _cells(text, number), heights)
        sheet.merge_block(first, 3, first + 1, 3)
    else:
        for offset, row in enumerate(_cells(text, number)):
            for col, (value, fmt) in enumerate(row):
                if value is None or value == "":
                    sheet.write_blank(first + offset, col, None, fmt)
                elif isinstance(value, str):
                    sheet.write_string(first + offset, col, value, fmt)
                else:
                    sheet.write_number(first + offset, col, value, fmt)
            if heights[offset] is not None:
                sheet.set_row(first + offset, heights[offset])
        sheet.merge_range(first, 3, first + 1, 3, "", text)
    sheet.write_string(first + len(ROWS), 0, "注：表尾", header)  # a row after the block
    book.close()


def _snapshot(path):
    sheet = openpyxl.load_workbook(path)["数据"]
    cells = {}
    for row in sheet.iter_rows():
        for cell in row:
            if cell.value is not None or cell.has_style:
                cells[cell.coordinate] = (
                    cell.value,
                    cell.data_type,
                    cell.number_format,
                    cell.font.color.rgb if cell.font.color else None,
                    cell.font.b,
                    cell.border.left.style,
                    cell.alignment.wrap_text,
                )
    heights = {r: sheet.row_dimensions[r].height for r in range(1, sheet.max_row + 1)}
    return cells, heights, sorted(map(str, sheet.merged_cells.ranges)), sheet.dimensions


@pytest.mark.parametrize("bulk", [True, "rendered"])
def test_a_block_writes_what_cell_by_cell_writing_writes(tmp_path, bulk):
    _write(tmp_path / "cells.xlsx", bulk=False)
    _write(tmp_path / "block.xlsx", bulk=bulk)
    expected, got = _snapshot(tmp_path / "cells.xlsx"), _snapshot(tmp_path / "block.xlsx")
    assert got == expected
    cells = got[0]
    assert cells["A2"][:2] == ("=SUM(A1:A9)", "s")  # data, never a formula
    assert cells["B2"][:2] == (3500, "n")
    assert cells["D3"][:2] == (None, "n") and cells["D3"][5] == "thin"  # "" is a formatted blank
    assert got[1][2] == 20.25 and got[1][3] == 33.0  # heights rounded to whole pixels, as set_row does


@pytest.mark.parametrize("bulk", [True, "rendered"])
def test_shared_strings_are_counted_like_xlsxwriter_counts_them(tmp_path, bulk):
    def shared_strings(name: str) -> bytes:
        with zipfile.ZipFile(tmp_path / name) as archive:
            return archive.read("xl/sharedStrings.xml")

    _write(tmp_path / "cells.xlsx", bulk=False)
    _write(tmp_path / "block.xlsx", bulk=bulk)
    assert shared_strings("block.xlsx") == shared_strings("cells.xlsx")


def test_a_frozen_block_only_reads_the_shared_strings(tmp_path):
    book = xlsxwriter.Workbook(str(tmp_path / "x.xlsx"))
    add_strings(book.str_table, ["甲", None, "", "甲"])
    xml = rows_xml(0, [[("甲", None), ("", None), (" 乙&", None)]], strings=book.str_table, frozen=True)
    # Text it was not given is written inline, escaped, rather than added behind the table's back.
    assert xml == '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="inlineStr"><is><t xml:space="preserve"> 乙&amp;</t></is></c></row>'
    assert (book.str_table.count, book.str_table.unique_count) == (2, 1)


def test_text_that_reads_as_rich_markup_stays_text(tmp_path):
    """xlsxwriter would put "<r>…</r>" into the shared strings as raw XML (breaking the file);
    stored with literal_shared_strings, it is escaped text, in a block or rendered apart."""
    from python_calamine import CalamineWorkbook

    texts = ["<r>已完成</r>", "<r><t>注入</t></r>", " <r>x</r>", "普通"]
    path = tmp_path / "rich.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("数据", worksheet_class=BulkSheet)
    sheet.write_block(0, [[(text, None)] for text in texts])
    add_strings(book.str_table, texts)
    xml = rows_xml(4, [[(text, None)] for text in texts], strings=book.str_table, frozen=True)
    sheet.write_rendered(4, len(texts), 1, xml)
    with literal_shared_strings(xlsxwriter.packager):
        book.close()
    with zipfile.ZipFile(path) as archive:
        assert b"<r>" not in archive.read("xl/sharedStrings.xml")
    assert [row[0] for row in openpyxl.load_workbook(path)["数据"].iter_rows(values_only=True)] == texts * 2
    assert [row[0] for row in CalamineWorkbook.from_path(str(path)).get_sheet_by_index(0).to_python()] == texts * 2


def test_a_row_written_both_ways_is_refused(tmp_path):
    book = xlsxwriter.Workbook(str(tmp_path / "clash.xlsx"), {"in_memory": True})  # no temp file left open by the failure
    sheet = book.add_worksheet("数据", worksheet_class=BulkSheet)
    sheet.write_block(0, [[("a", None)], [("b", None)]])
    sheet.write_string(1, 3, "clash")
    with pytest.raises(ValueError, match="row 2 is written both in a block and cell by cell"):
        book.close()


def test_overlapping_blocks_and_non_finite_numbers_are_refused(tmp_path):
    book = xlsxwriter.Workbook(str(tmp_path / "x.xlsx"))
    sheet = book.add_worksheet("数据", worksheet_class=BulkSheet)
    assert sheet.write_block(0, [[("a", None)], [("b", None)]]) == 2
    with pytest.raises(ValueError, match="overlap"):
        sheet.write_block(1, [[("c", None)]])
    with pytest.raises(ValueError, match="not a finite number at A6"):
        sheet.write_block(5, [[(float("nan"), None)]])
    assert sheet.write_block(9, []) == 9
