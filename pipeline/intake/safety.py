"""Decide, before any parser touches a file, what it is and whether it is safe to parse.

Nothing here trusts the extension or the sizes a zip declares. Measured: no reader (calamine,
openpyxl, pandas) limits decompression; a 1 MB file inflating to 1 GB is read whole at 3.1 GB RSS.
So an .xlsx/.ods is checked here first: the central directory against the local headers, every
part inflated in chunks while counting bytes, the CRC of each part, and every part scanned (not
parsed) for ``<!DOCTYPE`` / ``<!ENTITY`` (billion laughs, external entities). Problems that only a
parser can reveal (a sheet whose dimension makes calamine allocate 550 GB) are contained by
``pipeline.intake.isolate`` instead.

Since the inspection inflates every part anyway, it can also hand the sheets to xmlscan (error
cells, formulas without a result, hidden rows: ``scan_sheets=True``), and give the reader the
package re-zipped without compression (``repack=True``), so that a workbook is inflated once
rather than three times (issue 7: inspection, scan and calamine each inflated it; at 3,000
returns that was half of the reading stage).
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import LimitsConfig
from .xmlscan import SheetFlags, percent_styles, scan_sheet_part, sheet_parts, styles_part

log = logging.getLogger(__name__)

MB = 1024 * 1024

SPREADSHEET_SUFFIXES = frozenset({".xlsx", ".xlsm", ".xls", ".ods", ".csv", ".et"})
# Names a browser, mail client or copy tool gives a file it is still writing.
IN_PROGRESS_SUFFIXES = frozenset({".part", ".tmp", ".crdownload", ".download"})

# Structural caps that no real workbook comes near (Excel writes tens of parts, not thousands).
MAX_ZIP_ENTRIES = 10_000
MAX_CENTRAL_DIRECTORY = 16 * MB
# Below this much inflated data the ratio check is pointless (no reader is hurt by 1 MB), and tiny
# workbooks of repetitive XML can legitimately compress very well.
RATIO_FLOOR_BYTES = 1 * MB
# Small parts read whole to classify the package ([Content_Types].xml, mimetype, manifest).
MAX_CLASSIFY_PART = 4 * MB

READ_CHUNK = 256 * 1024
INFLATE_CHUNK = 1 * MB
TEXT_SAMPLE = 64 * 1024
# A zip up to this size is read into memory at once: one read instead of a seek and a read per
# header and per part (returns are typically 10–100 KB), and memory stays bounded.
WHOLE_FILE = 1 * MB
# The inflated parts are kept for the re-zipped copy (repack=True) only up to this total; a
# larger workbook is read from its file by calamine, as before (memory stays bounded).
REPACK_MAX_BYTES = 8 * MB

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_EOCD = struct.Struct("<4sHHHHIIH")
_CENTRAL_HEADER = struct.Struct("<4sHHHHHHIIIHHHHHII")
_ZIP64_SENTINEL = 0xFFFFFFFF
_FLAG_ENCRYPTED = 0x1
_FLAG_DATA_DESCRIPTOR = 0x8

# What an XML parser would act on. XML is case-sensitive, so "<!doctype" is not a declaration.
# The UTF-16 forms (without the trailing NUL) match both little- and big-endian parts.
_DANGEROUS_XML = {
    needle: label
    for label in ("<!DOCTYPE", "<!ENTITY")
    for needle in (label.encode("ascii"), label.encode("utf-16-le")[:-1])
}
_SCAN_OVERLAP = max(len(needle) for needle in _DANGEROUS_XML) - 1
_XML_HEAD = 512  # enough for a BOM and the XML declaration
# An XML declaration may name an encoding in which the needles above look different.
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)["']""")
# Encodings in which every character of "<!DOCTYPE" is its ASCII byte (UTF-16 is scanned apart).
_SAFE_XML_ENCODINGS = frozenset(
    "utf-8 utf8 utf-16 utf-16le utf-16be us-ascii ascii latin-1 latin1 gb2312 gbk gb18030 cp936 "
    "big5 euc-cn euc-kr euc-jp shift_jis".split()
)
_SAFE_XML_ENCODING_FAMILIES = ("iso-8859-", "iso8859-", "windows-125", "cp125")
# How Excel, WPS, LibreOffice and xlsxwriter start every XML part.
_USUAL_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"'


SPREADSHEET_CONTENT_TYPES = (
    "spreadsheetml.sheet.main+xml",
    "spreadsheetml.template.main+xml",
    "ms-excel.sheet.macroenabled.main+xml",
    "ms-excel.template.macroenabled.main+xml",
)
XLSB_CONTENT_TYPE = "ms-excel.sheet.binary.macroenabled.main"
ODS_MIMETYPE = "application/vnd.oasis.opendocument.spreadsheet"
XML2003_NAMESPACE = "urn:schemas-microsoft-com:office:spreadsheet"

_TEXT_CONTROL = frozenset(chr(code) for code in range(32)) - set("\t\n\r\f\v")

MESSAGES = {
    "empty": "文件是空的（0 字节），请重新导出或保存后再发送。",
    "truncated": "文件不完整（可能没有下载或复制完），请重新发送完整的文件。",
    "corrupt": "文件已损坏，无法打开，请用 Excel 或 WPS 打开后重新保存，再发送。",
    "encrypted": "文件已加密（设有打开密码），请发送未加密的副本。",
    "protected": "文件设有保护密码（修改密码或工作簿保护），无法读取；请取消保护后另存一份再发送。",
    "unreadable": "无法读取文件（权限不足或正被其他程序占用），请关闭占用它的程序后重新运行。",
    "not-a-spreadsheet": "无法识别的文件格式（不是 Excel、WPS 或 CSV 表格），请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。",
}


@dataclass(frozen=True)
class Verdict:
    """What a file is (``kind``) or why it is refused (``problem`` and ``code``)."""

    kind: str | None  # "xlsx" (also xlsm), "xls", "ods", "csv", "html", "xml2003"; None = refused
    problem: str | None  # Chinese, without the file name (the caller adds it)
    code: str | None  # "empty", "truncated", "corrupt", "zip-bomb", "xml-entity", "encrypted",
    # "not-a-spreadsheet", "too-large", "unreadable"
    encoding: str | None = None  # csv/html: "utf-8-sig", "utf-8", "gb18030" (or "utf-16" with BOM)
    # xlsx inspected with scan_sheets=True: sheet name → what xmlscan found in it (only sheets
    # with findings); None when the sheets were not scanned (the reader then scans them itself).
    sheet_flags: dict[str, SheetFlags] | None = field(default=None, hash=False)
    # xlsx inspected with repack=True and small enough: the same parts, checked, in a zip
    # without compression, for calamine to parse without inflating them again; else None.
    package: bytes | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.kind is not None


class _Refused(Exception):
    """Internal: stop inspecting and return this verdict."""

    def __init__(self, code: str, problem: str | None = None):
        super().__init__(code)
        self.verdict = Verdict(None, problem or MESSAGES[code], code)


def _accept(kind: str, encoding: str | None = None) -> Verdict:
    return Verdict(kind, None, None, encoding)


def _mb(size: float) -> str:
    return f"{size / MB:.0f} MB" if size >= 10 * MB else f"{size / MB:.1f} MB"


# ----------------------------------------------------------------------------------------------
# Discovery helpers


def should_skip(path: Path) -> str | None:
    """The reason to ignore a file silently (it is logged, not reported as an error), or None.

    A spreadsheet still being downloaded ("表.xlsx.crdownload") is not skipped: ``is_settling``
    tells the caller to come back for it later.
    """
    name = Path(path).name
    if name.startswith("~$"):
        return "Excel/WPS 打开文件时生成的临时锁文件"
    if name.startswith("."):
        return "隐藏文件"
    suffix = Path(name).suffix.lower()
    if suffix in IN_PROGRESS_SUFFIXES and Path(Path(name).stem).suffix.lower() in SPREADSHEET_SUFFIXES:
        return None
    if suffix not in SPREADSHEET_SUFFIXES:
        return f"不是表格文件（{suffix or '无扩展名'}）"
    return None


def is_settling(path: Path, now: float, settle_seconds: float) -> bool:
    """True while the file may still be being copied or downloaded: come back later.

    Judged by a download-in-progress name, or a modification time within ``settle_seconds`` of
    ``now`` (in either direction: a clock a little ahead must not make a file look settled, and a
    file stamped far in the future must not wait forever). A copy tool that stamps the source's
    old mtime at the start of the copy (rare; ``cp -p`` and robocopy stamp it at the end) defeats
    the time test; the parser then sees a truncated file, which is refused and read next run.
    """
    path = Path(path)
    if path.suffix.lower() in IN_PROGRESS_SUFFIXES:
        return True
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return True  # vanished or being replaced right now
    return abs(now - mtime) < settle_seconds


# ----------------------------------------------------------------------------------------------
# Text encodings


def detect_text_encoding(data: bytes) -> str:
    """The text's encoding, "utf-8-sig", "utf-8" or "gb18030", found by decoding (never by name).

    ``data`` may be a prefix of the file: a character cut off at the end is tolerated. Text that
    is neither UTF-8 nor GB18030 gets "gb18030" (the reader decodes with replacement characters).
    A UTF-16 byte-order mark gives "utf-16" (Excel's "Unicode 文本" and some web exports).
    """
    return _detect_encoding([data]) or "gb18030"


def _detect_encoding(chunks: Iterable[bytes]) -> str | None:
    """One pass over the chunks, both candidate decoders at once; None when neither decodes."""
    chunks = iter(chunks)
    first = next(chunks, b"")
    if first.startswith(codecs.BOM_UTF8):
        candidates = ["utf-8-sig"]
    elif first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8", "gb18030"]
    decoders = {name: codecs.getincrementaldecoder(name)() for name in candidates}
    for chunk in _chain_first(first, chunks):
        for name in list(decoders):
            try:
                decoders[name].decode(chunk, final=False)
            except UnicodeDecodeError:
                del decoders[name]
        if not decoders:
            return None
    return next(name for name in candidates if name in decoders)


def _chain_first(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


# ----------------------------------------------------------------------------------------------
# The verdict


def inspect_file(path: Path, limits: LimitsConfig, *, scan_sheets: bool = False, repack: bool = False) -> Verdict:
    """Sniff the first bytes and check the structure; never raises for a bad or hostile file.

    Reads the file (and inflates a zip) in bounded chunks: memory stays at a few MB whatever the
    file claims or contains (beyond one sheet part's bytes when ``scan_sheets``, which xmlscan
    needs whole, as it did when it read them itself, and REPACK_MAX_BYTES when ``repack``).
    With ``scan_sheets``, an accepted xlsx comes with ``sheet_flags`` from the same inflation
    pass; with ``repack``, with its ``package`` as well.
    """
    if not isinstance(path, Path):
        path = Path(path)  # only a str: Path(a Path) parses it all over again
    try:
        size = path.stat().st_size
        if size == 0:
            raise _Refused("empty")
        if size > limits.max_total_mb * MB:
            raise _Refused(
                "too-large",
                f"文件过大（{_mb(size)}，上限 {limits.max_total_mb:g} MB），"
                "请删除多余的工作表、行或图片后重新保存，再发送。",
            )
        with path.open("rb") as handle:
            head = handle.read(TEXT_SAMPLE)
            if head.startswith(ZIP_MAGIC):
                if size <= WHOLE_FILE:
                    # The zip is judged on the bytes read here (a file changing under us is
                    # then a consistent snapshot, or refused as truncated).
                    data = head + handle.read(size - len(head)) if size > len(head) else head
                    return _inspect_zip(io.BytesIO(data), len(data), limits, scan_sheets, repack)
                return _inspect_zip(handle, size, limits, scan_sheets, repack)
            if head.startswith(ZIP_EMPTY_MAGIC):
                raise _Refused("not-a-spreadsheet")
            if head.startswith(OLE_MAGIC):
                return _inspect_ole(handle, size)
            return _inspect_text(handle, head)
    except _Refused as refused:
        return refused.verdict
    except OSError:
        return _Refused("unreadable").verdict
    except Exception:
        # A container shaped in a way no check above foresaw: refuse the file, keep the run going,
        # and leave the traceback in the log so the check can be added.
        log.exception("inspect_file: unexpected failure on %s", path)
        return _Refused("corrupt").verdict


# ---- zip: xlsx, xlsm, ods


@dataclass
class _Entry:
    info: zipfile.ZipInfo
    data_start: int
    data_end: int


def _inspect_zip(handle, size: int, limits: LimitsConfig, scan_sheets: bool = False, repack: bool = False) -> Verdict:
    _check_end_record(handle, size)
    try:
        archive = zipfile.ZipFile(handle)
        infos = archive.infolist()
        start_dir = getattr(archive, "start_dir", size)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        struct.error,
        EOFError,
        NotImplementedError,
        UnicodeDecodeError,
        OverflowError,
    ):
        raise _Refused("corrupt") from None
    if len(infos) > MAX_ZIP_ENTRIES:
        raise _bomb(f"内部部件多达 {len(infos)} 个")
    entries = _check_local_headers(handle, infos, size, start_dir)
    # Small parts inflated ahead of the pass (to classify the package, to map its sheets): the
    # pass checks them like every other part, from these bytes, without inflating them again.
    inflated: dict[str, bytes] = {}
    kind = _classify_package(handle, entries, limits, inflated)
    _check_declared_sizes(infos, limits)
    sheets = _sheet_parts(handle, entries, limits, inflated) if scan_sheets and kind == "xlsx" else None
    percent = _percent_styles(handle, entries, limits, inflated) if sheets else frozenset()
    kept = _Kept() if repack and kind == "xlsx" else None
    flags = _inflate_all(handle, entries, limits, inflated, sheets, kept, percent)
    package = _stored_zip(infos, kept.parts) if kept is not None and not kept.too_big else None
    return Verdict(kind, None, None, None, flags, package)


_CENTRAL_MAGIC = b"PK\x01\x02"


def _check_end_record(handle, size: int) -> None:
    """Cheap look at the end-of-central-directory record before zipfile builds its index."""
    tail_size = min(size, 65_536 + _EOCD.size)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    at = tail.rfind(ZIP_EMPTY_MAGIC)
    if at < 0 or at + _EOCD.size > len(tail):
        # A zip always ends with this record: the file stops short (half-downloaded).
        raise _Refused("truncated")
    _, _, _, _, entries, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    if entries != 0xFFFF and entries > MAX_ZIP_ENTRIES:
        raise _bomb(f"内部部件多达 {entries} 个")
    if cd_size != _ZIP64_SENTINEL and cd_size > MAX_CENTRAL_DIRECTORY:
        raise _bomb("内部目录异常庞大")
    if cd_offset != _ZIP64_SENTINEL and cd_size != _ZIP64_SENTINEL and cd_offset + cd_size > size:
        raise _Refused("truncated")


def _check_local_headers(handle, infos, size: int, start_dir: int) -> list[_Entry]:
    """Each local header must agree with the central directory, and no two entries may overlap
    (overlapping entries are how a 46 MB zip expands to 4.5 PB)."""
    seen: set[str] = set()
    entries = []
    for info in infos:
        name = info.filename
        if name in seen:
            raise _malformed(f"{name} 出现了两次")
        seen.add(name)
        if info.flag_bits & _FLAG_ENCRYPTED:
            raise _Refused("encrypted")
        handle.seek(info.header_offset)
        raw = handle.read(_LOCAL_HEADER.size)
        if len(raw) < _LOCAL_HEADER.size:
            raise _Refused("truncated")
        (
            signature,
            _version,
            flags,
            method,
            _time,
            _date,
            crc,
            compressed,
            uncompressed,
            name_len,
            extra_len,
        ) = _LOCAL_HEADER.unpack(raw)
        if signature != ZIP_MAGIC:
            raise _malformed(f"{name} 的记录位置不对")
        local_name = handle.read(name_len)
        # ASCII reads the same in both encodings, and Python decodes UTF-8 without the codec
        # lookup that cp437 takes (30,000 names at 3,000 returns).
        encoding = "utf-8" if flags & 0x800 or local_name.isascii() else "cp437"
        if local_name.decode(encoding, "replace") != info.orig_filename or method != info.compress_type:
            raise _malformed(f"{name} 的记录前后不一致")
        # With a data descriptor the local header may leave CRC and sizes at zero; ZIP64 puts
        # 0xFFFFFFFF there and the real sizes in the extra field.
        deferred = bool(flags & _FLAG_DATA_DESCRIPTOR)
        if not (deferred and crc == 0) and crc != info.CRC:
            raise _malformed(f"{name} 的记录前后不一致")
        for local, central in (
            (compressed, info.compress_size),
            (uncompressed, info.file_size),
        ):
            if local == _ZIP64_SENTINEL or (deferred and local == 0):
                continue
            if local != central:
                raise _malformed(f"{name} 的记录前后不一致")
        data_start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        entries.append(_Entry(info, data_start, data_start + info.compress_size))
    entries.sort(key=lambda entry: entry.info.header_offset)
    end_of_data = min(size, start_dir)
    previous_end = 0
    for entry in entries:
        if entry.info.header_offset < previous_end:
            raise _bomb(f"{entry.info.filename} 与其他部件重叠")
        previous_end = entry.data_end
    if previous_end > end_of_data:
        raise _Refused("truncated" if previous_end > size else "corrupt")
    return entries


def _check_declared_sizes(infos, limits: LimitsConfig) -> None:
    """The sizes the directory declares: cheap, and enough for an honest bomb."""
    max_part = limits.max_part_mb * MB
    total = compressed = 0
    for info in infos:
        if info.file_size > max_part:
            raise _bomb(f"{info.filename} 解压后 {_mb(info.file_size)}，超过上限 {limits.max_part_mb:g} MB")
        total += info.file_size
        compressed += info.compress_size
    _check_totals(total, compressed, limits)


def _check_totals(total: int, compressed: int, limits: LimitsConfig, part: str = "") -> None:
    if total > limits.max_total_mb * MB:
        raise _bomb(f"解压后总大小超过 {limits.max_total_mb:g} MB")
    if total > RATIO_FLOOR_BYTES and total > limits.max_ratio * max(compressed, 1):
        where = f"{part} 处" if part else ""
        raise _bomb(f"{where}压缩比超过 {limits.max_ratio:g} 倍")


def _classify_package(handle, entries: list[_Entry], limits: LimitsConfig, inflated: dict[str, bytes]) -> str:
    by_name = {entry.info.filename: entry for entry in entries}
    if "mimetype" in by_name:
        mimetype = _read_small(handle, by_name["mimetype"], limits, inflated).decode("ascii", "replace").strip()
        if mimetype.startswith(ODS_MIMETYPE):
            manifest = by_name.get("META-INF/manifest.xml")
            if manifest and b"encryption-data" in _read_small(handle, manifest, limits, inflated):
                raise _Refused("encrypted")
            return "ods"
        if mimetype.startswith("application/vnd.oasis.opendocument.text"):
            raise _not_spreadsheet("Writer 文字文档")
        if mimetype.startswith("application/vnd.oasis.opendocument"):
            raise _not_spreadsheet("OpenDocument 文档")
    if "[Content_Types].xml" in by_name:
        types = _read_small(handle, by_name["[Content_Types].xml"], limits, inflated)
        types = types.decode("utf-8", "replace").lower()
        if any(content_type in types for content_type in SPREADSHEET_CONTENT_TYPES):
            return "xlsx"
        if XLSB_CONTENT_TYPE in types:
            raise _Refused(
                "not-a-spreadsheet",
                "这是 .xlsb 二进制工作簿，暂不支持；请在 Excel 中另存为 .xlsx 后发送。",
            )
        if "wordprocessingml" in types:
            raise _not_spreadsheet("Word 文档")
        if "presentationml" in types:
            raise _not_spreadsheet("PowerPoint 演示文稿")
        if "xl/workbook.xml" in by_name:
            return "xlsx"  # a sloppy writer's content types, but the workbook is there
        raise _Refused("not-a-spreadsheet")
    raise _Refused(
        "not-a-spreadsheet",
        "这是一个压缩包，不是表格；请解压后发送其中的表格文件（.xlsx）。",
    )


def _read_small(handle, entry: _Entry, limits: LimitsConfig, inflated: dict[str, bytes]) -> bytes:
    if entry.info.file_size > MAX_CLASSIFY_PART:
        raise _bomb(f"{entry.info.filename} 解压后 {_mb(entry.info.file_size)}")
    cap = min(limits.max_part_mb * MB, MAX_CLASSIFY_PART)
    data = _inflate_small(handle, entry, cap)
    if data is None:
        data = b"".join(_inflate(handle, entry, cap))
    inflated[entry.info.filename] = data
    return data


_WORKBOOK = "xl/workbook.xml"
_WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"


def _sheet_parts(handle, entries: list[_Entry], limits: LimitsConfig, inflated: dict[str, bytes]):
    """Part name → the sheet names it holds, for the scan; None to leave the scan to the reader.

    Found with regular expressions on the bytes (xmlscan), never a parser: the pass has not yet
    checked these two parts for DTDs. A workbook without them has no sheets to scan."""
    by_name = {entry.info.filename: entry for entry in entries}
    workbook, rels = by_name.get(_WORKBOOK), by_name.get(_WORKBOOK_RELS)
    if workbook is None or rels is None:
        return {}
    if workbook.info.file_size > MAX_CLASSIFY_PART or rels.info.file_size > MAX_CLASSIFY_PART:
        return None  # not refused for that: read_book scans such a workbook on its own
    names = sheet_parts(_read_small(handle, workbook, limits, inflated), _read_small(handle, rels, limits, inflated))
    parts: dict[str, list[str]] = {}
    for sheet, part in names.items():
        parts.setdefault(part, []).append(sheet)
    return parts


def _percent_styles(handle, entries: list[_Entry], limits: LimitsConfig, inflated: dict[str, bytes]) -> frozenset[int]:
    """The styles that show a number as a percentage (xmlscan.percent_styles), read ahead of the
    pass like the workbook part (regular expressions on the bytes, never a parser); none when
    the styles part is missing or outsized (its numbers are then read as if unformatted)."""
    rels = inflated.get(_WORKBOOK_RELS)
    entry = {entry.info.filename: entry for entry in entries}.get(styles_part(rels) if rels else "xl/styles.xml")
    if entry is None or entry.info.file_size > MAX_CLASSIFY_PART:
        return frozenset()
    return percent_styles(_read_small(handle, entry, limits, inflated))


def _inflate_all(
    handle,
    entries: list[_Entry],
    limits: LimitsConfig,
    inflated: dict[str, bytes] | None = None,
    sheets: dict[str, list[str]] | None = None,
    kept: _Kept | None = None,
    percent: frozenset[int] = frozenset(),
) -> dict[str, SheetFlags] | None:
    """Inflate every part, counting what comes out (the declared sizes may lie), checking its CRC
    and scanning it for DTD declarations. Nothing is kept, except a sheet part's bytes while
    xmlscan looks at them (``sheets``: part → sheet names; returns what it found, by sheet, with
    the number cells in one of the ``percent`` styles), and the checked parts in ``kept`` while
    they fit."""
    inflated = inflated or {}
    flags: dict[str, SheetFlags] | None = None if sheets is None else {}
    part_cap = limits.max_part_mb * MB
    # Below both, _check_totals cannot refuse: not called for every small part.
    quiet_total = min(RATIO_FLOOR_BYTES, limits.max_total_mb * MB)
    total_compressed = sum(entry.info.compress_size for entry in entries)
    total = 0
    for entry in entries:
        name = entry.info.filename
        crc = 0
        produced = 0
        head = b""
        carry = b""
        sheet_names = sheets.get(name) if sheets else None
        repacking = kept is not None and not kept.too_big
        pieces: list[bytes] = []
        if name in inflated:
            chunks = (inflated[name],)
        else:
            whole = _inflate_small(handle, entry, part_cap)
            chunks = (whole,) if whole is not None else _inflate(handle, entry, part_cap)
        for chunk in chunks:
            produced += len(chunk)
            total += len(chunk)
            if total > quiet_total:
                _check_totals(total, total_compressed, limits, name)
            crc = zlib.crc32(chunk, crc)
            if len(head) < _XML_HEAD:
                head += chunk[:_XML_HEAD]
                if len(head) >= _XML_HEAD:
                    _check_xml_encoding(name, head)
            _scan_for_dtd(name, carry, chunk)
            carry = chunk[-_SCAN_OVERLAP:]
            if repacking and total > REPACK_MAX_BYTES:
                kept.give_up()
                repacking = False
                if not sheet_names:
                    pieces.clear()
            if sheet_names or repacking:
                pieces.append(chunk)
        if len(head) < _XML_HEAD:
            _check_xml_encoding(name, head)
        if crc != entry.info.CRC or produced != entry.info.file_size:
            raise _damaged(name)
        data = b"".join(pieces)
        del pieces
        if sheet_names:
            found = scan_sheet_part(data, percent)
            if found is not None:
                flags.update(dict.fromkeys(sheet_names, found))
        if repacking:
            kept.parts.append((entry.info, data, crc))
    return flags


class _Kept:
    """The parts the pass checked, (info, bytes, CRC) each, while they total REPACK_MAX_BYTES at
    most; past that they are let go (``too_big``) and the reader inflates the file itself."""

    def __init__(self):
        self.parts: list[tuple[zipfile.ZipInfo, bytes, int]] = []
        self.too_big = False

    def give_up(self) -> None:
        self.parts.clear()
        self.too_big = True


def _stored_zip(infos, kept: list) -> bytes:
    """The kept parts as a zip without compression, in the central directory's order, with the
    names as the file spelt them (UTF-8, flagged as such)."""
    by_name = {info.orig_filename: (data, crc) for info, data, crc in kept}
    local_header, central_header = _LOCAL_HEADER.pack, _CENTRAL_HEADER.pack
    body: list[bytes] = []
    directory: list[bytes] = []
    offset = 0
    for info in infos:
        data, crc = by_name[info.orig_filename]
        name = info.orig_filename.encode("utf-8")
        size = len(data)
        body += (local_header(ZIP_MAGIC, 20, 0x800, 0, 0, 0x21, crc, size, size, len(name), 0), name, data)
        directory += (
            central_header(
                _CENTRAL_MAGIC, 20, 20, 0x800, 0, 0, 0x21, crc, size, size, len(name), 0, 0, 0, 0, 0, offset
            ),
            name,
        )
        offset += _LOCAL_HEADER.size + len(name) + size
    central = b"".join(directory)
    body += (central, _EOCD.pack(ZIP_EMPTY_MAGIC, 0, 0, len(infos), len(infos), len(central), offset, 0))
    return b"".join(body)  # one copy of the parts, not three


def _scan_for_dtd(part: str | None, carry: bytes, chunk: bytes) -> None:
    """Look for a DTD declaration in ``chunk``, or straddling it and the previous chunk's tail.

    Scanned, not parsed: a parser is exactly what must not see it."""
    if b"!" not in chunk and b"!" not in carry:
        # Every needle has a "!", which XML rarely holds: one memchr over the chunk instead of a
        # search for four needles in text full of "<" (measured at 3,000 returns: a quarter of
        # the inspection's time went to the DTD scan alone).
        return
    straddle = carry + chunk[:_SCAN_OVERLAP]
    for needle, label in _DANGEROUS_XML.items():
        if needle in chunk or needle in straddle:
            where = f"{part} 中的 {label}" if part else label
            raise _Refused(
                "xml-entity",
                f"文件含有不安全的 XML 声明（{where}），疑似恶意构造，已拒绝读取；"
                "请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。",
            )


def _inflate_small(handle, entry: _Entry, part_cap: float) -> bytes | None:
    """The whole part in one read and one call to zlib, when that is all it takes (the usual
    part of a return is a few KB); None for anything else (large, empty, truncated, damaged or
    unsupported), which ``_inflate`` then handles from the start, exactly as for any part.
    The same cap as ``_inflate``: zlib stops at INFLATE_CHUNK, and more than ``part_cap`` of it
    is refused before anyone looks at it."""
    info = entry.info
    if not 0 < info.compress_size <= READ_CHUNK or info.compress_type not in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        return None
    handle.seek(entry.data_start)
    data = handle.read(info.compress_size)
    if len(data) != info.compress_size:
        return None
    if info.compress_type == zipfile.ZIP_DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(data, INFLATE_CHUNK)
        except zlib.error:
            return None
        if not inflater.eof:
            return None
    if len(data) > part_cap:
        raise _bomb(f"{info.filename} 解压后超过 {part_cap / MB:g} MB")
    return data


def _inflate(handle, entry: _Entry, part_cap: float) -> Iterator[bytes]:
    """Yield the part's inflated bytes in bounded chunks, stopping as soon as it outgrows the
    cap: the headers are the attacker's, the count is ours. A part that outgrows only its
    declared size is left to the caller's size and CRC check: one flipped bit does that too, and
    "damaged, save it again" is then the right thing to tell the user."""
    info = entry.info
    name = info.filename
    if info.compress_type == zipfile.ZIP_STORED:
        inflater = None
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    else:
        raise _malformed(f"{name} 使用了不支持的压缩方式")
    produced = 0

    def counted(chunk: bytes) -> bytes:
        nonlocal produced
        produced += len(chunk)
        if produced > part_cap:
            raise _bomb(f"{name} 解压后超过 {part_cap / MB:g} MB")
        return chunk

    handle.seek(entry.data_start)
    remaining = info.compress_size
    if remaining == 0:
        return  # a directory entry, or an empty part (a size mismatch is caught by the caller)
    try:
        while remaining:
            data = handle.read(min(READ_CHUNK, remaining))
            if not data:
                raise _Refused("truncated")
            remaining -= len(data)
            if inflater is None:
                yield counted(data)
                continue
            while data:
                out = inflater.decompress(data, INFLATE_CHUNK)
                data = inflater.unconsumed_tail
                if out:
                    yield counted(out)
                if inflater.eof:
                    break
            if inflater.eof:
                break
        if inflater is not None:
            # Output zlib still holds once every input byte is in (bounded, one chunk at a time).
            while not inflater.eof:
                out = inflater.decompress(b"", INFLATE_CHUNK)
                if not out:
                    break
                yield counted(out)
            if not inflater.eof:
                raise _damaged(name)
    except zlib.error:
        raise _damaged(name) from None


_UNSCANNABLE_XML_STARTS = (
    b"\x00\x00\xfe\xff",  # UTF-32 BE with BOM
    b"\xff\xfe\x00\x00",  # UTF-32 LE with BOM
    b"\x00\x00\x00<",  # UCS-4 BE
    b"<\x00\x00\x00",  # UCS-4 LE
    b"\x4c\x6f\xa7\x94",  # "<?xm" in EBCDIC
)


def _check_xml_encoding(part: str | None, head: bytes) -> None:
    """Refuse XML in an encoding where the DTD scan could not see "<!DOCTYPE" (UTF-7, EBCDIC,
    UTF-32). Binary parts (images, vbaProject.bin) do not start with an XML declaration."""
    if head.startswith(_USUAL_XML_DECLARATION):
        return  # what the pattern below would read as UTF-8, in a fraction of the time
    match = _XML_ENCODING.match(head[:_XML_HEAD].removeprefix(codecs.BOM_UTF8))
    declared = match.group(1).decode("ascii").lower() if match else "utf-8"
    if head.startswith(_UNSCANNABLE_XML_STARTS) or (
        declared not in _SAFE_XML_ENCODINGS and not declared.startswith(_SAFE_XML_ENCODING_FAMILIES)
    ):
        where = f"（{part}）" if part else ""
        raise _Refused(
            "xml-entity",
            f"文件的 XML 使用了不支持的编码{where}，已拒绝读取；请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。",
        )


def _bomb(detail: str) -> _Refused:
    return _Refused(
        "zip-bomb",
        f"文件疑似恶意构造的压缩包（{detail}），已拒绝读取；如确为正常表格，请删除多余的内容后重新保存，再发送。",
    )


def _malformed(detail: str) -> _Refused:
    return _Refused(
        "corrupt",
        f"文件结构异常（{detail}），请用 Excel 或 WPS 打开后重新保存，再发送。",
    )


def _damaged(part: str) -> _Refused:
    """A part that fails to inflate, or inflates to other bytes than were written."""
    return _Refused("corrupt", f"文件已损坏（{part} 校验失败），请重新保存后发送。")


def _not_spreadsheet(what: str) -> _Refused:
    return _Refused(
        "not-a-spreadsheet",
        f"这不是表格文件（看起来是 {what}），请发送 Excel 表格（.xlsx）。",
    )


# ---- OLE2: xls (BIFF), WPS .et, or an encrypted OOXML package


def _inspect_ole(handle, size: int) -> Verdict:
    import msoffcrypto
    import olefile

    if size < olefile.MINIMAL_OLEFILE_SIZE:
        raise _Refused("truncated")
    handle.seek(0)
    try:
        ole = olefile.OleFileIO(handle)
        streams = {"/".join(entry).lower() for entry in ole.listdir(streams=True, storages=False)}
    except Exception:  # olefile raises many types on a broken container
        raise _Refused("corrupt") from None
    if "encryptioninfo" in streams or "encryptedpackage" in streams:
        raise _Refused("encrypted")
    if "workbook" in streams or "book" in streams:
        if "workbook" in streams:
            _check_xls_encryption(handle, msoffcrypto)
        return _accept("xls")
    if "worddocument" in streams:
        raise _not_spreadsheet("Word 文档（.doc）")
    if "powerpoint document" in streams:
        raise _not_spreadsheet("PowerPoint 演示文稿（.ppt）")
    raise _Refused("not-a-spreadsheet")


def _check_xls_encryption(handle, msoffcrypto) -> None:
    handle.seek(0)
    try:
        office_file = msoffcrypto.OfficeFile(handle)
        encrypted = office_file.is_encrypted()
    except Exception:  # malformed BIFF: the parser (in a worker) reports it
        return
    if not encrypted:
        return
    # Excel encrypts a workbook that only has a modify password or structure protection with
    # the fixed password "VelvetSweatshop": the user never typed an open password.
    try:
        office_file.load_key(password="VelvetSweatshop")
    except Exception:  # wrong password or unsupported cipher: a real open password
        raise _Refused("encrypted") from None
    raise _Refused("encrypted", MESSAGES["protected"])


# ---- text: html tables, SpreadsheetML 2003, csv


def _inspect_text(handle, head: bytes) -> Verdict:
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _Refused("not-a-spreadsheet")
    encoding = _detect_encoding(_file_chunks(handle))
    if encoding is None:
        raise _Refused("not-a-spreadsheet")
    sample = head.decode(encoding, "replace")
    if sum(char in _TEXT_CONTROL for char in sample) > len(sample) / 100:
        raise _Refused("not-a-spreadsheet")
    start = sample.lstrip("\ufeff \t\r\n")[:1024].lower()
    lowered = sample.lower()
    if start.startswith("<?xml"):
        if XML2003_NAMESPACE in lowered or 'progid="excel.sheet"' in lowered:
            _check_xml_encoding(None, head)
            _scan_text_file_for_dtd(handle)
            return _accept("xml2003")
        if "<html" not in lowered:
            raise _Refused("not-a-spreadsheet")
        start = "<html"
    if start.startswith("<"):
        if "<html" in lowered or "<table" in lowered or start.startswith("<!doctype html"):
            if not _file_contains(handle, b"<table", encoding):
                raise _Refused(
                    "not-a-spreadsheet",
                    "这是网页文件，里面没有表格；请发送 Excel 表格（.xlsx）。",
                )
            return _accept("html", encoding)
        raise _Refused("not-a-spreadsheet")
    if not any(delimiter in sample for delimiter in ",\t;"):
        raise _Refused(
            "not-a-spreadsheet",
            "文件是纯文字，没有表格的分隔符；请发送 Excel 表格（.xlsx）。",
        )
    return _accept("csv", encoding)


def _file_chunks(handle, chunk_size: int = INFLATE_CHUNK) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(chunk_size):
        yield chunk


def _file_contains(handle, needle: bytes, encoding: str) -> bool:
    if encoding == "utf-16":
        needles = [needle.decode().encode("utf-16-le")[:-1]]
    else:
        needles = [needle]
    carry = b""
    for chunk in _file_chunks(handle):
        window = carry + chunk.lower()
        if any(item in window for item in needles):
            return True
        carry = window[-(2 * len(needle)) :]
    return False


def _scan_text_file_for_dtd(handle) -> None:
    carry = b""
    for chunk in _file_chunks(handle):
        _scan_for_dtd(None, carry, chunk)
        carry = chunk[-_SCAN_OVERLAP:]
