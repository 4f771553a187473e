"""pipeline.intake.isolate: a crash, a runaway allocation or a hang costs one item, not the run."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipeline.intake import isolate
from pipeline.intake.isolate import IsolationError, Outcome, run_isolated


# Jobs run in the workers: top level, like the real parsers.
def misbehave(item):
    if item == "abort":
        os.abort()
    if item == "allocate":
        return len(bytearray(4 << 30))
    if item == "hang":
        time.sleep(3600)
    if item == "raise":
        raise ValueError("第3行的数字无法识别")
    if item == "exit":
        os._exit(3)
    if item == "unpicklable":
        return lambda: None
    return (item, os.getpid())


def echo(item):
    return item


def grow(megabytes):
    return b"x" * (megabytes << 20)


def slow_echo(item):
    time.sleep(0.2)
    return item


def read_with_calamine(path):
    from python_calamine import CalamineWorkbook

    return CalamineWorkbook.from_path(path).get_sheet_by_index(0).to_python()


def record_pid_and_hang(folder):
    Path(folder, str(os.getpid())).touch()
    time.sleep(3600)


def children_of(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is ``pid``, zombies included, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(pid):
            found.append((int(entry.name), fields.get("State", "").strip()))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:\t", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(autouse=True)
def no_children_left():
    before = {pid for pid, _ in children_of(os.getpid())}
    yield
    assert multiprocessing.active_children() == []
    assert [child for child in children_of(os.getpid()) if child[0] not in before] == []


def test_each_failure_costs_only_its_item_and_order_is_kept():
    items = [1, "abort", 2, "allocate", "hang", "raise", "exit", 3, "unpicklable", 4]
    started = time.monotonic()
    outcomes = run_isolated(misbehave, items, workers=2, timeout=2, memory_mb=1024)
    elapsed = time.monotonic() - started
    assert [outcome.item for outcome in outcomes] == items
    by_item = {outcome.item: outcome for outcome in outcomes}
    for good in (1, 2, 3, 4):
        assert by_item[good].ok
        assert by_item[good].value[0] == good
    assert by_item["abort"].failure == "crashed"
    assert "SIGABRT" in by_item["abort"].detail
    assert by_item["allocate"].failure == "memory"
    assert by_item["hang"].failure == "timeout"
    assert by_item["raise"] == Outcome("raise", False, None, "error", "ValueError: 第3行的数字无法识别")
    assert by_item["exit"].failure == "crashed"
    assert "code 3" in by_item["exit"].detail
    assert by_item["unpicklable"].failure == "error"
    assert elapsed < 2 + 1 + 2  # the hang's budget, a second, and the rest


def test_timeout_is_enforced_within_a_second_of_the_budget():
    started = time.monotonic()
    (outcome,) = run_isolated(misbehave, ["hang"], timeout=1.0)
    assert outcome.failure == "timeout"
    assert time.monotonic() - started < 1.0 + 1.0


def test_memory_cap():
    (outcome,) = run_isolated(misbehave, ["allocate"], memory_mb=1024)
    assert not outcome.ok
    assert outcome.failure == "memory"


def record_pid_and_abort(folder):
    Path(folder, str(os.getpid())).touch()
    os.abort()


def test_an_error_keeps_the_worker_and_a_crash_replaces_it(tmp_path):
    first, _, second = run_isolated(misbehave, ["a", "raise", "b"], workers=1)
    assert first.value[1] == second.value[1]  # the same worker after an exception

    def job(item):
        return record_pid_and_abort(tmp_path) if item == "abort" else misbehave(item)

    outcomes = run_isolated(job, ["a", "b", "abort", "c", "d"], workers=1)
    (crashed,) = [int(path.name) for path in tmp_path.iterdir()]
    assert [outcome.ok for outcome in outcomes] == [True, True, False, True, True]
    assert outcomes[2].failure == "crashed"
    # The items after the crash ran on a fresh worker. (Those before it may have been answered
    # by the crashed one or, when their answers were still in its batch, parsed again.)
    assert outcomes[3].value[1] == outcomes[4].value[1] != crashed
    assert not any(running(outcome.value[1]) for outcome in outcomes if outcome.ok) and not running(crashed)


def test_items_behind_a_hang_are_not_blamed_and_each_gets_its_own_budget():
    items = ["hang", *range(30)]
    started = time.monotonic()
    outcomes = run_isolated(misbehave, items, workers=1, timeout=1.0)
    assert outcomes[0].failure == "timeout"
    assert [outcome.value[0] for outcome in outcomes[1:]] == list(range(30))
    assert time.monotonic() - started < 1.0 + 2.0


def test_answers_come_per_item_while_the_worker_goes_on():
    arrivals = []
    run_isolated(
        slow_echo, list(range(6)), workers=1, on_outcome=lambda index, outcome: arrivals.append(time.monotonic())
    )
    # Items of 0.2 s are answered as each ends, not when a batch of them is full.
    assert max(b - a for a, b in zip(arrivals[:-1], arrivals[1:], strict=True)) < 0.5
    assert arrivals[-1] - arrivals[0] > 0.6


def test_a_2kb_workbook_that_aborts_calamine(tmp_path):
    xlsxwriter = pytest.importorskip("xlsxwriter")
    pytest.importorskip("python_calamine")
    hostile = tmp_path / "区人社局.xlsx"
    workbook = xlsxwriter.Workbook(str(hostile))
    sheet = workbook.add_worksheet()
    sheet.write(0, 0, "指标任务")
    sheet.write(1048575, 16383, "XFD1048576")
    workbook.close()
    assert hostile.stat().st_size < 8 * 1024
    normal = tmp_path / "区教育局.xlsx"
    workbook = xlsxwriter.Workbook(str(normal))
    workbook.add_worksheet().write_row(0, 0, ["指标任务", "已完成"])
    workbook.close()

    outcomes = run_isolated(read_with_calamine, [str(hostile), str(normal)], timeout=30)
    assert not outcomes[0].ok
    assert outcomes[0].failure in ("memory", "crashed")
    assert outcomes[1].ok
    assert outcomes[1].value == [["指标任务", "已完成"]]


def test_per_item_overhead_is_small():
    items = list(range(3000))
    started = time.perf_counter()
    outcomes = run_isolated(echo, items, workers=1)
    per_item = (time.perf_counter() - started) / len(items)
    assert [outcome.value for outcome in outcomes] == items
    assert per_item < 0.005


def test_large_items_and_answers_cross_without_blocking():
    # Items too large to queue are sent one at a time; large answers are sent at once, not held
    # in a batch (both sides of the pipe must never wait on each other).
    items = ["x" * 200_000, "y" * 200_000, "z"]
    outcomes = run_isolated(len, items, workers=1, timeout=10)
    assert [outcome.value for outcome in outcomes] == [200_000, 200_000, 1]
    outcomes = run_isolated(grow, [3, 1, 2], workers=1, timeout=10)
    assert [len(outcome.value) for outcome in outcomes] == [3 << 20, 1 << 20, 2 << 20]


def test_progress_and_edge_sizes():
    calls = []
    outcomes = run_isolated(echo, ["a", "b", "c"], workers=0, progress=lambda *call: calls.append(call))
    assert [outcome.value for outcome in outcomes] == ["a", "b", "c"]
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert run_isolated(echo, []) == []
    assert [o.value for o in run_isolated(echo, [1, 2], workers=8)] == [1, 2]


def test_a_worker_that_cannot_start_stops_the_run_instead_of_blaming_files(monkeypatch):
    def broken(memory_mb):
        raise OSError("setrlimit refused")

    monkeypatch.setattr(isolate, "_cap_address_space", broken)  # inherited by the forked child
    with pytest.raises(IsolationError, match="setrlimit refused"):
        run_isolated(echo, [1, 2], workers=2)


def test_works_when_sys_stderr_is_a_stand_in(monkeypatch):
    # click's CliRunner swaps sys.stderr for an object without a file descriptor.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    outcomes = run_isolated(misbehave, [1, "abort"])
    assert outcomes[0].ok
    assert outcomes[1].failure == "crashed"
    assert "misbehave" in outcomes[1].detail  # faulthandler's frame, from the worker's stderr


def test_keyboard_interrupt_leaves_no_process_behind():
    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_isolated(misbehave, [1, "hang", "hang", 2], workers=3, progress=interrupt)


def test_ctrl_c_while_workers_are_busy():
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            outcomes = run_isolated(misbehave, ["hang", "hang"], workers=2, timeout=30)
            # Seen once in ~20 suite runs (2026-12-05): returned instead; what became of the items?
            pytest.fail(f"returned after {time.monotonic() - started:.2f} s: {outcomes}")
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5


def test_workers_die_with_a_killed_parent(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent.parent)!r})
        from pipeline.intake.isolate import run_isolated
        from tests.test_isolate import record_pid_and_hang
        run_isolated(record_pid_and_hang, [{str(tmp_path)!r}] * 2, workers=2, timeout=600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 20
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = [int(path.name) for path in tmp_path.iterdir()]
        assert len(workers) == 2
        parent.kill()
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in workers)
