"""pipeline.intake.safety: every hostile file is built here, in tmp_path, in a few KB."""

from __future__ import annotations

import codecs
import io
import os
import random
import resource
import struct
import time
import zipfile
import zlib
from pathlib import Path

import pytest
import xlsxwriter

from pipeline.config import LimitsConfig
from pipeline.intake import safety
from pipeline.intake.read import CellError, read_book
from pipeline.intake.safety import (
    READ_CHUNK,
    Verdict,
    detect_text_encoding,
    inspect_file,
    is_settling,
    should_skip,
)
from pipeline.intake.xmlscan import scan_sheet_part, scan_xlsx

LIMITS = LimitsConfig()
SHEET = "xl/worksheets/sheet1.xml"
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    f'<Override PartName="/xl/workbook.xml" ContentType="{XLSX_MAIN}"/></Types>'
)


# ---- factories


def make_xlsx(path: Path, rows: int = 50) -> Path:
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet()
    sheet.write_row(0, 0, ["指标任务", "目标值", "已完成", "完成情况"])
    for row in range(1, rows + 1):
        sheet.write_row(row, 0, [f"新增城镇就业{row}", 8000 + row, 3500 + row, f"已完成{row}人"])
    workbook.close()
    return path


def make_zip(path: Path, parts: dict[str, bytes | str], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def rewrite_zip(source: Path, target: Path, replace: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(source) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    return make_zip(target, {**parts, **replace})


# Field offsets in the central directory header and in the local header.
_FIELDS = {"method": (10, 8, "<H"), "crc": (16, 14, "<I"), "compress_size": (20, 18, "<I"), "file_size": (24, 22, "<I")}


def central_entries(data: bytes):
    """(name, central header position, local header position) for each entry."""
    eocd = data.rfind(b"PK\x05\x06")
    count, _, cd_offset = struct.unpack_from("<HII", data, eocd + 10)
    position = cd_offset
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, position + 28)
        (local,) = struct.unpack_from("<I", data, position + 42)
        yield data[position + 46 : position + 46 + name_len].decode(), position, local
        position += 46 + name_len + extra_len + comment_len


def patch_entry(path: Path, name: str, *, central: bool = True, local: bool = True, **fields):
    """Rewrite header fields of one entry (a zip whose headers lie)."""
    data = bytearray(path.read_bytes())
    for entry_name, central_at, local_at in central_entries(bytes(data)):
        if entry_name != name:
            continue
        for field, value in fields.items():
            central_offset, local_offset, fmt = _FIELDS[field]
            if central:
                struct.pack_into(fmt, data, central_at + central_offset, value)
            if local:
                struct.pack_into(fmt, data, local_at + local_offset, value)
    path.write_bytes(bytes(data))


def data_span(path: Path, name: str) -> tuple[int, int]:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    return start, start + info.compress_size


def spaces_deflated(megabytes: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``megabytes`` MB of spaces, its CRC and size, built in
    milliseconds: after a full flush the compressor restarts, so every 1 MB block compresses to
    the same bytes and the stream is one block repeated."""
    chunk = b" " * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * megabytes + compressor.flush()
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(chunk, crc)
    return stream, crc, megabytes << 20


def make_bomb(path: Path, megabytes: int, declared: int | None = None) -> Path:
    """An xlsx whose sheet inflates to ``megabytes`` MB; ``declared`` makes both headers lie."""
    stream, crc, size = spaces_deflated(megabytes)
    return with_raw_sheet(path, stream, crc, size if declared is None else declared)


def with_raw_sheet(path: Path, stream: bytes, crc: int, declared: int) -> Path:
    """An xlsx whose sheet part is the given raw deflate stream, with the given CRC and size in
    both headers (whatever the stream really holds)."""
    make_zip(path, {"[Content_Types].xml": CONTENT_TYPES, "xl/workbook.xml": "<workbook/>"})
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo(SHEET), stream, compress_type=zipfile.ZIP_STORED)
    # Stored as the raw stream, then relabelled deflated.
    patch_entry(path, SHEET, method=zipfile.ZIP_DEFLATED, crc=crc, file_size=declared)
    return path


def text_like(size: int) -> bytes:
    """Bytes that compress like real sheet XML (about 2:1), not like a bomb."""
    return bytes(random.Random(size).choices(b"abcdefghijklmnopqrstuvwxyz0123456789<>/= ", k=size))


def refused(verdict: Verdict, code: str) -> str:
    assert verdict.kind is None, verdict
    assert verdict.code == code, verdict
    assert verdict.problem
    return verdict.problem


# ---- what a file is


def test_normal_xlsx_is_accepted_in_milliseconds(tmp_path):
    path = make_xlsx(tmp_path / "区人社局.xlsx")
    inspect_file(path, LIMITS)  # warm up imports
    started = time.perf_counter()
    verdict = inspect_file(path, LIMITS)
    elapsed = time.perf_counter() - started
    assert verdict == Verdict("xlsx", None, None, None)
    assert verdict.ok
    assert elapsed < 0.05


def test_xlsm_and_data_descriptor_zips_are_xlsx(tmp_path):
    source = make_xlsx(tmp_path / "a.xlsx")
    with zipfile.ZipFile(source) as archive:
        types = archive.read("[Content_Types].xml").decode()
    macro = types.replace(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml",
    )
    assert macro != types
    xlsm = rewrite_zip(source, tmp_path / "b.xlsm", {"[Content_Types].xml": macro})
    assert inspect_file(xlsm, LIMITS).kind == "xlsx"

    # Streaming writers put CRC and sizes in a data descriptor after the data, zeros in the
    # local header: legitimate, and must not look like a lying header.
    class Unseekable(io.RawIOBase):
        def __init__(self, sink):
            self.sink = sink

        def writable(self):
            return True

        def write(self, data):
            return self.sink.write(data)

    sink = io.BytesIO()
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(Unseekable(sink), "w", zipfile.ZIP_DEFLATED) as streamed:
        for info in archive.infolist():
            streamed.writestr(info.filename, archive.read(info))
    streamed_path = tmp_path / "streamed.xlsx"
    streamed_path.write_bytes(sink.getvalue())
    with zipfile.ZipFile(streamed_path) as check:
        assert all(info.flag_bits & 0x8 for info in check.infolist())
    assert inspect_file(streamed_path, LIMITS).kind == "xlsx"


def test_ods_xls_and_et_are_recognized(tmp_path):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"指标任务": ["新增城镇就业"], "已完成": [3500]})
    ods = tmp_path / "a.ods"
    frame.to_excel(ods, engine="odf", index=False)
    assert inspect_file(ods, LIMITS).kind == "ods"

    xlwt = pytest.importorskip("xlwt")
    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    sheet.write(0, 0, "指标任务")
    sheet.write(1, 0, 3500)
    xls = tmp_path / "a.xls"
    book.save(str(xls))
    assert inspect_file(xls, LIMITS).kind == "xls"
    et = tmp_path / "a.et"  # WPS 表格: the same BIFF container
    et.write_bytes(xls.read_bytes())
    assert inspect_file(et, LIMITS).kind == "xls"


def test_extension_is_never_trusted(tmp_path):
    csv_as_xlsx = tmp_path / "区人社局.xlsx"
    csv_as_xlsx.write_text("指标任务,已完成\n新增城镇就业,3500\n", encoding="utf-8")
    assert inspect_file(csv_as_xlsx, LIMITS) == Verdict("csv", None, None, "utf-8")

    xlsx_as_xls = make_xlsx(tmp_path / "a.xls")
    assert inspect_file(xlsx_as_xls, LIMITS).kind == "xlsx"


def test_html_table_saved_as_xls(tmp_path):
    path = tmp_path / "系统导出.xls"
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gbk"></head>'
        "<body><table><tr><td>指标任务</td><td>已完成</td></tr>"
        "<tr><td>新增城镇就业</td><td>3500</td></tr></table></body></html>"
    )
    path.write_bytes(html.encode("gbk"))
    assert inspect_file(path, LIMITS) == Verdict("html", None, None, "gb18030")

    doctype = tmp_path / "b.xls"
    doctype.write_text("<!DOCTYPE html>\n<html><body><table></table></body></html>", "utf-8")
    assert inspect_file(doctype, LIMITS).kind == "html"

    no_table = tmp_path / "c.xls"
    no_table.write_text("<html><body><p>登录超时，请重新登录</p></body></html>", "utf-8")
    assert "没有表格" in refused(inspect_file(no_table, LIMITS), "not-a-spreadsheet")


SPREADSHEET_2003 = """<?xml version="1.0"?>
<?mso-application progid="Excel.Sheet"?>
{doctype}<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet"
 xmlns:ss="urn:schemas-microsoft-com:office:spreadsheet">
 <Worksheet ss:Name="Sheet1"><Table>
  <Row><Cell><Data ss:Type="String">指标任务</Data></Cell><Cell><Data ss:Type="Number">3500</Data></Cell></Row>
 </Table></Worksheet>
</Workbook>
"""


def test_spreadsheetml_2003_saved_as_xls(tmp_path):
    path = tmp_path / "a.xls"
    path.write_text(SPREADSHEET_2003.format(doctype=""), encoding="utf-8")
    assert inspect_file(path, LIMITS).kind == "xml2003"

    hostile = tmp_path / "b.xls"
    hostile.write_text(
        SPREADSHEET_2003.format(doctype='<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'),
        encoding="utf-8",
    )
    refused(inspect_file(hostile, LIMITS), "xml-entity")


def test_csv_encodings(tmp_path):
    text = "填报单位：区人社局\n指标任务,目标值,已完成\n新增城镇就业,8000,3500\n"
    for encoding, expected in (("gbk", "gb18030"), ("utf-8-sig", "utf-8-sig"), ("utf-8", "utf-8")):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(text.encode(encoding))
        assert inspect_file(path, LIMITS) == Verdict("csv", None, None, expected), encoding


def test_detect_text_encoding_by_trying():
    assert detect_text_encoding("完成率".encode("gbk")) == "gb18030"
    assert detect_text_encoding("完成率".encode()) == "utf-8"
    assert detect_text_encoding(b"\xef\xbb\xbf" + "完成率".encode()) == "utf-8-sig"
    assert detect_text_encoding(b"plain,ascii\n") == "utf-8"
    # A sample cut inside a character is still UTF-8.
    assert detect_text_encoding("已完成".encode()[:-1]) == "utf-8"


# ---- refused


def test_empty_file(tmp_path):
    path = tmp_path / "a.xlsx"
    path.write_bytes(b"")
    assert "空" in refused(inspect_file(path, LIMITS), "empty")


def test_truncated_xlsx(tmp_path):
    source = make_xlsx(tmp_path / "full.xlsx")
    path = tmp_path / "a.xlsx"
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "重新发送" in refused(inspect_file(path, LIMITS), "truncated")


def test_bit_flip_inside_a_deflated_part_names_the_part(tmp_path):
    path = make_xlsx(tmp_path / "a.xlsx", rows=300)
    start, end = data_span(path, SHEET)
    data = bytearray(path.read_bytes())
    data[(start + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    problem = refused(inspect_file(path, LIMITS), "corrupt")
    assert problem == f"文件已损坏（{SHEET} 校验失败），请重新保存后发送。"


def test_crc_mismatch_names_the_part(tmp_path):
    path = make_xlsx(tmp_path / "a.xlsx")
    with zipfile.ZipFile(path) as archive:
        crc = archive.getinfo(SHEET).CRC
    patch_entry(path, SHEET, crc=crc ^ 1)
    problem = refused(inspect_file(path, LIMITS), "corrupt")
    assert problem == f"文件已损坏（{SHEET} 校验失败），请重新保存后发送。"


def test_zip_bomb_is_rejected_fast_and_small(tmp_path):
    path = make_bomb(tmp_path / "a.xlsx", megabytes=1024)
    assert path.stat().st_size < 2 * 1024 * 1024
    started = time.perf_counter()
    verdict = inspect_file(path, LIMITS)
    elapsed = time.perf_counter() - started
    assert SHEET in refused(verdict, "zip-bomb")
    assert elapsed < 10
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert peak_mb < 500


def test_lying_header_is_caught_by_counting(tmp_path):
    # Both headers say 1 KB; the stream inflates to 1 GB. Only counting can tell.
    path = make_bomb(tmp_path / "a.xlsx", megabytes=1024, declared=1000)
    started = time.perf_counter()
    verdict = inspect_file(path, LIMITS)
    assert time.perf_counter() - started < 10
    assert SHEET in refused(verdict, "zip-bomb")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < 500

    # A lie within every cap hurts no reader's memory; it reads as damage (a flipped bit in a
    # deflate stream does the same).
    payload = text_like(3 << 20)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(payload) + compressor.flush()
    small = with_raw_sheet(tmp_path / "b.xlsx", stream, zlib.crc32(payload), declared=4000)
    assert "校验失败" in refused(inspect_file(small, LIMITS), "corrupt")


def test_streamed_caps_hold_when_every_header_is_consistent(tmp_path):
    path = make_bomb(tmp_path / "a.xlsx", megabytes=20)
    tight = LimitsConfig(max_part_mb=5)
    assert "5 MB" in refused(inspect_file(path, tight), "zip-bomb")
    ratio = LimitsConfig(max_ratio=50)
    assert "50 倍" in refused(inspect_file(path, ratio), "zip-bomb")


def test_local_header_disagreeing_with_central_directory(tmp_path):
    path = make_xlsx(tmp_path / "a.xlsx")
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo(SHEET).file_size
    patch_entry(path, SHEET, local=False, file_size=size + 1)
    assert "不一致" in refused(inspect_file(path, LIMITS), "corrupt")


def test_overlapping_entries(tmp_path):
    path = make_zip(
        tmp_path / "a.xlsx",
        {"[Content_Types].xml": CONTENT_TYPES, "xl/workbook.xml": "<workbook/>", SHEET: "<x/>"},
    )
    # Stretch the workbook entry over the sheet's local header (how quoted-overlap bombs work).
    start, end = data_span(path, "xl/workbook.xml")
    _, sheet_end = data_span(path, SHEET)
    patch_entry(path, "xl/workbook.xml", compress_size=sheet_end - start)
    assert "重叠" in refused(inspect_file(path, LIMITS), "zip-bomb")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<worksheet><sheetData><row><c t="inlineStr"><is><t>&lol3;</t></is></c></row></sheetData></worksheet>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<worksheet><sheetData><row><c t="inlineStr"><is><t>&xxe;</t></is></c></row></sheetData></worksheet>
"""


@pytest.mark.parametrize(
    "sheet",
    [
        BILLION_LAUGHS.encode(),
        EXTERNAL_ENTITY.encode(),
        EXTERNAL_ENTITY.replace('<?xml version="1.0"?>', "").encode("utf-16"),
    ],
    ids=["billion-laughs", "external-entity", "utf-16"],
)
def test_dtd_in_any_xml_part_is_refused(tmp_path, sheet):
    source = make_xlsx(tmp_path / "a.xlsx")
    path = rewrite_zip(source, tmp_path / "b.xlsx", {SHEET: sheet})
    assert SHEET in refused(inspect_file(path, LIMITS), "xml-entity")


def test_dtd_straddling_two_read_chunks_is_found(tmp_path):
    # A stored part is read READ_CHUNK bytes at a time: put the declaration across a boundary.
    head = b"<worksheet>" + b"_" * (READ_CHUNK - 15)
    sheet = head + b"<!DOCTYPE x []><x/>"
    assert sheet.index(b"<!DOCTYPE") < READ_CHUNK < sheet.index(b"<!DOCTYPE") + 9
    path = make_zip(
        tmp_path / "a.xlsx", {"[Content_Types].xml": CONTENT_TYPES, SHEET: sheet}, compression=zipfile.ZIP_STORED
    )
    assert SHEET in refused(inspect_file(path, LIMITS), "xml-entity")


def test_xml_in_an_encoding_the_scan_cannot_read(tmp_path):
    source = make_xlsx(tmp_path / "a.xlsx")
    utf7 = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE x+AD4-<worksheet/>'
    path = rewrite_zip(source, tmp_path / "b.xlsx", {SHEET: utf7})
    refused(inspect_file(path, LIMITS), "xml-entity")


def test_encrypted_workbook(tmp_path):
    ooxml = pytest.importorskip("msoffcrypto.format.ooxml")
    source = make_xlsx(tmp_path / "a.xlsx")
    path = tmp_path / "加密.xlsx"
    with source.open("rb") as plain, path.open("wb") as encrypted:
        ooxml.OOXMLFile(plain).encrypt("123456", encrypted)
    assert path.read_bytes()[:4] == b"\xd0\xcf\x11\xe0"
    problem = refused(inspect_file(path, LIMITS), "encrypted")
    assert problem == "文件已加密（设有打开密码），请发送未加密的副本。"


def test_encrypted_ods(tmp_path):
    path = tmp_path / "a.ods"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        archive.writestr("content.xml", b"\x8f\x12encrypted bytes")
        archive.writestr(
            "META-INF/manifest.xml",
            '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
            '<manifest:file-entry manifest:full-path="content.xml">'
            '<manifest:encryption-data manifest:checksum-type="SHA1/1K"/>'
            "</manifest:file-entry></manifest:manifest>",
        )
    refused(inspect_file(path, LIMITS), "encrypted")


def test_other_documents_are_not_spreadsheets(tmp_path):
    docx = make_zip(
        tmp_path / "工作总结.xlsx",
        {
            "[Content_Types].xml": CONTENT_TYPES.replace(
                XLSX_MAIN,
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
            ).replace("/xl/workbook.xml", "/word/document.xml"),
            "word/document.xml": "<w:document/>",
        },
    )
    assert "Word" in refused(inspect_file(docx, LIMITS), "not-a-spreadsheet")

    archive = make_zip(tmp_path / "全部报表.xlsx", {"区人社局.xlsx": b"PK..."})
    assert "压缩包" in refused(inspect_file(archive, LIMITS), "not-a-spreadsheet")

    junk = tmp_path / "a.xlsx"
    junk.write_bytes(random.Random(7).randbytes(4096))
    refused(inspect_file(junk, LIMITS), "not-a-spreadsheet")

    prose = tmp_path / "b.csv"
    prose.write_text("各位领导：本月工作进展顺利。\n", encoding="utf-8")
    refused(inspect_file(prose, LIMITS), "not-a-spreadsheet")


def test_too_large_and_unreadable(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("a,b\n" * 1000, encoding="utf-8")
    assert "过大" in refused(inspect_file(path, LimitsConfig(max_total_mb=0.001)), "too-large")
    folder = tmp_path / "b.xlsx"
    folder.mkdir()
    refused(inspect_file(folder, LIMITS), "unreadable")


# ---- one inflation pass for the reader (issue 7)


def flagged_workbook(path: Path) -> Path:
    """Two sheets with what calamine does not report: a hidden row, an error cell, a formula
    saved without its result (written by hand into the XML, as tools that do not calculate do)."""
    workbook = xlsxwriter.Workbook(str(path))
    first = workbook.add_worksheet("数据")
    first.write_row(0, 0, ["指标编号", "目标值", "已完成"])
    first.write_row(1, 0, ["1-1", 8150, 3500])
    first.write_row(2, 0, ["1-2", 1200, 615])
    first.set_row(2, None, None, {"hidden": True})
    first.write_number("C4", 11111)
    workbook.add_worksheet("A&B").write_number("A1", 22222)
    workbook.close()
    with zipfile.ZipFile(path) as archive:
        one = archive.read("xl/worksheets/sheet1.xml").decode()
        two = archive.read("xl/worksheets/sheet2.xml").decode()
    one = one.replace('<c r="C4"><v>11111</v></c>', '<c r="C4" t="e"><f>1/0</f><v>#DIV/0!</v></c>')
    two = two.replace('<c r="A1"><v>22222</v></c>', '<c r="A1"><f>B1*2</f></c>')
    assert 't="e"' in one and "<f>B1*2" in two
    source = path.with_suffix(".source")
    path.rename(source)
    return rewrite_zip(source, path, {"xl/worksheets/sheet1.xml": one, "xl/worksheets/sheet2.xml": two})


def test_the_inspection_scans_the_sheets_as_xmlscan_does(tmp_path):
    path = flagged_workbook(tmp_path / "区人社局.xlsx")
    verdict = inspect_file(path, LIMITS, scan_sheets=True)
    assert verdict.kind == "xlsx"
    assert verdict.sheet_flags == scan_xlsx(path)
    data, other = verdict.sheet_flags["数据"], verdict.sheet_flags["A&B"]
    assert (data.errors, data.uncached_formulas, data.hidden_rows) == ({(3, 2): "#DIV/0!"}, {}, {3})
    assert (other.errors, other.uncached_formulas, other.hidden_rows) == ({}, {(0, 0): "B1*2"}, set())
    assert inspect_file(path, LIMITS).sheet_flags is None  # not asked: the reader scans
    plain = make_xlsx(tmp_path / "区教育局.xlsx")
    assert inspect_file(plain, LIMITS, scan_sheets=True).sheet_flags == {} == scan_xlsx(plain)


@pytest.mark.parametrize("part", ["xl/workbook.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml"])
def test_parts_read_ahead_of_the_pass_are_checked_like_the_others(tmp_path, part):
    # These are inflated first (to classify the package, to find its sheets), then checked by
    # the pass from those bytes: a DTD or a damaged CRC there is refused all the same.
    source = make_xlsx(tmp_path / "a.xlsx")
    with zipfile.ZipFile(source) as archive:
        original = archive.read(part)
    declaration = b"<!DOCTYPE x [<!ENTITY y 'z'>]>"
    hostile = rewrite_zip(source, tmp_path / "b.xlsx", {part: original.replace(b"?>", b"?>" + declaration, 1)})
    for options in ({}, {"scan_sheets": True, "repack": True}):
        assert part in refused(inspect_file(hostile, LIMITS, **options), "xml-entity")
    damaged = rewrite_zip(source, tmp_path / "c.xlsx", {})
    with zipfile.ZipFile(damaged) as archive:
        crc = archive.getinfo(part).CRC
    patch_entry(damaged, part, crc=crc ^ 1)
    for options in ({}, {"scan_sheets": True, "repack": True}):
        assert part in refused(inspect_file(damaged, LIMITS, **options), "corrupt")


def test_the_repacked_package_reads_as_the_file_does(tmp_path):
    path = flagged_workbook(tmp_path / "区人社局.xlsx")
    verdict = inspect_file(path, LIMITS, scan_sheets=True, repack=True)
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(io.BytesIO(verdict.package)) as repacked:
        assert [info.filename for info in repacked.infolist()] == original.namelist()
        assert all(info.compress_type == zipfile.ZIP_STORED for info in repacked.infolist())
        assert all(repacked.read(name) == original.read(name) for name in original.namelist())
        assert repacked.testzip() is None  # every CRC
    from_file = read_book(str(path), "xlsx")
    from_package = read_book(str(path), "xlsx", sheet_flags=verdict.sheet_flags, package=verdict.package)
    assert from_package == from_file
    assert any(isinstance(cell, CellError) for row in from_file.sheets[0].rows for cell in row)


def test_empty_parts_and_folders_are_repacked(tmp_path):
    # Stored and empty, they have no deflate stream and yield no chunk: kept all the same.
    path = make_xlsx(tmp_path / "区人社局.xlsx")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zipfile.ZipInfo("xl/empty.xml"), b"", compress_type=zipfile.ZIP_STORED)
        archive.mkdir("xl/folder")
    verdict = inspect_file(path, LIMITS, scan_sheets=True, repack=True)
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(io.BytesIO(verdict.package)) as repacked:
        assert repacked.namelist() == original.namelist()
        assert repacked.read("xl/empty.xml") == b""
    assert read_book(str(path), "xlsx", package=verdict.package) == read_book(str(path), "xlsx")


def test_a_workbook_too_big_to_repack_is_read_from_its_file(tmp_path, monkeypatch):
    path = make_xlsx(tmp_path / "区人社局.xlsx", rows=200)
    monkeypatch.setattr(safety, "REPACK_MAX_BYTES", 4096)
    verdict = inspect_file(path, LIMITS, scan_sheets=True, repack=True)
    assert verdict.kind == "xlsx" and verdict.package is None and verdict.sheet_flags == {}


def test_an_xlsx_named_xls_is_read_by_its_content(tmp_path):
    path = make_xlsx(tmp_path / "区人社局.xls")
    verdict = inspect_file(path, LIMITS, scan_sheets=True, repack=True)
    assert verdict.kind == "xlsx"
    for package in (verdict.package, None):
        book = read_book(str(path), "xlsx", sheet_flags=verdict.sheet_flags, package=package)
        assert book.sheets[0].rows[1] == ["新增城镇就业1", 8001.0, 3501.0, "已完成1人"]


def test_a_zip_with_a_comment_or_a_prefix_is_read(tmp_path):
    source = make_xlsx(tmp_path / "a.xlsx")
    commented = tmp_path / "commented.xlsx"
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(commented, "w") as copy:
        copy.comment = b"saved by a tool that signs its archives"
        for info in archive.infolist():
            copy.writestr(info, archive.read(info))
    prefixed = tmp_path / "prefixed.xlsx"
    prefixed.write_bytes(b"PK\x03\x04" + b"\0" * 100 + source.read_bytes())
    assert inspect_file(commented, LIMITS).kind == "xlsx"
    assert inspect_file(prefixed, LIMITS).kind == "xlsx"  # zipfile's offsets, shifted by the prefix


def test_a_running_count_past_the_ratio_names_the_part(tmp_path):
    # The directory's sizes pass (500 KB honest, 1 KB claimed for a part that holds 900 KB):
    # only the pass's own count, before the part's size check, sees the ratio.
    path = make_zip(
        tmp_path / "a.xlsx",
        {"[Content_Types].xml": CONTENT_TYPES, "xl/a.xml": b" " * 500_000, "xl/b.xml": b" " * 900_000},
    )
    patch_entry(path, "xl/b.xml", file_size=1000)
    assert "xl/b.xml 处压缩比超过 100 倍" in refused(inspect_file(path, LIMITS), "zip-bomb")


def hostile_and_plain(folder: Path) -> list[Path]:
    """Files that take every turn of the inflation pass, accepted and refused."""
    plain = make_xlsx(folder / "plain.xlsx", rows=300)
    damaged = rewrite_zip(plain, folder / "damaged.xlsx", {})
    patch_entry(damaged, "xl/styles.xml", crc=12345)
    lying = rewrite_zip(plain, folder / "lying.xlsx", {})
    patch_entry(lying, "xl/styles.xml", file_size=10)
    ratio = make_zip(
        folder / "ratio.xlsx",
        {"[Content_Types].xml": CONTENT_TYPES, "xl/a.xml": b" " * 500_000, "xl/b.xml": b" " * 900_000},
    )
    patch_entry(ratio, "xl/b.xml", file_size=1000)
    return [
        plain,
        flagged_workbook(folder / "flagged.xlsx"),
        rewrite_zip(plain, folder / "dtd.xlsx", {SHEET: EXTERNAL_ENTITY}),
        rewrite_zip(plain, folder / "utf7.xlsx", {"xl/styles.xml": b'<?xml version="1.0" encoding="UTF-7"?><x/>'}),
        rewrite_zip(plain, folder / "big.xlsx", {"xl/big.xml": text_like(3 << 20)}),
        damaged,
        lying,
        ratio,
        make_bomb(folder / "bomb.xlsx", megabytes=20),
    ]


def test_a_part_in_one_piece_is_checked_as_one_in_chunks(tmp_path, monkeypatch):
    # Most parts are inflated in one piece (_inflate_small) and checked at once; the others
    # chunk by chunk. Every verdict, package and sheet scan must be the same either way.
    files = hostile_and_plain(tmp_path)
    options = {"scan_sheets": True, "repack": True}
    whole = [inspect_file(path, LIMITS, **options) for path in files]
    assert [verdict.code for verdict in whole] == [
        None,
        None,
        "xml-entity",
        "xml-entity",
        None,
        "corrupt",
        "corrupt",
        "zip-bomb",
        "zip-bomb",
    ]
    monkeypatch.setattr(safety, "_inflate_small", lambda *args: None)
    assert [inspect_file(path, LIMITS, **options) for path in files] == whole


@pytest.mark.parametrize(
    ("declaration", "accepted"),
    [
        (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', True),
        (b'<?xml version="1.0" encoding="UTF-8"?>', True),
        (codecs.BOM_UTF8 + b'<?xml version="1.0" encoding="UTF-8"?>', True),
        (b"<?xml version='1.0' encoding='gbk'?>", True),
        (b'<?xml version="1.0" encoding="UTF-7"?>', False),
        (b'<?xml version="1.0" encoding="UTF-8"?>'.decode().encode("utf-32"), False),
    ],
)
def test_the_usual_declaration_is_read_at_a_glance_and_the_others_parsed(tmp_path, declaration, accepted):
    source = make_xlsx(tmp_path / "a.xlsx")
    for padding in (b"", b" " * 600):  # a part shorter than the 512 bytes looked at, and longer
        path = rewrite_zip(source, tmp_path / "b.xlsx", {"xl/styles.xml": declaration + b"<x/>" + padding})
        assert inspect_file(path, LIMITS).ok == accepted
    # The glance is at the encoding only: a DTD after the usual declaration is still found.
    usual = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    path = rewrite_zip(source, tmp_path / "c.xlsx", {"xl/styles.xml": usual + b"<!DOCTYPE x []><x/>"})
    refused(inspect_file(path, LIMITS), "xml-entity")


def test_part_names_in_either_zip_encoding(tmp_path):
    # Without the UTF-8 flag a name is cp437 (zipfile's reading too); a local header whose flag
    # disagrees with the directory spells another name, and is refused.
    source = make_xlsx(tmp_path / "a.xlsx")
    path = rewrite_zip(source, tmp_path / "b.xlsx", {"xl/media/图片.bin": b"\x89PNG"})
    assert inspect_file(path, LIMITS).ok
    data = bytearray(path.read_bytes())
    name = "xl/media/图片.bin".encode()
    local_flags = data.find(name) - 30 + 6
    central_flags = data.rfind(name) - 46 + 8
    for at in (local_flags, central_flags):
        struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] & ~0x800)
    unflagged = tmp_path / "c.xlsx"
    unflagged.write_bytes(bytes(data))
    with zipfile.ZipFile(unflagged) as archive:
        assert name.decode("cp437") in archive.namelist()
    assert inspect_file(unflagged, LIMITS, scan_sheets=True, repack=True).ok
    struct.pack_into("<H", data, central_flags, struct.unpack_from("<H", data, central_flags)[0] | 0x800)
    disagreeing = tmp_path / "d.xlsx"
    disagreeing.write_bytes(bytes(data))
    assert "图片.bin 的记录前后不一致" in refused(inspect_file(disagreeing, LIMITS), "corrupt")


@pytest.mark.parametrize(
    ("markup", "found"),
    [
        ('<row r="3" hidden="1"><c r="A3"><v>1</v></c></row>', ("hidden_rows", {3})),
        ('<row r="3" hidden="1" spans="1:1"><c r="A3"><v>1</v></c></row>', ("hidden_rows", {3})),
        ('<row r="3" hidden="0"><c r="A3"><v>1</v></c></row>', ()),
        ('<row r="3"><c r="B3" t="e"><v>#N/A</v></c></row>', ("errors", {(2, 1): "#N/A"})),
        ('<row r="3"><c r="B3"><f>A3*2</f></c></row>', ("uncached_formulas", {(2, 1): "A3*2"})),
        ('<row r="3"><c r="B3"><f>A3*2</f><v>2</v></c></row>', ()),
        ('<row r="3"><c r="B3"><v>2</v></c></row>', ()),
    ],
)
def test_the_sheet_scan_looks_for_each_marker(markup, found):
    part = f'<?xml version="1.0"?><worksheet><sheetData>{markup}</sheetData></worksheet>'.encode()
    flags = scan_sheet_part(part)
    if not found:
        assert flags is None
    else:
        field_name, value = found
        assert getattr(flags, field_name) == value


# ---- which files to look at, and when


@pytest.mark.parametrize(
    ("name", "skipped"),
    [
        ("~$区人社局.xlsx", True),
        (".hidden.xlsx", True),
        (".~lock.区人社局.xlsx#", True),
        ("report.pdf", True),
        ("说明.docx", True),
        ("photo.JPG", True),
        ("notes.txt", True),
        ("returns.zip", True),
        ("Makefile", True),
        ("区人社局.xlsx", False),
        ("区人社局.XLSX", False),
        ("a.xlsm", False),
        ("a.xls", False),
        ("a.ods", False),
        ("a.csv", False),
        ("a.et", False),
        ("区人社局.xlsx.crdownload", False),  # is_settling's business
    ],
)
def test_should_skip(name, skipped):
    reason = should_skip(Path("inbox") / name)
    assert (reason is not None) == skipped
    if skipped:
        assert reason.strip()


def test_is_settling(tmp_path):
    now = time.time()
    part = tmp_path / "区人社局.xlsx.part"
    part.write_bytes(b"PK")
    os.utime(part, (now - 3600, now - 3600))
    assert is_settling(part, now, 60)
    fresh = tmp_path / "a.xlsx"
    fresh.write_bytes(b"PK")
    assert is_settling(fresh, time.time(), 60)
    old = tmp_path / "b.xlsx"
    old.write_bytes(b"PK")
    os.utime(old, (now - 3600, now - 3600))
    assert not is_settling(old, now, 60)
    future = tmp_path / "c.xlsx"
    future.write_bytes(b"PK")
    os.utime(future, (now + 86_400, now + 86_400))
    assert not is_settling(future, now, 60)
    assert not is_settling(fresh, time.time(), 0)
