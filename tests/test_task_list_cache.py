"""The task list as last read is kept in state/ (pipeline/tasks.py): a night whose list and code
did not change loads it instead of reading it again. Whatever is kept, the run must be the same
as one that reads the list, and a changed, damaged or bad list must never be taken from it."""

from __future__ import annotations

import json
import shutil

import pytest

import pipeline.run as pipeline_run
import pipeline.tasks as pipeline_tasks
from pipeline.tasks import CACHE_NAME, read_task_list

from .conftest import copy_example, invoke, make_return


@pytest.fixture
def readings(monkeypatch, tmp_path):
    """How many times the run read a task list (in this process: small lists are read here)."""
    count = tmp_path / "readings.txt"

    def counted(path):
        with open(count, "a", encoding="utf-8") as handle:
            handle.write("x")
        return read_task_list(path)

    monkeypatch.setattr(pipeline_run, "read_task_list", counted)
    return lambda: len(count.read_text(encoding="utf-8")) if count.exists() else 0


def _run(folder) -> dict:
    result = invoke(folder / "config.toml", "run")
    assert result.exit_code in (0, 1), result.output
    return json.loads((folder / "state" / "last_run.json").read_text(encoding="utf-8"))


def _log(folder) -> str:
    return max((folder / "state" / "logs").iterdir()).read_text(encoding="utf-8")


def _rerun_from_scratch(folder) -> dict:
    """The same inbox consolidated again with nothing remembered."""
    shutil.rmtree(folder / "state")
    return _run(folder)


def test_the_second_night_loads_the_kept_list_and_writes_the_same_workbook(tmp_path, readings):
    folder = copy_example(tmp_path / "ws")
    first = _run(folder)
    assert readings() == 1 and (folder / "state" / CACHE_NAME).is_file()
    second = _run(folder)
    assert readings() == 1  # not read again
    assert "与上次相同，沿用上次的读取结果" in _log(folder)
    # Read from scratch: the same workbook, digit for digit.
    again = _rerun_from_scratch(folder)
    assert readings() == 2
    assert again["digest"] == second["digest"] == first["digest"]


def test_an_edited_list_is_read_again(workspace, readings):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", 3500]], header=["指标编号", "已完成"])
    invoke(workspace.config, "run")
    tasks = workspace.root / "tasks.csv"
    tasks.write_text(tasks.read_text(encoding="utf-8").replace(",8150,", ",7000,", 1), encoding="utf-8")
    invoke(workspace.config, "run")
    assert readings() == 2
    assert "沿用上次的读取结果" not in _log(workspace.root)
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1" and r["填报单位"] == "区人社局")
    assert row["目标值"] == 7000 and row["完成率"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # cut short
        lambda data: data[:-10] + bytes(b ^ 0x01 for b in data[-10:]),  # a flipped bit in the pickle
        lambda data: b"not a cache at all",
        lambda data: b"",
    ],
)
def test_a_damaged_kept_list_is_read_again_and_kept_anew(tmp_path, readings, damage):
    folder = copy_example(tmp_path / "ws")
    first = _run(folder)
    cache = folder / "state" / CACHE_NAME
    kept = cache.read_bytes()
    cache.write_bytes(damage(kept))
    second = _run(folder)
    assert readings() == 2
    assert cache.read_bytes() == kept
    assert second["digest"] == first["digest"] == _rerun_from_scratch(folder)["digest"]


def test_new_code_reads_the_list_again(tmp_path, readings, monkeypatch):
    folder = copy_example(tmp_path / "ws")
    _run(folder)
    monkeypatch.setattr(pipeline_tasks, "_reader_fingerprint", lambda: b"another version of the reader")
    _run(folder)
    assert readings() == 2


def test_a_bad_list_is_never_kept(workspace, readings):
    tasks = workspace.root / "tasks.csv"
    good = tasks.read_text(encoding="utf-8")
    tasks.write_text(good.replace(",8150,", ",八千,"), encoding="utf-8")
    for _ in range(2):
        result = invoke(workspace.config, "run")
        assert result.exit_code == 2 and "目标值“八千”不是非负数" in result.output
        assert not (workspace.state / CACHE_NAME).exists()
    assert readings() == 2
    tasks.write_text(good, encoding="utf-8")
    assert invoke(workspace.config, "run").exit_code in (0, 1)
    assert (workspace.state / CACHE_NAME).is_file() and readings() == 3


def test_a_list_read_by_the_child_is_kept_as_the_child_pickled_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_run, "OFFLOAD_TASKS_BYTES", 0)
    folder = copy_example(tmp_path / "ws")
    first = _run(folder)
    monkeypatch.setattr(pipeline_run, "OFFLOAD_TASKS_BYTES", 1 << 40)
    kept = pipeline_tasks.load_kept_task_list(
        folder / "state" / CACHE_NAME, pipeline_tasks.task_list_key(folder / "tasks.xlsx")
    )
    assert kept is not None
    assert kept.equals(read_task_list(folder / "tasks.xlsx"))
    assert _rerun_from_scratch(folder)["digest"] == first["digest"]
