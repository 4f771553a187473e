"""Hostile and broken files in a real run: each rejected with its name, the rest merged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile

import openpyxl
import pytest
import xlsxwriter
from click.testing import CliRunner

from pipeline.cli import cli

from .conftest import ROOT, make_return
from .test_safety import make_bomb, make_xlsx, rewrite_zip

OLD = time.time() - 7200
SHEET = "xl/worksheets/sheet1.xml"
BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    "<worksheet><sheetData><row><c><v>&lol2;</v></c></row></sheetData></worksheet>"
)


def hostile_files(folder):
    """name → a builder writing one hostile or broken file into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)

    def far_cell(path):  # calamine aborts the whole process on this 2 KB legal file
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        sheet.write("A1", "指标编号")
        sheet.write("XFD1048576", 1)
        book.close()

    def truncated(path):
        whole = make_xlsx(folder / "whole.tmpxlsx").read_bytes()
        (folder / "whole.tmpxlsx").unlink()
        path.write_bytes(whole[: len(whole) // 2])

    def entities(path):
        source = make_xlsx(folder / "src.tmpxlsx")
        rewrite_zip(source, path, {SHEET: BILLION_LAUGHS})
        source.unlink()

    def encrypted(path):
        ooxml = pytest.importorskip("msoffcrypto.format.ooxml")
        source = make_xlsx(folder / "plain.tmpxlsx")
        with source.open("rb") as plain, path.open("wb") as out:
            ooxml.OOXMLFile(plain).encrypt("123456", out)
        source.unlink()

    def docx(path):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("[Content_Types].xml", '<Types><Override PartName="/word/document.xml"/></Types>')
            archive.writestr("word/document.xml", "<w:document/>")

    def styled_tail(path):  # a format on every row to 1,048,576 and one value at the end
        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, ["指标编号", "已完成"])
        sheet.set_row(1048575, None, book.add_format({"bold": True}))
        for row in range(200_000, 200_010):
            sheet.write(row, 0, "1-1")
        book.close()

    return {
        "区残联.xlsx": lambda p: make_bomb(p, 1024),
        "区卫健局.xlsx": far_cell,
        "区水利局.xlsx": truncated,
        "区民政局.xlsx": entities,
        "区教育局.xlsx": encrypted,
        "区住建局.xlsx": docx,
        "区医保局.xlsx": lambda p: p.write_bytes(b""),
        "区科工局.xlsx": styled_tail,
    }


@pytest.fixture
def hostile_workspace(workspace):
    tasks = workspace.root / "tasks.csv"
    with open(tasks, "a", encoding="utf-8") as handle:
        for index, unit in enumerate(["区卫健局", "区水利局", "区民政局", "区教育局", "区住建局", "区医保局", "区科工局"]):
            handle.write(f"{10 + index}-1,{10 + index},区级,项目{index},指标{index},10,个,数量,某领导,{unit},\n")
    for name, build in hostile_files(workspace.inbox).items():
        build(workspace.inbox / name)
        os.utime(workspace.inbox / name, (OLD, OLD))
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 3500, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
        mtime=OLD,
    )
    return workspace


def test_every_hostile_file_is_rejected_and_the_rest_merged(hostile_workspace):
    ws = hostile_workspace
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ws.inbox.iterdir()}
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["run", "--json", "--config", str(ws.config)])
    elapsed = time.monotonic() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert result.exit_code == 1
    assert summary["accepted"] == ["区人社局.xlsx"]
    expected_rejected = sorted(name for name in hashes if name != "区人社局.xlsx")
    assert sorted(summary["rejected"]) == expected_rejected
    issues = {}
    for issue in ws.issues():
        issues.setdefault(issue["文件"], []).append(issue)
    for name in expected_rejected:
        assert any(i["级别"] == "错误" for i in issues[name]), name
    assert "加密" in issues["区教育局.xlsx"][0]["问题"]
    assert "不是" in issues["区住建局.xlsx"][0]["问题"] or "表格" in issues["区住建局.xlsx"][0]["问题"]
    values = {r["指标编号"]: r["已完成"] for r in ws.detail()}
    assert values["1-1"] == 3500 and values["1-2"] == 615
    # Nothing was lost or changed: every input is still there, byte for byte, and archived.
    for name, digest in hashes.items():
        assert hashlib.sha256((ws.inbox / name).read_bytes()).hexdigest() == digest
        assert list((ws.state / "archive" / digest[:2]).glob(f"{digest}*")), name
    assert elapsed < 60


def test_zip_bomb_alone_is_rejected_fast_and_small(workspace):
    """Measured on a run of its own (wait4 gives that process tree's peak, not pytest's)."""
    make_bomb(workspace.inbox / "区残联.xlsx", 1024)
    os.utime(workspace.inbox / "区残联.xlsx", (OLD, OLD))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--json", "--config", str(workspace.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    out, err = proc.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rejected"] == ["区残联.xlsx"]
    assert "Traceback" not in err


# Forks (a real fork, not the vfork subprocess uses), execs the command and reports its wait4.
# Linux carries a process's peak RSS across exec, and a child spawned straight from pytest starts
# with pytest's own peak (hundreds of MB once other tests have run): measured from this small
# launcher instead, the figure is the run's and its workers' alone.
PEAK_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}))
"""


def test_zip_bomb_peak_memory_is_small(workspace):
    make_bomb(workspace.inbox / "区残联.xlsx", 1024)
    os.utime(workspace.inbox / "区残联.xlsx", (OLD, OLD))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launched = subprocess.run(
        [sys.executable, "-c", PEAK_LAUNCHER, "-m", "pipeline", "run", "--json", "--config", str(workspace.config)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    measured = json.loads(launched.stdout)
    assert measured["code"] == 1
    assert measured["maxrss_kb"] / 1024 < 500  # kB → MB: the run, and the worker it waited for


def test_long_cells_and_control_characters_are_cleaned_with_a_warning(workspace):
    narrative = "已完成3500人\x07\x1b" + "很" * 40_000
    path = workspace.inbox / "区人社局.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Sheet1")
    sheet.write_row(0, 0, ["指标编号", "已完成", "完成情况"])
    sheet.write_row(1, 0, ["1-1", 3500])
    sheet.write_row(2, 0, ["1-2", 615, "正常"])
    book.close()
    # xlsxwriter refuses over-long strings itself: put the text into the XML directly.
    with zipfile.ZipFile(path) as archive:
        parts = {n: archive.read(n) for n in archive.namelist()}
    xml = parts[SHEET].decode()
    escaped = narrative.replace("\x07", "_x0007_").replace("\x1b", "_x001B_")
    xml = xml.replace('<c r="B2" s="0"><v>3500</v></c>', f'<c r="B2"><v>3500</v></c><c r="C2" t="inlineStr"><is><t>{escaped}</t></is></c>')
    xml = xml.replace('<c r="B2"><v>3500</v></c>', f'<c r="B2"><v>3500</v></c><c r="C2" t="inlineStr"><is><t>{escaped}</t></is></c>', 1) if 'r="C2"' not in xml else xml
    parts[SHEET] = xml.encode()
    path.unlink()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    os.utime(path, (OLD, OLD))
    result = CliRunner().invoke(cli, ["run", "--config", str(workspace.config)])
    assert result.exit_code == 0, result.output
    warning = next(i for i in workspace.issues() if i["位置"] == "Sheet1!C2")
    assert "控制字符" in warning["问题"] and "截断" in warning["问题"]
    book = openpyxl.load_workbook(workspace.workbook(), read_only=True)
    rows = list(book["明细"].iter_rows(values_only=True))
    header = rows[0]
    row = next(r for r in rows if r[0] == "1-1")
    text = row[header.index("完成情况")]
    assert len(text) == 32_767 and text.startswith("已完成3500人很")
