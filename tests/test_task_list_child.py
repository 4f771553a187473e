"""A large task list is read by a forked child while the run archives the inbox (run.py,
_TaskListReading). Whichever process reads it, the run must be the same: the same workbook,
the same messages for a bad list, and no child left behind."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

import pytest

import pipeline.run as pipeline_run
from pipeline.tasks import read_task_list

from .conftest import copy_example, invoke


@pytest.fixture
def readers(monkeypatch, tmp_path):
    """Every list read in a child; the pids of the processes that read one, as a list."""
    monkeypatch.setattr(pipeline_run, "OFFLOAD_TASKS_BYTES", 0)
    log = tmp_path / "readers.txt"

    def logged(path):
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
        return read_task_list(path)

    monkeypatch.setattr(pipeline_run, "read_task_list", logged)
    return lambda: [int(line) for line in log.read_text(encoding="utf-8").split()] if log.exists() else []


def _digest(folder) -> str:
    """Run the example in ``folder``: the digest of everything its workbook shows."""
    result = invoke(folder / "config.toml", "run")
    assert result.exit_code in (0, 1), result.output
    return json.loads((folder / "state" / "last_run.json").read_text(encoding="utf-8"))["digest"]


def test_the_child_reads_the_list_and_the_workbook_is_the_same(tmp_path, readers):
    in_child = _digest(copy_example(tmp_path / "child"))
    assert readers() and os.getpid() not in readers()
    pipeline_run.OFFLOAD_TASKS_BYTES = 1 << 40  # (undone by monkeypatch) read here
    assert _digest(copy_example(tmp_path / "here")) == in_child
    assert readers()[-1] == os.getpid()
    assert not multiprocessing.active_children()


def test_a_child_that_dies_is_replaced_by_reading_here(tmp_path, monkeypatch, readers):
    expected = _digest(copy_example(tmp_path / "first"))
    parent = os.getpid()
    original = pipeline_run._pickled_task_list

    def dying(path):
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)  # as calamine aborting on a broken file would
        return original(path)

    monkeypatch.setattr(pipeline_run, "_pickled_task_list", dying)
    assert _digest(copy_example(tmp_path / "second")) == expected
    assert readers()[-1] == parent
    assert not multiprocessing.active_children()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("指标类型,", "类型,"), "第1行缺少列：指标类型"),
        (lambda text: text.replace(",8150,", ",八千,"), "tasks!F2 目标值“八千”不是非负数"),
    ],
)
def test_a_bad_list_read_by_the_child_stops_with_the_same_message(workspace, readers, edit, message):
    path = workspace.root / "tasks.csv"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    result = invoke(workspace.config, "run")
    assert result.exit_code == 2
    assert message in result.output
    assert len(set(readers())) == 2  # the child met the error; reading here raised it
    assert not list(workspace.outbox.glob("*.xlsx"))
    assert not multiprocessing.active_children()
