"""The second core for the workbook: 明细 rendered in a forked child, parts deflated by threads.
Whichever way the work is done, the workbook must be the same."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import threading
import time
import zipfile
import zlib

import pytest

import pipeline.offload as offload
from pipeline.config import load_config
from pipeline.offload import Offload
from pipeline.report import parallel, workbook
from pipeline.report.parallel import DeflatedZip, Segment, crc32_combine, deflate_apart
from pipeline.report.workbook import write_workbook
from pipeline.run import _workbook_input, consolidate
from pipeline.store import Store
from pipeline.tasks import read_task_list

from .conftest import copy_example, invoke


def test_offload_computes_in_a_child_process():
    with Offload(lambda: ["在进程 ", str(os.getpid()), " 计算", b"\x00bytes"]) as job:
        answer = job.answer()
    assert answer.startswith("在进程 ".encode()) and answer.endswith(b" \xe8\xae\xa1\xe7\xae\x97\x00bytes")
    assert answer != f"在进程 {os.getpid()} 计算".encode() + b"\x00bytes"
    assert not multiprocessing.active_children()


def test_a_child_that_dies_halfway_gives_no_answer():
    parent = os.getpid()

    def render():
        yield "本进程"
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would, halfway
        yield "计算"

    assert Offload(render).answer() is None  # the caller computes it here (tested with each caller)
    assert not multiprocessing.active_children()


def test_a_child_that_fails_gives_no_answer_and_says_nothing():
    def render():
        yield "<row/>"
        raise ValueError("not a finite number at F9")

    assert Offload(render).answer() is None  # computing it here raises the error, where it is reported
    assert not multiprocessing.active_children()


def test_without_fork_there_is_no_child(monkeypatch):
    monkeypatch.setattr(offload.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    job = Offload(lambda: ["x"])
    assert job.answer() is None and not multiprocessing.active_children()


def test_leaving_early_stops_and_reaps_the_child():
    started = time.monotonic()
    with Offload(lambda: [time.sleep(60) or "late"]):
        pass  # e.g. another sheet failed: the child must not outlive the workbook
    assert time.monotonic() - started < 10
    assert not multiprocessing.active_children()


def test_deflated_zip_writes_what_zipfile_writes(tmp_path):
    parts = [
        ("[Content_Types].xml", b"<Types/>" * 10),
        ("xl/worksheets/sheet1.xml", ("<row>明细第一行</row>" * 200_000).encode()),
        ("xl/empty.xml", b""),
        ("docProps/app.xml", "<Properties>汇总</Properties>"),
    ]
    expected, got = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(expected, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts:
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    archive = DeflatedZip(got, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
    for name, data in parts:
        info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
        info.compress_type = archive.compression
        archive.writestr(info, data)
    archive.close()
    assert got.getvalue() == expected.getvalue()
    with zipfile.ZipFile(got) as check:
        assert check.testzip() is None

    # xlsxwriter's default mode hands over temporary files, dated 1980-01-31 and mode 0600.
    files = []
    for number, (name, data) in enumerate(parts):
        path = tmp_path / f"part{number}"
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(0o600)
        os.utime(path, (time.mktime((1980, 1, 31, 0, 0, 0, 0, 0, -1)),) * 2)
        files.append((str(path), name))
    expected, got = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(expected, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in files:
            archive.write(path, name)
    archive = DeflatedZip(got, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
    for path, name in files:
        archive.write(path, name)
    archive.close()
    assert got.getvalue() == expected.getvalue()


def test_crc32_combine_gives_the_crc_of_the_bytes_joined():
    for first_size in (0, 1, 5, 4096):
        for second_size in (0, 1, 13, 65_536, 1_000_001):
            first, second = os.urandom(first_size), os.urandom(second_size)
            assert crc32_combine(zlib.crc32(first), zlib.crc32(second), second_size) == zlib.crc32(first + second)


SHEET_HEAD = b'<?xml version="1.0"?><worksheet><sheetData><row r="1"><c t="s"><v>0</v></c></row>'
SHEET_TAIL = b'</sheetData><pageMargins left="0.4"/></worksheet>'


@pytest.mark.parametrize(("head", "tail"), [(SHEET_HEAD, SHEET_TAIL), (b"", b"")])
@pytest.mark.parametrize("piece_bytes", [parallel.PIECE_BYTES, 50])  # 50: head and tail deflated in pieces too
def test_a_member_around_a_segment_deflated_apart_reads_back_whole(monkeypatch, head, tail, piece_bytes):
    monkeypatch.setattr(parallel, "PIECE_BYTES", piece_bytes)
    rows = [f'<row r="{n}"><c><v>{n * 7}</v></c><c t="s"><v>明细{n % 97}</v></c></row>' for n in range(2, 60_000)]
    pieces = ["".join(rows[start : start + 5000]) for start in range(0, len(rows), 5000)]
    segment = Segment.read(b"".join(deflate_apart(pieces)))
    assert segment.size == len("".join(rows).encode()) and segment.placeholder.startswith("<!--")
    got = io.BytesIO()
    archive = DeflatedZip(got, "w", segments=[segment])
    member = zipfile.ZipInfo("xl/worksheets/sheet2.xml", (1980, 1, 1, 0, 0, 0))
    archive.writestr(member, head + segment.placeholder.encode() + tail)
    archive.writestr(zipfile.ZipInfo("xl/styles.xml", (1980, 1, 1, 0, 0, 0)), b"<styleSheet/>")
    archive.close()
    assert segment.packed in got.getvalue()  # deflated once, apart, and used as it is
    with zipfile.ZipFile(got) as check:
        assert check.testzip() is None  # reads every member and checks its CRC-32
        assert check.read("xl/worksheets/sheet2.xml") == head + "".join(rows).encode() + tail
        assert check.read("xl/styles.xml") == b"<styleSheet/>"


def test_a_large_member_is_deflated_in_pieces_by_both_threads(monkeypatch):
    monkeypatch.setattr(parallel, "PIECE_BYTES", 1 << 20)
    data = "".join(f'<row r="{n}"><c><v>{n * n % 9973}</v></c></row>' for n in range(200_000)).encode()
    threads = set()
    deflate = parallel._deflate

    def deflate_noting_the_thread(*args):
        threads.add(threading.current_thread().name)
        time.sleep(0.05)  # each piece long enough for the other thread to take the next
        return deflate(*args)

    monkeypatch.setattr(parallel, "_deflate", deflate_noting_the_thread)
    got = io.BytesIO()
    archive = DeflatedZip(got, "w")
    archive.writestr(zipfile.ZipInfo("xl/worksheets/sheet1.xml", (1980, 1, 1, 0, 0, 0)), data)
    archive.close()
    assert len(threads) == parallel.DEFLATE_THREADS
    with zipfile.ZipFile(got) as check:
        assert check.testzip() is None
        assert check.read("xl/worksheets/sheet1.xml") == data
    expected = io.BytesIO()
    with zipfile.ZipFile(expected, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", data)
    assert len(got.getvalue()) < len(expected.getvalue()) * 1.01  # the pieces cost next to nothing


def test_a_segment_without_a_place_is_an_error():
    segment = Segment.read(b"".join(deflate_apart(["<row/>"])))
    archive = DeflatedZip(io.BytesIO(), "w", segments=[segment])
    archive.writestr(zipfile.ZipInfo("xl/worksheets/sheet1.xml"), b"<sheetData/>")
    with pytest.raises(ValueError, match="no placeholder"):
        archive.close()


def _parts(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist() if name != "docProps/core.xml"}


def test_the_workbook_is_the_same_with_or_without_a_child(tmp_path, monkeypatch):
    config_path = copy_example(tmp_path / "example") / "config.toml"
    invoke(config_path, "run", "--quiet")
    config = load_config(config_path)
    tasks = read_task_list(config.paths.tasks)
    store = Store(config.paths.state)
    try:
        files = store.period_files(config.report.period)
        result = consolidate(
            store, config, tasks, config.report.period, set(zip(files["sha256"], files["file"], strict=True))
        )
    finally:
        store.close()
    contents = _workbook_input(config, tasks, result)

    segments_given = []

    def parallel_deflate(module, segments=()):
        segments_given.append(list(segments))
        return original_parallel_deflate(module, segments)

    original_parallel_deflate = workbook.parallel_deflate
    monkeypatch.setattr(workbook, "parallel_deflate", parallel_deflate)
    monkeypatch.setattr(workbook, "OFFLOAD_ROWS", 1)  # the example is small: render it apart anyway
    write_workbook(contents, tmp_path / "forked.xlsx")
    monkeypatch.setattr(offload.multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # as without fork
    write_workbook(contents, tmp_path / "here.xlsx")
    # The child rendered and deflated 明细's rows; here they were rendered and deflated in-process.
    assert [len(segments) for segments in segments_given] == [1, 0]
    forked, here = _parts(tmp_path / "forked.xlsx"), _parts(tmp_path / "here.xlsx")
    assert forked == here
    assert (
        b"<sheetData>" in forked["xl/worksheets/sheet2.xml"] and forked["xl/worksheets/sheet2.xml"].count(b"<row ") > 40
    )
    assert b"<!--" not in forked["xl/worksheets/sheet2.xml"]
