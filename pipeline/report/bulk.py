"""A worksheet that renders its big blocks of rows to XML once, in bulk.

Measured at province scale (3,000 returns, 68,673 rows in 汇总表 and in 明细, 2.3 million
formatted cells): xlsxwriter spends about 6 µs a cell, 2 µs in ``write_*`` (checks, a cell
object per cell) and 4 µs at ``close`` (an attribute list and an f-string per cell), so writing
was 14 s of a 27 s run. Here a block of rows is given as plain rows of (value, format) and
turned into ``<row>`` XML by one tight loop, at about 0.5 µs a cell.

Everything else stays xlsxwriter's: the formats (their style indices are the ones xlsxwriter
gives them), the shared-string table (so text is written exactly as ``write_string`` writes it,
escaped by xlsxwriter, and a narrative that starts with "=" stays a string), column widths,
merges, print setup, panes and filters. The hook is xlsxwriter's documented
``add_worksheet(name, worksheet_class=...)``, plus internals of its 3.x worksheet that
``tests/test_bulk.py`` checks by comparing a block with cell-by-cell writing: ``_write_rows``
(the ``<sheetData>`` loop), ``_check_dimensions``, the ``merge`` list, the shared-string table
``str_table`` and ``Format._get_xf_index``. The workbook writes its shared strings after its
sheets, and a block takes its string indices when it is added, before ``close``.

A block can also be rendered elsewhere, in another process (pipeline/offload.py), and handed
over as XML when the sheet is written (``write_rendered``). That process must not add to the
tables the workbook writes, so before it starts, the formats get their style indices
(``fix_style_indices``) and the block's texts their shared strings (``add_strings``), and it
renders with the table frozen.

Text that reads "<r>…</r>" would go into the shared strings as raw rich-text markup, which
breaks the file (or injects XML): the workbook is stored with ``literal_shared_strings``, which
escapes it like any other text, whether a block or a ``write_string`` put it in the table.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from xlsxwriter.sharedstrings import SharedStrings
from xlsxwriter.utility import _utf16_len, _utf16_truncate, xl_col_to_name
from xlsxwriter.worksheet import Worksheet

STRING_MAX = 32767  # UTF-16 units in a cell, Excel's limit (xlsxwriter's xls_strmax)
Cell = tuple | None  # (value, format): value str | int | float | None; format a Format or None

# What xlsxwriter escapes in cell text (xmlwriter: _escape_control_characters, _escape_data).
_ESCAPED_ESCAPE = re.compile("(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f])")
_NEEDS_ESCAPE = re.compile(r"[&<>\x00-\x08\x0b-\x1f_\ufffe\uffff]")
_EDGE_SPACE = re.compile(r"^\s|\s$")


class _StyleAttributes(dict):
    """Format → its ``s="N"`` attribute, the style index xlsxwriter gives the format."""

    def __missing__(self, fmt) -> str:
        attribute = self[fmt] = f' s="{fmt._get_xf_index()}"'
        return attribute


def inline_string(text: str) -> str:
    """The ``<is>`` element of an inline string: control characters as _xHHHH_, XML escaped,
    leading or trailing whitespace preserved (what constant_memory mode writes). Never taken
    for rich-text markup, unlike a shared string that happens to read "<r>…</r>"."""
    if _NEEDS_ESCAPE.search(text):
        text = _ESCAPED_ESCAPE.sub(r"_x005F\1", text)
        text = _CONTROL.sub(lambda match: f"_x{ord(match.group(1)):04X}_", text)
        text = text.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if _EDGE_SPACE.search(text):
        return f'<is><t xml:space="preserve">{text}</t></is>'
    return f"<is><t>{text}</t></is>"


def excel_text(text: str) -> str:
    """``text`` cut to Excel's 32,767 UTF-16 units a cell, with ``write_string``'s own rule."""
    if len(text) > STRING_MAX // 2 and _utf16_len(text) > STRING_MAX:
        return _utf16_truncate(text, STRING_MAX)
    return text


def _looks_rich(text: str) -> bool:
    """Whether xlsxwriter would write this shared string as raw rich-text XML."""
    return text.startswith("<r>") and text.endswith("</r>")


def rows_xml(
    first_row: int,
    rows: Sequence[Sequence[Cell]],
    heights: Sequence[float | None] | None = None,
    *,
    strings,
    frozen: bool = False,
) -> str:
    """The ``<row>`` XML of ``rows`` from ``first_row`` (0-based) down, column A onwards.

    A cell is ``None`` (nothing), or ``(value, format)``: a string ("" writes a formatted blank),
    a finite number, or ``None`` for a formatted blank. Text goes to ``strings``, xlsxwriter's
    shared-string table; ``frozen``: the table is only read, as it must be in another process
    (the texts were put in it and counted by ``add_strings``; one that was not is written as an
    inline string). ``heights`` gives each row's height in points (``None``: the default height).
    """
    width = max((len(row) for row in rows), default=0)
    known = strings.string_table  # string → index, xlsxwriter's own table
    repeats = 0  # uses of strings already in the table, added to its count at the end
    style_of = _StyleAttributes()
    letters = [xl_col_to_name(col) for col in range(width)]
    xml = []
    for offset, row in enumerate(rows):
        number = first_row + offset + 1
        cells = []
        append = cells.append
        for letter, cell in zip(letters, row, strict=False):
            if cell is None:
                continue
            value, fmt = cell
            style = "" if fmt is None else style_of[fmt]
            if value is None or value == "":
                if style:
                    append(f'<c r="{letter}{number}"{style}/>')
            elif isinstance(value, str):
                index = known.get(value)
                if index is None:
                    value = excel_text(str(value))  # str(): a str subclass stores the plain string
                    index = known.get(value)
                if index is not None:
                    repeats += 1
                elif frozen:
                    append(f'<c r="{letter}{number}"{style} t="inlineStr">{inline_string(value)}</c>')
                    continue
                else:
                    index = strings._get_shared_string_index(value)
                append(f'<c r="{letter}{number}"{style} t="s"><v>{index}</v></c>')
            else:
                if not math.isfinite(value):
                    raise ValueError(f"not a finite number at {letter}{number}: {value!r}")
                append(f'<c r="{letter}{number}"{style}><v>{value:.16G}</v></c>')
        height = heights[offset] if heights is not None else None
        if height is None:
            xml.append(f'<row r="{number}">{"".join(cells)}</row>')
        else:
            # As set_row writes it: rounded to whole pixels (4/3 of a point).
            points = int(height * 4.0 / 3.0 + 0.5) * 0.75
            xml.append(f'<row r="{number}" ht="{points:.16g}" customHeight="1">{"".join(cells)}</row>')
    if not frozen:
        strings.count += repeats
    return "".join(xml)


def add_strings(strings, texts: Iterable[str | None]) -> None:
    """Put the texts a frozen ``rows_xml`` will write into the shared table, each use counted
    (``None`` and "" are blanks)."""
    table = strings.string_table
    for text, uses in Counter(texts).items():  # each distinct text once: most recur
        if not text:
            continue
        text = excel_text(str(text))
        if text not in table:
            strings._get_shared_string_index(text)  # adds it, counted once
            uses -= 1
        strings.count += uses


def fix_style_indices(book) -> None:
    """Give every format of ``book`` its style index now, in the order they were added, so that
    XML rendered in another process uses the indices the workbook will write."""
    for fmt in book.formats:
        fmt._get_xf_index()


class BulkSheet(Worksheet):
    """``write_block`` takes many rows at once; the usual ``write_*`` calls work around it."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[tuple[int, int, str]] = []  # (first row, last row, the rows' XML)

    def write_block(
        self,
        first_row: int,
        rows: Sequence[Sequence[Cell]],
        heights: Sequence[float | None] | None = None,
    ) -> int:
        """Write ``rows`` from ``first_row`` down, column A onwards; returns the next free row.

        A cell is as ``rows_xml`` takes it; text is written as shared strings. No other
        ``write_*`` call or ``set_row`` may touch the block's rows; merges over them are declared
        with ``merge_block``.
        """
        if not rows:
            return first_row
        last_row = first_row + len(rows) - 1
        self._claim(first_row, last_row, max(len(row) for row in rows))
        self._blocks.append((first_row, last_row, rows_xml(first_row, rows, heights, strings=self.str_table)))
        return last_row + 1

    def write_rendered(self, first_row: int, count: int, width: int, xml: str) -> int:
        """Write ``count`` rows of ``width`` columns from ``first_row``, rendered elsewhere (by a
        frozen ``rows_xml``, whose texts must be in this workbook's table). Returns the next
        free row."""
        if count <= 0:
            return first_row
        last_row = first_row + count - 1
        self._claim(first_row, last_row, width)
        self._blocks.append((first_row, last_row, xml))
        return last_row + 1

    def merge_block(self, first_row: int, first_col: int, last_row: int, last_col: int) -> None:
        """Merge cells whose contents a block writes (its first cell the value, the others blanks
        in the same format, as ``merge_range`` would write them)."""
        if (first_row, first_col) == (last_row, last_col):
            return
        self.merge.append([first_row, first_col, last_row, last_col])

    def _claim(self, first_row: int, last_row: int, width: int) -> None:
        for first, last, _ in self._blocks:
            if first <= last_row and first_row <= last:
                raise ValueError(f"rows {first_row}-{last_row} overlap an earlier block ({first}-{last})")
        self._check_dimensions(first_row, 0)
        self._check_dimensions(last_row, width - 1)

    def _write_rows(self) -> None:
        """The ``<sheetData>`` rows: xlsxwriter's own rows around the blocks, in row order."""
        if not self._blocks:
            super()._write_rows()
            return
        low, high = self.dim_rowmin, self.dim_rowmax
        try:
            cursor = low
            for first, last, xml in sorted(self._blocks, key=lambda block: block[0]):
                taken = [row for row in range(first, last + 1) if self.table.get(row) or row in self.row_info]
                if taken:
                    raise ValueError(f"row {taken[0] + 1} is written both in a block and cell by cell")
                if cursor < first:
                    self.dim_rowmin, self.dim_rowmax = cursor, first - 1
                    super()._write_rows()
                self.fh.write(xml)
                cursor = last + 1
            if cursor <= high:
                self.dim_rowmin, self.dim_rowmax = cursor, high
                super()._write_rows()
        finally:
            self.dim_rowmin, self.dim_rowmax = low, high


class LiteralSharedStrings(SharedStrings):
    """xlsxwriter's writer of sharedStrings.xml, every string written as plain text.

    xlsxwriter writes a shared string that reads "<r>…</r>" raw, as the rich-text XML that its
    ``write_rich_string`` makes: a title, unit name or task text like that, written with
    ``write_string`` or ``merge_range``, would break the file or inject markup. Here it is
    escaped like any other text (the workbook writes no rich strings). One place covers every
    text cell of every sheet, whoever writes it.
    """

    def _write_si(self, string: str) -> None:
        if not _looks_rich(string):
            super()._write_si(string)
            return
        # As xlsxwriter writes plain text; "<" first and ">" last: no edge space to preserve.
        self._xml_si_element(self._escape_control_characters(string), [])


@contextlib.contextmanager
def literal_shared_strings(module) -> Iterator[None]:
    """``module.SharedStrings`` is ``LiteralSharedStrings`` meanwhile (xlsxwriter.packager's,
    while a workbook is stored): for the whole process, like ``parallel.parallel_deflate``, so
    not for workbooks stored at once by two threads (the product stores one at a time)."""
    original = module.SharedStrings
    module.SharedStrings = LiteralSharedStrings
    try:
        yield
    finally:
        module.SharedStrings = original
