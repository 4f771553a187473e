"""pipeline.intake.read: calamine's cells into rows anchored at A1."""

from __future__ import annotations

import datetime
import io
import zipfile

import pytest
import xlsxwriter
from python_calamine import CalamineWorkbook

from pipeline.intake.read import CellError, _grid, _grid_by_rows, read_book
from pipeline.intake.xmlscan import scan_sheet_part


def sheet_of(cells: dict[str, object]):
    """The first sheet of a workbook holding ``cells`` (A1 reference → value), as calamine reads it."""
    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = workbook.add_worksheet()
    dates = workbook.add_format({"num_format": "yyyy-mm-dd"})
    for ref, value in cells.items():
        if value == "":
            sheet.write_string(ref, "")  # a cell holding an empty text, not a blank one
        elif isinstance(value, datetime.date):
            sheet.write_datetime(ref, value, dates)
        else:
            sheet.write(ref, value)
    workbook.close()
    return CalamineWorkbook.from_filelike(io.BytesIO(buffer.getvalue())).get_sheet_by_index(0)


@pytest.mark.parametrize(
    ("cells", "rows"),
    [
        ({"A1": "指标", "B2": 3500, "C2": True}, [["指标", None, None], [None, 3500.0, True]]),
        ({"C1": "x", "D3": 1}, [[None, None, "x", None], [None, None, None, None], [None, None, None, 1.0]]),
        ({"A1": "x", "A2": "", "B3": ""}, [["x", None]]),  # empty texts at the end are empty rows
        ({"A1": "", "B1": ""}, []),
        ({"A1": datetime.date(2023, 5, 31)}, [[datetime.date(2023, 5, 31)]]),
        ({}, []),
    ],
    ids=["from-A1", "from-C1", "trailing-empty", "only-empty", "date", "no-cells"],
)
def test_the_grid_is_anchored_at_a1_without_trailing_empty_rows(cells, rows):
    sheet = sheet_of(cells)
    assert _grid(sheet, 100) == (rows, False)
    # The one-call reading of a sheet from row 1 is the row-by-row one.
    assert _grid_by_rows(sheet, 100) == (rows, False)


def test_rows_past_the_limit_are_read_only_to_tell_truncation():
    values = {f"A{row}": f"r{row}" for row in range(1, 8)}
    assert _grid(sheet_of(values), 5) == ([[f"r{row}"] for row in range(1, 6)], True)
    blanks = {**{f"A{row}": f"r{row}" for row in range(1, 5)}, "A7": ""}
    assert _grid(sheet_of(blanks), 5) == ([[f"r{row}"] for row in range(1, 5)], False)


def test_a_sheet_starting_below_row_1_keeps_its_cells_at_their_rows():
    # python-calamine's iter_rows() yields the rows above the data itself: they were counted
    # twice, and every cell read one row too low for each empty row above the data.
    rows = [[], [], [None, None, "指标编号", "目标值"], [None, None, "1-1", 8150.0]]
    sheet = sheet_of({"C3": "指标编号", "D3": "目标值", "C4": "1-1", "D4": 8150})
    assert _grid(sheet, 100) == (rows, False)
    assert _grid_by_rows(sheet, 100) == (rows, False)
    assert _grid(sheet, 3) == (rows[:3], True)  # past the limit, row by row
    assert _grid(sheet_of({"B3": ""}), 100) == ([[], []], False)


def test_an_error_cell_lands_on_its_own_row_below_an_empty_first_row(tmp_path):
    path = tmp_path / "a.xlsx"
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    sheet.write_row("A2", ["指标编号", "目标值", "已完成"])
    sheet.write_row("A3", ["1-1", 8150, 3500])
    sheet.write_row("A4", ["1-2", 1200, 11111])
    workbook.close()
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b'<c r="C4"><v>11111</v></c>', b'<c r="C4" t="e"><f>1/0</f><v>#DIV/0!</v></c>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    rows = read_book(str(path), "xlsx").sheets[0].rows
    assert rows == [[], ["指标编号", "目标值", "已完成"], ["1-1", 8150.0, 3500.0], ["1-2", 1200.0, "#DIV/0!"]]
    assert isinstance(rows[3][2], CellError)


def test_errors_formulas_and_hidden_rows_are_found_with_a_namespace_prefix_too():
    sheet = (
        b'<x:sheetData><x:row r="2" hidden="1"><x:c r="E2" t="e"><x:v>#DIV/0!</x:v></x:c>'
        b'<x:c r="F2"><x:f>E2*2</x:f><x:v></x:v></x:c><x:c r="G2"><x:f t="shared" si="0">1+1</x:f></x:c>'
        b'<x:c r="H2"><x:f>1+2</x:f><x:v>3</x:v></x:c></x:row></x:sheetData>'
    )
    flags = scan_sheet_part(sheet)
    assert flags.errors == {(1, 4): "#DIV/0!"}
    assert flags.uncached_formulas == {(1, 5): "E2*2", (1, 6): "1+1"}
    assert flags.hidden_rows == {2}
