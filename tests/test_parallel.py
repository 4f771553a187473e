"""The second core for the workbook: 明细 rendered in a forked child, parts deflated by threads.
Whichever way the work is done, the workbook must be the same."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import time
import zipfile

import pytest

import pipeline.offload as offload
from pipeline.config import load_config
from pipeline.offload import Offload
from pipeline.report import workbook
from pipeline.report.parallel import DeflatedZip
from pipeline.report.workbook import write_workbook
from pipeline.run import _workbook_input, consolidate
from pipeline.store import Store
from pipeline.tasks import read_task_list

from .conftest import copy_example, invoke


def test_offload_computes_in_a_child_process():
    with Offload(lambda: ["在进程 ", str(os.getpid()), " 计算"]) as job:
        answer = job.result()
    assert answer.startswith("在进程 ") and answer != f"在进程 {os.getpid()} 计算"
    assert not multiprocessing.active_children()


def test_a_child_that_dies_is_replaced_by_computing_here():
    parent = os.getpid()

    def render():
        yield "本进程"
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would, halfway
        yield "计算"

    assert Offload(render).result() == "本进程计算"
    assert not multiprocessing.active_children()


def test_a_bug_in_the_work_is_raised_here_not_lost_in_the_child():
    def render():
        yield "<row/>"
        raise ValueError("not a finite number at F9")

    with pytest.raises(ValueError, match="F9"):
        Offload(render).result()
    assert not multiprocessing.active_children()


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


def _parts(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist() if name != "docProps/core.xml"}


def test_the_workbook_is_the_same_with_or_without_a_child(tmp_path, monkeypatch):
    config_path = copy_example(tmp_path / "example") / "config.toml"
    invoke(config_path, "run", "--quiet")
    config = load_config(config_path)
    tasks = read_task_list(config.paths.tasks)
    store = Store(config.paths.state)
    try:
        files = store.period_files(config.report.period)
        result = consolidate(store, config, tasks, config.report.period, set(zip(files["sha256"], files["file"], strict=True)))
    finally:
        store.close()
    contents = _workbook_input(config, tasks, result)

    monkeypatch.setattr(workbook, "OFFLOAD_ROWS", 1)  # the example is small: render it apart anyway
    write_workbook(contents, tmp_path / "forked.xlsx")
    monkeypatch.setattr(offload.multiprocessing, "get_all_start_methods", lambda: ["spawn"])  # as without fork
    write_workbook(contents, tmp_path / "here.xlsx")
    forked, here = _parts(tmp_path / "forked.xlsx"), _parts(tmp_path / "here.xlsx")
    assert forked == here
    assert b"<sheetData>" in forked["xl/worksheets/sheet2.xml"] and forked["xl/worksheets/sheet2.xml"].count(b"<row ") > 40
