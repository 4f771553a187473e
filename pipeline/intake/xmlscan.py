"""What calamine does not tell: error cells, formulas with no cached value, hidden rows, and
which numbers are shown as percentages.

calamine reads an error cell (#DIV/0!) and a formula saved without its result (by tools that
do not compute) as an empty cell, which would pass silently as "not reported". A light regex
scan of the sheet XML finds them; it runs only when the part contains such markup at all.

calamine gives a cell shown as "350%" as 3.5, the number Excel stores, and no number format: a
completion rate of 3.5 could then be 350% or a bare "3.5" meaning 3.5%. The styles that show a
number as a percentage are found in the styles part, and the number cells that use them in the
sheet part, by searching for each such style's s="…" (~20 µs for a return's sheet).

The scan normally rides on safety.inspect_file's inflation pass (which inflates every part
anyway, under its caps): it hands each sheet part to ``scan_sheet_part`` once checked, so the
package is inflated once for the inspection and the scan instead of once each. ``scan_xlsx``
reopens the file for callers that did not inspect it that way. Either way, safety (size caps, no
DOCTYPE) is checked before the parts are scanned.
"""

from __future__ import annotations

import functools
import html
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

_SHEET = re.compile(r"<(?:\w+:)?sheet\b([^>]*)/?>")
_ATTR = re.compile(r'([\w:]+)\s*=\s*"([^"]*)"')
_REL = re.compile(r"<(?:\w+:)?Relationship\b([^>]*)/?>")
# Elements with or without a namespace prefix (<x:c>: the OpenXML SDK and ClosedXML write one).
_CELL = re.compile(r"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_ROW = re.compile(r"<(?:\w+:)?row\b([^>]*)>")
_VALUE = re.compile(r"<(?:\w+:)?v>(.*?)</(?:\w+:)?v>", re.S)
_FORMULA = re.compile(r"<(?:\w+:)?f\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?f>)", re.S)
_REF = re.compile(r"([A-Z]+)(\d+)")
_STYLES_TYPE = "/relationships/styles"
_NUM_FMT = re.compile(rb"<(?:\w+:)?numFmt\b([^>]*?)/?>")
_CELL_XFS = re.compile(rb"<(?:\w+:)?cellXfs\b[^>]*>(.*?)</(?:\w+:)?cellXfs>", re.S)
_XF = re.compile(rb"<(?:\w+:)?xf\b([^>]*?)/?>")
_BYTES_ATTR = re.compile(rb'([\w:]+)\s*=\s*"([^"]*)"')
# Built-in number formats shown as percentages: 0% and 0.00%.
_BUILTIN_PERCENT = {9, 10}
# Percentage styles looked for in a sheet, each with one search of the part: a workbook has one to
# a few; past this many, the rest are read as if unformatted (a hostile styles part cannot make
# the scan quadratic).
MAX_PERCENT_STYLES = 64
# Parts remembered by their bytes (_memo_small): at most this many, of at most this size each.
MEMO_ENTRIES = 64
MEMO_MAX_BYTES = 64 * 1024
_TAG_REACH = 256  # bytes from s="…" to the start and to the end of its cell's tag
_CELL_REF = re.compile(rb'<(?:\w+:)?c r="([A-Z]{1,3})([0-9]{1,7})"')  # <x:c …>: the OpenXML SDK, ClosedXML
# Parts of a format code that print themselves, not the number: "quoted text", \x, [red] or
# [$-804], and _x / *x (a space as wide as x, x repeated). A % among them is a literal sign: 0"%"
# shows 35 as "35%" without multiplying it by 100.
_FORMAT_LITERALS = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]|[_*].')


@dataclass
class SheetFlags:
    errors: dict[tuple[int, int], str] = field(default_factory=dict)  # 0-based (row, col) → "#DIV/0!"
    uncached_formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # → formula text
    hidden_rows: set[int] = field(default_factory=set)  # 1-based
    # 0-based (row, col) of the number cells shown as a percentage (the number is the fraction)
    percent_cells: set[tuple[int, int]] = field(default_factory=set)


def scan_xlsx(path: Path) -> dict[str, SheetFlags]:
    """Sheet name → flags, for the sheets that have any."""
    result: dict[str, SheetFlags] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                rels = archive.read("xl/_rels/workbook.xml.rels")
                parts = sheet_parts(archive.read("xl/workbook.xml"), rels)
            except KeyError:
                return {}
            try:
                percent = percent_styles(archive.read(styles_part(rels)))
            except KeyError:
                percent = frozenset()
            for name, part in parts.items():
                try:
                    data = archive.read(part)
                except KeyError:
                    continue
                flags = scan_sheet_part(data, percent)
                if flags is not None:
                    result[name] = flags
    except (zipfile.BadZipFile, OSError):
        return {}
    return result


# Markup without which scan_sheet_xml finds nothing. ASCII, so looking for them in the raw bytes
# is the same as looking in the text decoded from UTF-8 with replacement.
_HIDDEN_MARKERS = (b'hidden="1"', b"hidden='1'")
_CELL_MARKERS = (b't="e"', b"<f", b":f>", b":f ")


def scan_sheet_part(data: bytes, percent_styles: frozenset[int] = frozenset()) -> SheetFlags | None:
    """The flags of one sheet part's bytes, or None when it has none (the usual case, decided
    without decoding the part). ``percent_styles``: the workbook's styles that show a number as
    a percentage (``percent_styles()``), whose number cells go into ``percent_cells``."""
    percent = _percent_cells(data, percent_styles) if percent_styles else None
    if not _has_markers(data):
        return SheetFlags(percent_cells=percent) if percent else None
    flags = scan_sheet_xml(data.decode("utf-8", "replace"))
    if percent:
        flags.percent_cells = percent
    if flags.errors or flags.uncached_formulas or flags.hidden_rows or flags.percent_cells:
        return flags
    return None


def _has_markers(data: bytes) -> bool:
    """Whether any of the markers is in ``data``. Each search reads the whole part; a sheet
    without hidden rows, the usual one, has no "hidden" at all, which one search tells."""
    if b"hidden" in data and (_HIDDEN_MARKERS[0] in data or _HIDDEN_MARKERS[1] in data):
        return True
    return any(marker in data for marker in _CELL_MARKERS)


def scan_sheet_xml(xml: str) -> SheetFlags:
    flags = SheetFlags()
    if 'hidden="1"' in xml or "hidden='1'" in xml:
        for match in _ROW.finditer(xml):
            attrs = dict(_ATTR.findall(match.group(1)))
            if attrs.get("hidden") in ("1", "true") and attrs.get("r", "").isdigit():
                flags.hidden_rows.add(int(attrs["r"]))
    if 't="e"' not in xml and "<f" not in xml and ":f>" not in xml and ":f " not in xml:
        return flags
    for match in _CELL.finditer(xml):
        attrs = dict(_ATTR.findall(match.group(1)))
        body = match.group(2) or ""
        position = _position(attrs.get("r", ""))
        if position is None:
            continue
        value = _VALUE.search(body)
        if attrs.get("t") == "e":
            flags.errors[position] = html.unescape(value.group(1)) if value else "#VALUE!"
            continue
        formula = _FORMULA.search(body)
        if formula and (value is None or value.group(1) == ""):
            flags.uncached_formulas[position] = html.unescape(formula.group(1) or "")
    return flags


def sheet_parts(workbook: bytes, rels: bytes) -> dict[str, str]:
    """Sheet name → the zip part holding it, from xl/workbook.xml and its relationships."""
    workbook_xml = workbook.decode("utf-8", "replace")
    targets = {attrs.get("Id"): target for attrs, target in _relationships(rels)}
    parts = {}
    for match in _SHEET.finditer(workbook_xml):
        attrs = dict(_ATTR.findall(match.group(1)))
        rel = next((v for k, v in attrs.items() if k.endswith(":id")), None)
        if rel in targets and "name" in attrs:
            parts[html.unescape(attrs["name"])] = targets[rel]
    return parts


def styles_part(rels: bytes) -> str:
    """The zip part holding the workbook's styles (xl/styles.xml, wherever the rels put it)."""
    for attrs, target in _relationships(rels):
        if attrs.get("Type", "").endswith(_STYLES_TYPE):
            return target
    return "xl/styles.xml"


def _memo_small(func):
    """``func`` of one bytes argument, remembered for small arguments: the returns made from one
    template share their workbook relationships and styles byte for byte (3,000 returns: 30 µs
    of regular expressions a file, then a dictionary lookup). What it returns must not be changed."""
    remembered = functools.lru_cache(maxsize=MEMO_ENTRIES)(func)

    @functools.wraps(func)
    def memo(data: bytes):
        return remembered(data) if len(data) <= MEMO_MAX_BYTES else func(data)

    return memo


@_memo_small
def _relationships(rels: bytes) -> tuple[tuple[dict[str, str], str], ...]:
    """Each relationship of xl/workbook.xml's: its attributes, and its target as a zip part."""
    found = []
    for match in _REL.finditer(rels.decode("utf-8", "replace")):
        attrs = dict(_ATTR.findall(match.group(1)))
        target = attrs.get("Target", "")
        found.append((attrs, target.lstrip("/") if target.startswith("/") else f"xl/{target}"))
    return tuple(found)


@_memo_small
def percent_styles(styles: bytes) -> frozenset[int]:
    """The cell styles (indexes into cellXfs, a cell's s="…") whose number format shows the
    number as a percentage: the built-in 0% and 0.00%, or a format code with a % that is not
    literal text."""
    formats: dict[int, bool] = {}
    for match in _NUM_FMT.finditer(styles):
        attrs = dict(_BYTES_ATTR.findall(match.group(1)))
        number, code = attrs.get(b"numFmtId", b""), attrs.get(b"formatCode")
        if _is_small_number(number) and code is not None:
            formats[int(number)] = is_percent_format(html.unescape(code.decode("utf-8", "replace")))
    cell_xfs = _CELL_XFS.search(styles)
    if cell_xfs is None:
        return frozenset()
    found = set()
    for index, match in enumerate(_XF.finditer(cell_xfs.group(1))):
        number = dict(_BYTES_ATTR.findall(match.group(1))).get(b"numFmtId", b"0")
        if _is_small_number(number) and formats.get(int(number), int(number) in _BUILTIN_PERCENT):
            found.add(index)
    return frozenset(found)


def _is_small_number(text: bytes) -> bool:
    """Digits that int() takes (Python refuses over 4,300 of them) and a format id can be."""
    return text.isdigit() and len(text) <= 9


def is_percent_format(code: str) -> bool:
    """Whether an Excel number format code multiplies by 100 and shows a % sign."""
    return "%" in _FORMAT_LITERALS.sub("", code)


def _percent_cells(data: bytes, styles: frozenset[int]) -> set[tuple[int, int]]:
    """0-based (row, col) of the number cells of a sheet part that use one of ``styles``.

    Each style's s="…" is found with bytes.find, then its tag is read around it: 20 µs for a
    generated return's sheet (~11 such cells among ~250), where a regular expression over the
    part that was as careful took 50 µs. A cell written as every common writer writes it is
    found: <c r="F5" s="4">, r first (Excel, WPS, LibreOffice, openpyxl, xlsxwriter); one written
    otherwise is missed, and its number read as if it were not formatted."""
    cells = set()
    for style in sorted(styles)[:MAX_PERCENT_STYLES]:
        needle = b' s="%d"' % style
        at = data.find(needle)
        while at >= 0:
            start = data.rfind(b"<", at - _TAG_REACH if at > _TAG_REACH else 0, at)
            end = data.find(b">", at, at + _TAG_REACH)
            if start >= 0 and end >= 0 and data[end - 1] != 0x2F:  # <c … s="4"/> is empty
                tag = data[start:end]
                cell = _CELL_REF.match(tag)
                # t="s", "str", "inlineStr", "b" or "e": text, a boolean or an error, no number.
                if cell and (b' t="' not in tag or b' t="n"' in tag):
                    col = 0
                    for char in cell[1]:
                        col = col * 26 + char - 64
                    cells.add((int(cell[2]) - 1, col - 1))
            at = data.find(needle, at + len(needle))
    return cells


def _position(ref: str) -> tuple[int, int] | None:
    match = _REF.fullmatch(ref)
    if not match:
        return None
    col = 0
    for char in match.group(1):
        col = col * 26 + ord(char) - 64
    return int(match.group(2)) - 1, col - 1
