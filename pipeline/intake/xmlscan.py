"""What calamine does not tell: error cells, formulas with no cached value, hidden rows.

calamine reads an error cell (#DIV/0!) and a formula saved without its result (by tools that
do not compute) as an empty cell, which would pass silently as "not reported". A light regex
scan of the sheet XML finds them; it runs only when the part contains such markup at all.

The scan normally rides on safety.inspect_file's inflation pass (which inflates every part
anyway, under its caps): it hands each sheet part to ``scan_sheet_part`` once checked, so the
package is inflated once for the inspection and the scan instead of once each. ``scan_xlsx``
reopens the file for callers that did not inspect it that way. Either way, safety (size caps, no
DOCTYPE) is checked before the parts are scanned.
"""

from __future__ import annotations

import html
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

_SHEET = re.compile(r"<(?:\w+:)?sheet\b([^>]*)/?>")
_ATTR = re.compile(r'([\w:]+)\s*=\s*"([^"]*)"')
_REL = re.compile(r"<(?:\w+:)?Relationship\b([^>]*)/?>")
_CELL = re.compile(r"<c\b([^>]*?)(?:/>|>(.*?)</c>)", re.S)
_ROW = re.compile(r"<row\b([^>]*)>")
_VALUE = re.compile(r"<v>(.*?)</v>", re.S)
_FORMULA = re.compile(r"<f\b[^>]*?(?:/>|>(.*?)</f>)", re.S)
_REF = re.compile(r"([A-Z]+)(\d+)")


@dataclass
class SheetFlags:
    errors: dict[tuple[int, int], str] = field(default_factory=dict)  # 0-based (row, col) → "#DIV/0!"
    uncached_formulas: dict[tuple[int, int], str] = field(default_factory=dict)  # → formula text
    hidden_rows: set[int] = field(default_factory=set)  # 1-based


def scan_xlsx(path: Path) -> dict[str, SheetFlags]:
    """Sheet name → flags, for the sheets that have any."""
    result: dict[str, SheetFlags] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                parts = sheet_parts(archive.read("xl/workbook.xml"), archive.read("xl/_rels/workbook.xml.rels"))
            except KeyError:
                return {}
            for name, part in parts.items():
                try:
                    data = archive.read(part)
                except KeyError:
                    continue
                flags = scan_sheet_part(data)
                if flags is not None:
                    result[name] = flags
    except (zipfile.BadZipFile, OSError):
        return {}
    return result


# Markup without which scan_sheet_xml finds nothing. ASCII, so looking for them in the raw bytes
# is the same as looking in the text decoded from UTF-8 with replacement.
_HIDDEN_MARKERS = (b'hidden="1"', b"hidden='1'")
_CELL_MARKERS = (b't="e"', b"<f")


def scan_sheet_part(data: bytes) -> SheetFlags | None:
    """The flags of one sheet part's bytes, or None when it has none (the usual case, decided
    without decoding the part)."""
    if not _has_markers(data):
        return None
    flags = scan_sheet_xml(data.decode("utf-8", "replace"))
    if flags.errors or flags.uncached_formulas or flags.hidden_rows:
        return flags
    return None


def _has_markers(data: bytes) -> bool:
    """Whether any of the markers is in ``data``. Each search reads the whole part; a sheet
    without hidden rows, the usual one, has no "hidden" at all, which one search tells."""
    if b"hidden" in data and (_HIDDEN_MARKERS[0] in data or _HIDDEN_MARKERS[1] in data):
        return True
    return _CELL_MARKERS[0] in data or _CELL_MARKERS[1] in data


def scan_sheet_xml(xml: str) -> SheetFlags:
    flags = SheetFlags()
    if 'hidden="1"' in xml or "hidden='1'" in xml:
        for match in _ROW.finditer(xml):
            attrs = dict(_ATTR.findall(match.group(1)))
            if attrs.get("hidden") in ("1", "true") and attrs.get("r", "").isdigit():
                flags.hidden_rows.add(int(attrs["r"]))
    if 't="e"' not in xml and "<f" not in xml:
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
    rels_xml = rels.decode("utf-8", "replace")
    targets = {}
    for match in _REL.finditer(rels_xml):
        attrs = dict(_ATTR.findall(match.group(1)))
        target = attrs.get("Target", "")
        target = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
        targets[attrs.get("Id")] = target
    parts = {}
    for match in _SHEET.finditer(workbook_xml):
        attrs = dict(_ATTR.findall(match.group(1)))
        rel = next((v for k, v in attrs.items() if k.endswith(":id")), None)
        if rel in targets and "name" in attrs:
            parts[html.unescape(attrs["name"])] = targets[rel]
    return parts


def _position(ref: str) -> tuple[int, int] | None:
    match = _REF.fullmatch(ref)
    if not match:
        return None
    col = 0
    for char in match.group(1):
        col = col * 26 + ord(char) - 64
    return int(match.group(2)) - 1, col - 1
