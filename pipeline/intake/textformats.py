"""Tables that arrive under a spreadsheet name but are text: HTML and SpreadsheetML 2003.

Web systems export "Excel" files that are an HTML table, and old tools save XML Spreadsheet
2003; both are named .xls. They are read when they hold a plain table. safety.py has already
refused any DOCTYPE/ENTITY, and defusedxml parses the XML.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from .read import RawSheet

SS_NS = "urn:schemas-microsoft-com:office:spreadsheet"


class _TableParser(HTMLParser):
    """Collect the cells of every <table>, honouring colspan/rowspan as merged ranges."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[list[list], list[tuple[int, int, int, int]]]] = []
        self._rows: list[list] | None = None
        self._merged: list = []
        self._cell: list[str] | None = None
        self._span = (1, 1)
        self._occupied: set[tuple[int, int]] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._rows, self._merged, self._occupied = [], [], set()
        elif tag == "tr" and self._rows is not None:
            self._rows.append([])
        elif tag in ("td", "th") and self._rows is not None:
            if not self._rows:
                self._rows.append([])
            self._cell = []
            self._span = (_int(attrs.get("rowspan")), _int(attrs.get("colspan")))
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._rows is not None:
            r = len(self._rows) - 1
            row = self._rows[r]
            c = len(row)
            while (r, c) in self._occupied:
                row.append(None)
                c += 1
            text = "".join(self._cell).strip()
            row.append(text or None)
            rowspan, colspan = self._span
            if rowspan > 1 or colspan > 1:
                self._merged.append((r, c, r + rowspan - 1, c + colspan - 1))
                for rr in range(r, r + rowspan):
                    for cc in range(c, c + colspan):
                        if (rr, cc) != (r, c):
                            self._occupied.add((rr, cc))
                row.extend([None] * (colspan - 1))
            self._cell = None
        elif tag == "table" and self._rows is not None:
            self.tables.append((self._rows, self._merged))
            self._rows = None


def _int(value) -> int:
    try:
        return max(1, min(int(value), 1000))
    except (TypeError, ValueError):
        return 1


def read_html_tables(path: Path, encoding: str, max_rows: int) -> list[RawSheet]:
    text = path.read_bytes().decode(encoding, errors="replace")
    parser = _TableParser()
    parser.feed(text)
    parser.close()
    sheets = []
    for number, (rows, merged) in enumerate(parser.tables, start=1):
        sheets.append(RawSheet(name=f"表{number}", rows=rows[:max_rows], merged=merged, truncated=len(rows) > max_rows))
    return sheets


def read_spreadsheetml(path: Path, max_rows: int) -> list[RawSheet]:
    from defusedxml import ElementTree

    root = ElementTree.parse(str(path)).getroot()
    ns = {"ss": SS_NS}
    sheets = []
    for worksheet in root.findall("ss:Worksheet", ns):
        name = worksheet.get(f"{{{SS_NS}}}Name", "Sheet1")
        rows: list[list] = []
        merged = []
        table = worksheet.find("ss:Table", ns)
        if table is None:
            continue
        r = -1
        for row in table.findall("ss:Row", ns):
            r = _int(row.get(f"{{{SS_NS}}}Index")) - 1 if row.get(f"{{{SS_NS}}}Index") else r + 1
            if r >= max_rows:
                break
            while len(rows) <= r:
                rows.append([])
            values = rows[r]
            c = -1
            for cell in row.findall("ss:Cell", ns):
                index = cell.get(f"{{{SS_NS}}}Index")
                c = _int(index) - 1 if index else c + 1
                data = cell.find("ss:Data", ns)
                value = _typed("".join(data.itertext()), data.get(f"{{{SS_NS}}}Type")) if data is not None else None
                while len(values) <= c:
                    values.append(None)
                values[c] = value
                across = int(cell.get(f"{{{SS_NS}}}MergeAcross", "0") or 0)
                down = int(cell.get(f"{{{SS_NS}}}MergeDown", "0") or 0)
                if across or down:
                    merged.append((r, c, r + down, c + across))
                c += across
        sheets.append(RawSheet(name=name, rows=rows, merged=merged))
    return sheets


def _typed(text: str, kind: str | None):
    if kind == "Number":
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "Error":
        from .read import CellError

        return CellError(text)
    return text if text != "" else None
