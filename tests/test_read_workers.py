"""Reading in the workers: each file is inspected, parsed and normalized in a worker process,
and what goes wrong there costs that file only, as when the parent normalized."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from contextlib import closing

import pytest

from .conftest import SMALL_TASKS, Workspace, invoke, last_json, make_return

OLD = time.time() - 7200
FAILURE_LINE = re.compile(r"^\d\d:\d\d:\d\d 区残联\.xlsx：整理数据时程序出错：KeyError\('boom'\)\nTraceback ", re.M)


def fill_inbox(ws: Workspace) -> None:
    """Two good returns, a broken one, and the same bytes under two names (the unit from the name)."""
    make_return(ws.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]], mtime=OLD)
    make_return(ws.inbox / "区残联.xlsx", [["2-1", "", 181, 108, "", "", "", ""]], mtime=OLD)
    (ws.inbox / "区住建局.xlsx").write_bytes(b"not a workbook at all")
    shared = [["3-1", "", "", "", "", "", "已完成招标", ""]]
    make_return(ws.inbox / "区文旅广体局.xlsx", shared, mtime=OLD)
    shutil.copy(ws.inbox / "区文旅广体局.xlsx", ws.inbox / "区文旅广体局（重发）.xlsx")
    for path in ws.inbox.iterdir():
        os.utime(path, (OLD, OLD))


def run(ws: Workspace, workers: int = 1) -> dict:
    ws.write_config("2023-05", f"workers = {workers}\nparse_timeout = 10")
    return last_json(invoke(ws.config, "run", "--json").output)


def log_text(ws: Workspace) -> str:
    return "".join(path.read_text(encoding="utf-8") for path in sorted((ws.state / "logs").glob("*.log")))


def results(ws: Workspace) -> list[tuple]:
    with closing(sqlite3.connect(ws.state / "history.sqlite")) as conn:
        return conn.execute("SELECT sha256, name, unit, status FROM results ORDER BY name").fetchall()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bug_while_normalizing_in_the_worker_costs_that_file_only(workspace, monkeypatch, tmp_path, workers):
    import pipeline.run

    real = pipeline.run.normalize_book
    where = tmp_path / "normalized-in"

    def flaky(book, name, *args):
        with open(where, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
        if name == "区残联.xlsx":
            raise KeyError("boom")
        return real(book, name, *args)

    monkeypatch.setattr(pipeline.run, "normalize_book", flaky)  # reaches the workers by the fork
    fill_inbox(workspace)
    summary = run(workspace, workers)
    assert summary["exit_code"] == 1
    assert summary["rejected"] == ["区住建局.xlsx", "区残联.xlsx"]
    assert summary["accepted"] == ["区人社局.xlsx", "区文旅广体局.xlsx", "区文旅广体局（重发）.xlsx"]
    # Normalized in the workers, never in this process: one call per name, duplicates included.
    pids = where.read_text().split()
    assert len(pids) == 4 and str(os.getpid()) not in pids
    [issue] = [i for i in workspace.issues() if i["文件"] == "区残联.xlsx"]
    assert issue["级别"] == "错误" and issue["问题"] == (
        "整理本文件数据时程序出错（KeyError），本文件暂未采用，原文件已保存。"
        "请把本文件转交技术支持；也可请报送单位改用下发的模板重新填报。"
    )
    # The parent writes the worker's line, traceback and all, into the run's log.
    log = log_text(workspace)
    assert len(FAILURE_LINE.findall(log)) == 1
    assert 'in flaky\n    raise KeyError("boom")' in log
    assert "拒收 区住建局.xlsx：" in log


def test_the_same_bytes_under_two_names_are_read_once_and_give_two_returns(workspace, monkeypatch, tmp_path):
    import pipeline.run

    real_read, real_normalize = pipeline.run._read_file, pipeline.run.normalize_book
    calls = tmp_path / "calls"

    def note(what):
        with open(calls, "a", encoding="utf-8") as handle:
            handle.write(f"{what}\n")

    def counted_read(path, *args):
        note("read")
        return real_read(path, *args)

    def counted_normalize(book, name, *args):
        note(name)
        return real_normalize(book, name, *args)

    monkeypatch.setattr(pipeline.run, "_read_file", counted_read)
    monkeypatch.setattr(pipeline.run, "normalize_book", counted_normalize)
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""], ["2-1", "", 181, 108, "", "", "", ""]])
    shutil.copy(workspace.inbox / "区人社局.xlsx", workspace.inbox / "区残联.xlsx")
    for path in workspace.inbox.iterdir():
        os.utime(path, (OLD, OLD))
    run(workspace)
    assert calls.read_text(encoding="utf-8").split() == ["read", "区人社局.xlsx", "区残联.xlsx"]
    (sha_a, name_a, unit_a, _), (sha_b, name_b, unit_b, _) = results(workspace)
    assert sha_a == sha_b and (name_a, unit_a) == ("区人社局.xlsx", "区人社局") and (name_b, unit_b) == ("区残联.xlsx", "区残联")
    sources = {row["指标编号"]: row["来源文件"] for row in workspace.detail() if row["已完成"] is not None}
    assert sources == {"1-1": "区人社局.xlsx", "2-1": "区残联.xlsx"}


def test_two_workers_give_what_one_gives(tmp_path):
    seen = {}
    for workers in (1, 2):
        ws = Workspace(tmp_path / f"w{workers}", SMALL_TASKS)
        fill_inbox(ws)
        summary = run(ws, workers)
        log = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in log_text(ws).splitlines()]
        seen[workers] = (
            {k: v for k, v in summary.items() if k != "workbook"},
            ws.sheet_rows("汇总表"), ws.detail(), ws.issues(), [row[1:] for row in results(ws)], log[:-1],
        )  # fmt: skip
    # (the bytes' hashes differ: openpyxl dates each file it writes; the log's last line names the path)
    assert seen[1] == seen[2]
    assert seen[1][0]["accepted"] == ["区人社局.xlsx", "区文旅广体局.xlsx", "区文旅广体局（重发）.xlsx", "区残联.xlsx"]


def test_a_memory_error_while_normalizing_is_the_worker_cap(workspace, monkeypatch):
    """Normalizing runs under the worker's memory cap: running out there fails that file as too
    large to read (and replaces the worker), not as a bug."""
    import pipeline.run

    real = pipeline.run.normalize_book

    def greedy(book, name, *args):
        if name == "区残联.xlsx":
            raise MemoryError
        return real(book, name, *args)

    monkeypatch.setattr(pipeline.run, "normalize_book", greedy)
    fill_inbox(workspace)
    summary = run(workspace)
    assert summary["rejected"] == ["区住建局.xlsx", "区残联.xlsx"]
    [issue] = [i for i in workspace.issues() if i["文件"] == "区残联.xlsx"]
    assert issue["问题"].startswith("文件读取时占用内存超过上限")
    with closing(sqlite3.connect(workspace.state / "history.sqlite")) as conn:
        codes = dict(conn.execute("SELECT name, code FROM issues WHERE level = '错误'"))
    assert codes["区残联.xlsx"] == "read-memory"


def test_normalizing_counts_against_the_time_budget(workspace, monkeypatch):
    import pipeline.run

    real = pipeline.run.normalize_book

    def stuck(book, name, *args):
        if name == "区残联.xlsx":
            time.sleep(30)
        return real(book, name, *args)

    monkeypatch.setattr(pipeline.run, "normalize_book", stuck)
    fill_inbox(workspace)
    workspace.write_config("2023-05", "parse_timeout = 1")
    started = time.monotonic()
    summary = last_json(invoke(workspace.config, "run", "--json").output)
    assert time.monotonic() - started < 20
    assert summary["rejected"] == ["区住建局.xlsx", "区残联.xlsx"]
    assert "区人社局.xlsx" in summary["accepted"] and "区文旅广体局（重发）.xlsx" in summary["accepted"]
    [issue] = [i for i in workspace.issues() if i["文件"] == "区残联.xlsx"]
    assert issue["问题"].startswith("文件读取超时（超过 1 秒）")

