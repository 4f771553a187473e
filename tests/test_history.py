"""Never lose a return: the history, the archive, periods, supersession, crashes and concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from .conftest import ROOT, make_return


def run(ws, *args):
    result = CliRunner().invoke(cli, ["run", "--json", "--config", str(ws.config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result, json.loads(result.output.strip().splitlines()[-1])


def run_process(ws, env_extra=None, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--json", "--config", str(ws.config)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


OLD = time.time() - 7200


def good_return(ws, name="区人社局.xlsx", value=3500, mtime=OLD):
    return make_return(
        ws.inbox / name,
        [["1-1", "", 8150, value, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
        mtime=mtime,
    )


# -- history and archive -----------------------------------------------------------------------


def test_every_received_file_is_archived_by_hash_and_recorded(workspace):
    good = good_return(workspace)
    bad = workspace.inbox / "区残联.xlsx"
    bad.write_bytes(b"not a workbook at all")
    os.utime(bad, (OLD, OLD))
    run(workspace)
    for path in (good, bad):
        digest = sha(path)
        archived = list((workspace.state / "archive" / digest[:2]).glob(f"{digest}*"))
        assert len(archived) == 1 and sha(archived[0]) == digest
    conn = sqlite3.connect(workspace.state / "history.sqlite")
    statuses = dict(conn.execute("SELECT name, status FROM results"))
    assert statuses == {"区人社局.xlsx": "accepted", "区残联.xlsx": "rejected"}
    assert conn.execute("SELECT COUNT(*) FROM rows").fetchone() == (2,)
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)


def test_bytes_already_archived_are_not_copied_again_and_large_files_stream(workspace, monkeypatch):
    from pipeline import store as store_module

    good = good_return(workspace)
    run(workspace)
    archived = workspace.state / "archive" / sha(good)[:2] / f"{sha(good)}.xlsx"
    before = archived.stat().st_ino, archived.stat().st_mtime_ns
    store = store_module.Store(workspace.state)
    try:
        assert store.take_in(good, 0) == (sha(good), good.stat().st_size, None)  # nothing to write
        assert store.publish([(sha(good), None, ".XLSX")]) == [archived]
        monkeypatch.setattr(store_module, "IN_MEMORY_BYTES", 1000)  # larger files are streamed
        large = workspace.root / "large.bin"
        large.write_bytes(os.urandom(3 << 20))
        digest, size, temp = store.take_in(large, 1)
        assert (digest, size) == (sha(large), 3 << 20) and sha(temp) == digest
        assert store.publish([(digest, temp, ".bin")])[0].read_bytes() == large.read_bytes()
    finally:
        store.close()
    _, again = run(workspace)
    assert again["new_files"] == 0 and (archived.stat().st_ino, archived.stat().st_mtime_ns) == before
    assert not list((workspace.state / "archive").glob(".intake-*"))


def test_a_file_seen_before_is_not_processed_again(workspace):
    good_return(workspace)
    _, first = run(workspace)
    _, second = run(workspace)
    assert first["new_files"] == 1 and second["new_files"] == 0


def test_a_unit_keeps_its_values_when_its_file_leaves_the_inbox(workspace):
    path = good_return(workspace)
    run(workspace)
    path.unlink()
    _, summary = run(workspace)
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["已完成"] == 3500 and row["来源文件"] == "区人社局.xlsx"
    assert "区人社局" not in summary["missing_units"]


def test_a_corrected_return_clears_the_old_files_errors(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, "见附件", "", "", "", ""]], mtime=OLD)
    result, summary = run(workspace)
    assert result.exit_code == 1
    good_return(workspace, name="区人社局（更正）.xlsx", mtime=OLD + 60)
    result, summary = run(workspace)
    assert result.exit_code == 0, workspace.issues()
    assert [i["级别"] for i in workspace.issues()] == ["警告"]
    assert "已被取代" in workspace.issues()[0]["问题"]


def test_a_removed_rejected_file_is_no_longer_reported(workspace):
    bad = workspace.inbox / "区残联.xlsx"
    bad.write_bytes(b"garbage")
    os.utime(bad, (OLD, OLD))
    assert run(workspace)[0].exit_code == 1
    bad.unlink()
    result, summary = run(workspace)
    assert result.exit_code == 0 and summary["rejected"] == []


# -- periods and change --------------------------------------------------------------------------


def test_change_since_last_period_and_decrease_warning(workspace):
    good_return(workspace, value=3000)
    workspace.write_config("2023-04")
    run(workspace)
    workspace.write_config("2023-05")
    good_return(workspace, name="区人社局5月.xlsx", value=3500, mtime=OLD + 10)
    run(workspace)
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert (row["上期累计"], row["本期新增"], row["已完成"]) == (3000, 500, 3500)
    good_return(workspace, name="区人社局5月更正.xlsx", value=2800, mtime=OLD + 20)
    run(workspace)
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["本期新增"] == -200
    assert any("比上期的 3000 少" in i["问题"] for i in workspace.issues())


def test_last_periods_files_do_not_count_for_this_period(workspace):
    good_return(workspace)
    workspace.write_config("2023-04")
    run(workspace)
    workspace.write_config("2023-05")
    _, summary = run(workspace)
    assert "区人社局" in summary["missing_units"]


# -- files still being copied ------------------------------------------------------------------


def test_a_growing_file_is_left_for_the_next_run(workspace):
    workspace.write_config("2023-05", "")
    text = workspace.config.read_text(encoding="utf-8").replace("settle_seconds = 0", "settle_seconds = 60")
    workspace.config.write_text(text, encoding="utf-8")
    good_return(workspace, mtime=time.time())  # just copied, complete: read now
    growing = workspace.inbox / "区残联.xlsx"
    growing.write_bytes(b"PK\x03\x04")
    stop = threading.Event()

    def grow():
        with open(growing, "ab") as handle:
            while not stop.is_set():
                handle.write(b"x" * 100)
                handle.flush()
                time.sleep(0.05)

    thread = threading.Thread(target=grow)
    thread.start()
    try:
        _, summary = run(workspace)
    finally:
        stop.set()
        thread.join()
    assert summary["deferred"] == ["区残联.xlsx"]
    assert summary["accepted"] == ["区人社局.xlsx"]
    assert summary["rejected"] == []


def test_partial_download_names_are_left_for_later(workspace):
    (workspace.inbox / "区残联.xlsx.part").write_bytes(b"PK")
    _, summary = run(workspace)
    assert summary["deferred"] == ["区残联.xlsx.part"] or summary["skipped"] == ["区残联.xlsx.part"]
    assert workspace.issues() == [] or all(i["文件"] != "区残联.xlsx.part" for i in workspace.issues())


# -- crashes, disk full, concurrency -----------------------------------------------------------


@pytest.mark.parametrize("point", ["archived", "validated", "recorded", "written", "committed"])
def test_a_kill_at_any_point_leaves_the_previous_state_and_workbook(workspace, point):
    good_return(workspace)
    first = run_process(workspace)
    assert first.returncode == 0, first.stderr
    book = workspace.workbook()
    before = book.read_bytes()
    good_return(workspace, name="区残联.xlsx", mtime=OLD + 5)
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, 108, "", "", "", ""]], mtime=OLD + 5)
    killed = run_process(workspace, {"CONSOLIDATE_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL
    assert workspace.workbook().read_bytes() == before  # still the previous complete workbook
    openpyxl.load_workbook(workspace.workbook()).close()
    again = run_process(workspace)
    assert again.returncode == 0, again.stderr
    assert not list(workspace.outbox.glob(".~consolidate-*"))
    values = {row["指标编号"]: row["已完成"] for row in workspace.detail()}
    assert values["2-1"] == 108 and values["1-1"] == 3500


def test_disk_full_while_writing_keeps_everything(workspace, monkeypatch):
    good_return(workspace)
    run(workspace)
    book = workspace.workbook()
    before = book.read_bytes()
    db_before = (workspace.state / "history.sqlite").read_bytes()
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, 108, "", "", "", ""]], mtime=OLD)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pipeline.run.write_workbook", full)
    result = CliRunner().invoke(cli, ["run", "--config", str(workspace.config)])
    assert result.exit_code == 2
    assert "No space left on device" in result.output and "保持不变" in result.output
    assert workspace.workbook().read_bytes() == before
    conn = sqlite3.connect(workspace.state / "history.sqlite")
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
    assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (1,)
    assert db_before  # the file existed; its content is judged by the queries above


def test_two_runs_at_once_both_end_cleanly(workspace):
    for index in range(6):
        make_return(workspace.inbox / f"区人社局{index}.xlsx", [["1-1", "", 8150, 3000 + index, "", "", "", ""]],
                    mtime=OLD + index)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pipeline", "run", "--json", "--config", str(workspace.config)]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    codes = sorted(proc.returncode for proc in procs)
    assert codes in ([0, 0], [0, 3]), outputs
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert "Traceback" not in err
        if proc.returncode == 3:
            assert "另一次汇总正在运行" in err
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["已完成"] == 3005


def test_a_second_run_waits_when_configured(workspace):
    good_return(workspace)
    text = workspace.config.read_text(encoding="utf-8") + "\n[run]\nlock_wait = 30\n"
    workspace.config.write_text(text, encoding="utf-8")
    from pipeline.store import run_lock

    released = threading.Event()

    def hold():
        with run_lock(workspace.state):
            time.sleep(1.0)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    result, summary = run(workspace)
    holder.join()
    assert released.is_set() and result.exit_code == 0


def test_a_held_lock_exits_3_with_a_message(workspace):
    from pipeline.store import run_lock

    good_return(workspace)
    with run_lock(workspace.state):
        result = CliRunner().invoke(cli, ["run", "--config", str(workspace.config)])
    assert result.exit_code == 3
    assert "另一次汇总正在运行" in result.output


def test_identical_bytes_from_two_units_are_two_returns(workspace):
    """Units named only by their file names can send byte-identical files."""
    for unit in ("区人社局", "区残联"):
        make_return(workspace.inbox / f"{unit}.xlsx", [["9-9", "", 1, 1, "", "", "", ""]], mtime=OLD)
    assert sha(workspace.inbox / "区人社局.xlsx") == sha(workspace.inbox / "区残联.xlsx")
    _, summary = run(workspace)
    assert sorted(summary["rejected"]) == ["区人社局.xlsx", "区残联.xlsx"]


def test_a_file_updated_in_place_replaces_its_old_version(workspace):
    path = good_return(workspace, value=3000)
    run(workspace)
    good_return(workspace, value=3500, mtime=OLD + 60)
    result, summary = run(workspace)
    assert result.exit_code == 0
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["已完成"] == 3500 and row["来源文件"] == path.name


def test_january_continues_nothing_from_december(workspace):
    good_return(workspace, value=8000)
    workspace.write_config("2023-12")
    run(workspace)
    workspace.write_config("2024-01")
    good_return(workspace, name="区人社局1月.xlsx", value=500, mtime=OLD + 10)
    run(workspace)
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert (row["上期累计"], row["本期新增"], row["已完成"]) == (None, None, 500)
    assert not any("比上期" in i["问题"] for i in workspace.issues())


def test_a_bug_while_normalizing_one_file_costs_that_file_only(workspace, monkeypatch):
    import pipeline.run

    real = pipeline.run.normalize_book

    def flaky(book, name, *args):
        if name == "区残联.xlsx":
            raise KeyError("boom")
        return real(book, name, *args)

    monkeypatch.setattr(pipeline.run, "normalize_book", flaky)
    good_return(workspace)
    make_return(workspace.inbox / "区残联.xlsx", [["2-1", "", 181, 108, "", "", "", ""]], mtime=OLD)
    result, summary = run(workspace)
    assert result.exit_code == 1
    assert summary["rejected"] == ["区残联.xlsx"] and summary["accepted"] == ["区人社局.xlsx"]
    [issue] = [i for i in workspace.issues() if i["文件"] == "区残联.xlsx"]
    assert "程序出错" in issue["问题"] and "原文件已保存" in issue["问题"]
    logs = "".join(p.read_text(encoding="utf-8") for p in (workspace.state / "logs").glob("*.log"))
    assert "KeyError" in logs


def test_an_edited_template_period_falls_back_to_this_period(workspace):
    path = good_return(workspace)
    book = openpyxl.load_workbook(path)
    meta = book.create_sheet("_consolidate_meta")
    meta.append(["unit", "区人社局"])
    meta.append(["period", "五月"])
    meta.sheet_state = "veryHidden"
    book.save(path)
    os.utime(path, (OLD, OLD))
    result, summary = run(workspace)
    assert result.exit_code == 0 and summary["accepted"] == ["区人社局.xlsx"]
    assert next(r for r in workspace.detail() if r["指标编号"] == "1-1")["已完成"] == 3500


def test_a_night_with_nothing_new_keeps_the_workbook_and_a_change_rewrites_it(workspace):
    good_return(workspace)
    run(workspace)
    book = workspace.workbook()
    os.utime(book, (OLD, OLD))
    run(workspace)
    state = json.loads((workspace.state / "last_run.json").read_text(encoding="utf-8"))
    assert state["unchanged"] is True and book.stat().st_mtime == OLD
    text = workspace.config.read_text(encoding="utf-8").replace('title = "测试汇总表"', 'title = "测试汇总表"\nsevere_lag_points = 10')
    workspace.config.write_text(text, encoding="utf-8")
    run(workspace)
    state = json.loads((workspace.state / "last_run.json").read_text(encoding="utf-8"))
    assert state["unchanged"] is False and book.stat().st_mtime > OLD
    book.unlink()
    run(workspace)
    assert book.exists()
