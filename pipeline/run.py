"""One nightly run: inbox → archive → read → normalize → validate → store → merge → compute → write.

The stages are called in order and each hands the next a plain value; this module owns the
edges (files, the store, the clock) and the promises: nothing received is lost (archived by
hash before parsing), state changes in one transaction, the workbook appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from .compute import check_reported, compute_master, master_columns
from .config import Config, LimitsConfig
from .errors import ERROR, Issue
from .intake.isolate import run_isolated
from .intake.layout import build_alias_index
from .intake.normalize import FileReturn, TaskIndex, frame_from_returns, normalize_book
from .intake.read import read_book
from .intake.safety import IN_PROGRESS_SUFFIXES, inspect_file, is_settling, should_skip
from .merge import ROW_COLUMNS_USED, choose_returns, merge_tasks, missing_rows, missing_units, superseded_issue
from .offload import Offload
from .report.workbook import WorkbookInput, content_digest, lagging_items, workbook_name, write_workbook
from .runlog import RunLog
from .store import Store, now_text, run_lock
from .tasks import CACHE_NAME, keep_task_list, load_kept_task_list, read_task_list, task_list_key
from .text import shorten
from .validate import validate_returns

# Bump when reading or normalizing changes what a file yields: stored results are then redone.
# 2: a rate shown as a percentage is read as shown (6e74cc3); a non-finite or 400-digit figure is
# "not a number" instead of a program error (0439b4a, 2cdcc08); error cells and uncached formulas
# found in sheets with a namespace prefix (9db4a24).
PARSER_VERSION = 2
TEMP_PREFIX = ".~consolidate-"
LAST_RUN = "last_run.json"
SETTLE_WATCH_SECONDS = 0.5

FAILURE_MESSAGES = {
    "timeout": "文件读取超时（超过 {timeout:g} 秒），可能过大或已损坏。请检查后重新保存为普通 Excel 文件发送。",
    "memory": "文件读取时占用内存超过上限，可能含有大量空行空列或已损坏。请删除多余内容后重新发送。",
    "crashed": "文件导致读取程序异常退出，可能已损坏或是恶意构造的文件。请重新保存后发送。",
    "error": "文件无法读取（{detail}），可能已损坏或格式特殊。请用 Excel 或 WPS 打开后另存为 .xlsx 再发送。",
}


@dataclass
class RunResult:
    workbook: Path
    period: str
    accepted: list[str]
    rejected: list[str]
    partial: list[str]
    superseded: list[str]
    deferred: list[str]
    skipped: list[tuple[str, str]]
    missing_units: list[str]
    issues: list[Issue]
    master: pd.DataFrame
    new_files: int
    exit_code: int
    summary: dict = field(default_factory=dict)

    @property
    def lagging(self) -> int:
        return int(self.master["status"].isin(["滞后", "严重滞后"]).sum())


def checkpoint(name: str) -> None:
    """A named point of the run where the crash tests kill the process (CONSOLIDATE_KILL_AT)."""
    if os.environ.get("CONSOLIDATE_KILL_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def previous_period(period: str) -> str | None:
    """The period whose cumulative values this one continues; None in January (a new year)."""
    year, month = int(period[:4]), int(period[5:7])
    return None if month == 1 else f"{year}-{month - 1:02d}"


def run(config: Config, *, progress=None, now: float | None = None) -> RunResult:
    """Consolidate the inbox for the configured period; see DESIGN.md for the promises."""
    paths = config.paths
    log = RunLog(paths.state / "logs", keep=config.run.log_keep)
    with run_lock(paths.state, wait=config.run.lock_wait):
        try:
            result = _run_locked(config, log, progress, time.time() if now is None else now)
        except BaseException as exc:
            log.line(f"运行失败：{exc}")
            log.line(traceback.format_exc())
            log.close(failed=True)
            raise
        log.line(one_line_summary(result))
        log.close()
        return result


def _run_locked(config: Config, log: RunLog, progress, now: float) -> RunResult:
    paths, period = config.paths, config.report.period
    started = now_text()
    # A province's task list takes a second to read: unless the copy kept in state/ from the last
    # run still holds (pipeline/tasks.py), a child reads it while this process archives what came
    # in (pipeline/offload.py). Its errors are raised all the same, only after the archiving,
    # which changes nothing in the archive that matters: a later run finds the same bytes there.
    reading = _TaskListReading(paths.tasks, paths.state / CACHE_NAME)
    try:
        paths.outbox.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(paths.outbox, log)
        store = Store(paths.state)
    except BaseException:
        reading.close()
        raise
    try:
        candidates, skipped, deferred = discover(paths.inbox, config, now, log)
        if store.sweep_intake():
            log.line("清理上次中断运行留下的归档临时文件")
        received = receive(store, candidates)
        checkpoint("archived")
        tasks = reading.tasks()
        if reading.kept is not None:
            log.line(f"任务清单 {paths.tasks.name} 与上次相同，沿用上次的读取结果")
        index = TaskIndex.from_tasks(tasks)
        aliases = build_alias_index(config.aliases)
        known = store.known_results(PARSER_VERSION)
        fresh = [item for item in received if (item["sha256"], item["name"]) not in known]
        log.line(f"收到 {len(candidates)} 个文件，其中新文件 {len(fresh)} 个")
        returns = read_returns(fresh, config, index, aliases, period, progress, log)
        rows = frame_from_returns(returns)
        accepted_rows, row_issues = validate_returns(rows, index.codes, index.pairs)
        checkpoint("validated")
        with store.transaction():
            for item in received:
                store.record_file(item["sha256"], item["size"], item["archive"])
            rows_by_file = Store.row_records(accepted_rows)
            issues_by_file: dict[str, list[Issue]] = {}
            for issue in row_issues:
                issues_by_file.setdefault(issue.file, []).append(issue)
            for item, ret in zip(fresh, returns, strict=True):
                own_rows = [] if ret.rejected else rows_by_file.get(ret.file, [])
                own_issues = ret.issues + issues_by_file.get(ret.file, [])
                store.record_result(item["sha256"], item["name"], item["mtime"], PARSER_VERSION, ret, own_rows, own_issues)
            checkpoint("recorded")
            result = consolidate(store, config, tasks, period, {(item["sha256"], item["name"]) for item in received})
            result.deferred, result.skipped, result.new_files = deferred, skipped, len(fresh)
            target = paths.outbox / workbook_name(config.report.title, period)
            temp = paths.outbox / f"{TEMP_PREFIX}{os.getpid()}.tmp"
            contents = _workbook_input(config, tasks, result)
            digest = content_digest(contents)
            # The same contents make the same workbook: a night with nothing new keeps it as it is.
            unchanged = target.exists() and _last_digest(paths.state) == digest
            try:
                if not unchanged:
                    write_workbook(contents, temp)
                    checkpoint("written")
                result.workbook = target
                result.summary = build_summary(config, result, started) | {"digest": digest, "unchanged": unchanged}
                store.record_run(started, period, result.exit_code, result.summary)
            except BaseException:
                temp.unlink(missing_ok=True)
                raise
        checkpoint("committed")
        if unchanged:
            log.line("与上次运行的汇总内容相同，汇总表保持不变")
        else:
            _fsync(temp)
            os.replace(temp, target)
        checkpoint("published")
        write_json_atomic(paths.state / LAST_RUN, result.summary)
        return result
    finally:
        reading.close()
        store.close()


# A task list smaller than this is read here: the fork would cost more than it saves.
OFFLOAD_TASKS_BYTES = 256 * 1024


class _TaskListReading:
    """The task list: as kept in state/ from the last run when neither the file nor the code that
    reads it changed (``kept``); otherwise read by a forked child (large lists) or here, as it
    was before (small ones, or when the child cannot run or fails: then reading here raises
    whatever the child met, with its message), and kept for the next run."""

    def __init__(self, path: Path, cache: Path):
        self.path, self.cache = path, cache
        self._child = None
        self.key = task_list_key(path)
        self.kept = load_kept_task_list(cache, self.key) if self.key else None
        if self.kept is not None:
            return
        try:
            large = path.stat().st_size >= OFFLOAD_TASKS_BYTES
        except OSError:
            large = False  # read_task_list reports a missing file
        self._child = Offload(partial(_pickled_task_list, path), "consolidate-tasks") if large else None

    def tasks(self) -> pd.DataFrame:
        if self.kept is not None:
            return self.kept
        answer = self._child.answer() if self._child is not None else None
        tasks = pickle.loads(answer) if answer is not None else read_task_list(self.path)
        # Kept only when the file did not change while it was read (a coordinator saving it).
        if self.key is not None and task_list_key(self.path) == self.key:
            keep_task_list(self.cache, self.key, answer or pickle.dumps(tasks, protocol=pickle.HIGHEST_PROTOCOL))
        return tasks

    def close(self) -> None:
        if self._child is not None:
            self._child.close()


def _pickled_task_list(path: Path) -> list[bytes]:
    """In the child: the task list as pickle bytes (68,673 tasks: 4 MB, 0.05 s to load)."""
    return [pickle.dumps(read_task_list(path), protocol=pickle.HIGHEST_PROTOCOL)]


def discover(inbox: Path, config: Config, now: float, log: RunLog):
    """Files to read, files skipped (with why), and files still being copied (left for later).

    A file modified within the settle window is watched for a moment: only one that is still
    growing (or has a download's .part/.tmp name) is left for the next run, so a coordinator who
    drops files and runs at once is not made to wait a night.
    """
    if not inbox.is_dir():
        inbox.mkdir(parents=True, exist_ok=True)
    candidates, skipped, recent = [], [], []
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        if not path.is_file() or path.is_symlink():
            continue
        reason = should_skip(path)
        if reason:
            skipped.append((path.name, reason))
            log.line(f"跳过 {path.name}：{reason}")
        elif is_settling(path, now, config.limits.settle_seconds):
            recent.append(path)
        else:
            candidates.append(path)
    deferred = []
    if recent:
        before = {path: _signature(path) for path in recent}
        time.sleep(SETTLE_WATCH_SECONDS)
        for path in recent:
            if path.suffix.lower() in IN_PROGRESS_SUFFIXES or _signature(path) != before[path]:
                deferred.append(path.name)
                log.line(f"暂不处理 {path.name}：文件仍在复制中，下次运行时再读取")
            else:
                candidates.append(path)
        candidates.sort(key=lambda p: p.name)
    return candidates, skipped, deferred


def _signature(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def receive(store: Store, paths: list[Path]) -> list[dict]:
    """Archive every received file by content hash before anything parses it."""
    received, taken = [], []
    for number, path in enumerate(paths):
        stat = path.stat()
        sha256, size, temp = store.take_in(path, number)
        taken.append((sha256, temp, path.suffix))
        received.append({"name": path.name, "sha256": sha256, "size": size, "mtime": stat.st_mtime})
    for item, archive in zip(received, store.publish(taken), strict=True):
        item["archive"] = archive
    return received


def _read_file(path: str, limits: LimitsConfig) -> tuple:
    """Inspect one archived file, then parse it when it passed: (problem, code, None) for a
    refused file, (None, None, RawBook) for a read one. The reading stage proper, which
    benchmarks/stages.py measures against a raw calamine read.

    The inspection inflates every part of the package, under the worker's memory cap. The same
    pass scans the sheets for what calamine does not report (xmlscan) and keeps the inflated
    parts for calamine (repack), so that a workbook is inflated once.
    """
    verdict = inspect_file(Path(path), limits, scan_sheets=True, repack=True)
    if verdict.problem:
        return verdict.problem, verdict.code, None
    book = read_book(path, verdict.kind, verdict.encoding, limits.max_rows, verdict.sheet_flags, verdict.package)
    return None, None, book


def _read_job(job: tuple[str, list[str]], limits: LimitsConfig, index, aliases, period: str) -> tuple:
    """Runs in a worker process: read one archived file and normalize it under each name it was
    received as. (problem, code, None) for a refused file; (None, None, [(FileReturn, log
    text), …]) for a read one, a pair per name in the job's order, the text empty unless
    normalizing failed.

    Normalizing here rather than in the parent lets each worker's core do all the per-file work,
    and the parent, which was the bottleneck normalizing 3,000 returns (issue 7), only collects.
    The file's time budget and memory cap cover its normalizing too. The task index, aliases and
    period come with the function, inherited at the fork, not pickled per job.
    """
    path, names = job
    problem, code, book = _read_file(path, limits)
    if problem:
        return problem, code, None
    # One book for every name, in order, as when the parent normalized: normalize_book names a
    # nameless sheet after the first file name it sees.
    return None, None, [_normalize_safely(book, name, index, aliases, period) for name in names]


def read_returns(fresh, config: Config, index, aliases, period, progress, log: RunLog) -> list[FileReturn]:
    """Inspect, parse and normalize the new files in isolated workers; one FileReturn each, in
    order. One job per content, however many names it came under."""
    limits = config.limits
    returns: list[FileReturn | None] = [None] * len(fresh)
    positions_of: dict[str, list[int]] = {}  # content → its places in ``fresh``, in inbox order
    for position, item in enumerate(fresh):
        positions_of.setdefault(item["sha256"], []).append(position)
    groups = list(positions_of.values())
    jobs = [(str(fresh[group[0]]["archive"]), [fresh[position]["name"] for position in group]) for group in groups]
    job_of = {position: job for job, group in enumerate(groups) for position in group}

    def collect(job: int, outcome) -> None:
        """Runs as each file's results arrive, while the workers go on with the next ones."""
        problem, code, normalized = outcome.value if outcome.ok else (None, None, None)
        for number, position in enumerate(groups[job]):
            name = fresh[position]["name"]
            if problem:
                ret = FileReturn(file=name, period=period).reject(problem, code or "bad-file")
            elif outcome.ok:
                ret, failure = normalized[number]
                if failure:
                    log.line(failure)
            else:
                ret = FileReturn(file=name, period=period)
                ret.reject(_failure_message(outcome, limits.parse_timeout), f"read-{outcome.failure}")
            returns[position] = ret

    outcomes = run_isolated(
        partial(_read_job, limits=limits, index=index, aliases=aliases, period=period), jobs,
        workers=limits.workers, timeout=limits.parse_timeout, memory_mb=limits.worker_memory_mb,
        progress=progress, on_outcome=collect,
    )  # fmt: skip
    for position, item in enumerate(fresh):  # the log in inbox order, whatever order the jobs finished in
        outcome = outcomes[job_of[position]]
        if outcome.ok and outcome.value[0]:
            log.line(f"拒收 {item['name']}：{outcome.value[0]}")
        for note in returns[position].notes:
            log.line(f"{item['name']}：{note}")
    return returns


def _normalize_safely(book, name: str, index, aliases, period: str) -> tuple[FileReturn, str]:
    """normalize_book, with a bug of ours costing this file only, never the night's run: the
    FileReturn, and the line for the run's log (empty unless it failed).

    A MemoryError is the worker's cap, not a bug: it goes to run_isolated, which replaces the
    worker and fails the file as too large (read-memory).
    """
    try:
        return normalize_book(book, name, index, aliases, period), ""
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure here is ours, and must stay this file's
        rejected = FileReturn(file=name, period=period).reject(
            f"整理本文件数据时程序出错（{type(exc).__name__}），本文件暂未采用，原文件已保存。"
            "请把本文件转交技术支持；也可请报送单位改用下发的模板重新填报。",
            "internal-error",
        )
        return rejected, f"{name}：整理数据时程序出错：{exc!r}\n{traceback.format_exc()}"


def _failure_message(outcome, timeout: float) -> str:
    detail = outcome.detail
    if outcome.failure == "error" and detail.startswith("ReadError: "):
        return detail.removeprefix("ReadError: ")
    detail = shorten(detail.splitlines()[0] if detail else "", 80)
    return FAILURE_MESSAGES.get(outcome.failure, FAILURE_MESSAGES["error"]).format(timeout=timeout, detail=detail)


def consolidate(store: Store, config: Config, tasks: pd.DataFrame, period: str, present: set[str]) -> RunResult:
    """The period's master table and issues, from everything the store holds for it.

    ``present`` are the hashes of the files in the inbox now. A file's problems are reported
    while it is in the inbox or feeds the table, and not once a newer return of its unit
    replaced it (the unit's correction answers them).
    """
    files = store.period_files(period)
    rows = store.period_rows(period, ROW_COLUMNS_USED)
    chosen, superseded_issues = choose_returns(rows, files)
    keys = pd.Series(list(zip(files["sha256"], files["file"], strict=True)), index=files.index, dtype=object)
    winners = set(zip(chosen["sha256"], chosen["file"], strict=True)) if not chosen.empty else set()
    is_present, is_winner = keys.isin(present), keys.isin(winners)
    is_replaced = _replaced(files, chosen)
    shown = files[(is_present | is_winner) & ~is_replaced]
    shown_keys = set(zip(shown["sha256"], shown["file"], strict=True))
    file_issues = [issue for sha, issue in store.period_issues(period) if (sha, issue.file) in shown_keys]
    present_names = set(files.loc[is_present, "file"])
    superseded_issues = [issue for issue in superseded_issues if issue.file in present_names]
    stale = files[(files["status"] == "rejected") & is_replaced & is_present]
    superseded_issues += [_superseded_by(chosen, item.unit, item.file) for item in stale.itertuples(index=False)]
    previous = previous_values(store, period)
    merged = merge_tasks(tasks, chosen, previous)
    computed = compute_master(merged, config.report.month, config.report.severe_lag_points)
    issues = (
        file_issues
        + superseded_issues
        + missing_rows(tasks, chosen)
        + check_reported(computed, config.report.rate_tolerance_points)
    )
    rejected = shown.loc[shown["status"] == "rejected", "file"].tolist()
    partial = files.loc[(files["status"] == "partial") & is_winner, "file"].tolist()
    accepted = files.loc[(files["status"] != "rejected") & (is_winner | is_present), "file"].tolist()
    superseded = [issue.file for issue in superseded_issues]
    exit_code = 1 if any(issue.level == ERROR for issue in issues) or rejected else 0
    return RunResult(
        workbook=Path(), period=period, accepted=accepted, rejected=rejected, partial=partial,
        superseded=superseded, deferred=[], skipped=[], missing_units=missing_units(tasks, chosen),
        issues=issues, master=master_columns(computed), new_files=0, exit_code=exit_code,
    )  # fmt: skip


def _replaced(files: pd.DataFrame, chosen: pd.DataFrame) -> pd.Series:
    """Returns of a unit older than the one the table uses for that unit."""
    if chosen.empty or files.empty:
        return pd.Series(False, index=files.index)
    used = files.merge(chosen[["sha256", "file", "unit"]].drop_duplicates(), on=["sha256", "file", "unit"])
    newest = used.groupby("unit")["mtime"].max()
    return files["unit"].map(newest).gt(files["mtime"]).fillna(False).astype(bool)


def _superseded_by(chosen: pd.DataFrame, unit: str, older: str) -> Issue:
    newest = chosen.loc[chosen["unit"] == unit, "file"].iloc[0]
    return superseded_issue(unit, older, newest)


def previous_values(store: Store, period: str) -> pd.DataFrame | None:
    """The values (code, unit, completed) the table used in the period before ``period``.

    None in January: a new year's cumulative count continues nothing.
    """
    before = previous_period(period)
    if before is None:
        return None
    rows = store.period_rows(before, ["unit", "code", "completed"])
    if rows.empty:
        return None
    chosen, _ = choose_returns(rows, store.period_files(before))
    return chosen[["code", "unit", "completed"]].drop_duplicates(["code", "unit"]).reset_index(drop=True)


def _workbook_input(config: Config, tasks: pd.DataFrame, result: RunResult) -> WorkbookInput:
    report = config.report
    return WorkbookInput(
        title=report.title, period=report.period, master=result.master, issues=result.issues,
        missing_units=result.missing_units, tasks=tasks, title_font=report.title_font,
        body_font=report.body_font, footnote=report.footnote, severe_points=report.severe_lag_points,
    )  # fmt: skip


def build_summary(config: Config, result: RunResult, started: str) -> dict:
    """The run's summary: printed by --json, stored in the history, used by mail."""
    master = result.master
    month = config.report.month
    lagging = lagging_items(master)
    return {
        "workbook": str(result.workbook.resolve()),
        "title": config.report.title,
        "period": result.period,
        "period_label": f"1-{month}月" if month > 1 else "1月",
        "schedule": round(month / 12, 4),
        "accepted": result.accepted,
        "rejected": result.rejected,
        "partial": result.partial,
        "superseded": result.superseded,
        "deferred": result.deferred,
        "skipped": [name for name, _ in result.skipped],
        "missing_units": result.missing_units,
        "issues": len(result.issues),
        "errors": sum(issue.level == ERROR for issue in result.issues),
        "warnings": sum(issue.level != ERROR for issue in result.issues),
        "new_files": result.new_files,
        "lagging_count": len(lagging),
        "status_counts": {k: int(v) for k, v in master["status"].value_counts().items()},
        "lagging": [
            {"code": r.code, "indicator": r.indicator, "unit": r.unit, "rate": _round(r.rate),
             "schedule": _round(r.schedule), "status": r.status}
            for r in lagging.itertuples(index=False)
        ],  # fmt: skip
        "problems": [issue.to_dict() for issue in result.issues],
        "exit_code": result.exit_code,
        "started_at": started,
        "finished_at": now_text(),
    }


def _round(value) -> float | None:
    return None if pd.isna(value) else round(float(value), 4)


def one_line_summary(result: RunResult) -> str:
    """For cron mail and the log: everything that matters on one line."""
    missing = "、".join(result.missing_units) or "无"
    return (
        f"{result.period}：接收 {len(result.accepted)} 份，拒收 {len(result.rejected)} 份，"
        f"部分行被拒 {len(result.partial)} 份；未报送单位 {len(result.missing_units)} 个（{missing}）；"
        f"滞后 {result.lagging} 项；问题 {len(result.issues)} 条；汇总表 {result.workbook}"
    )


def sweep_temporaries(outbox: Path, log: RunLog) -> None:
    """Remove half-written workbooks left by a killed run."""
    for stray in outbox.glob(f"{TEMP_PREFIX}*"):
        try:
            stray.unlink()
            log.line(f"清理上次中断运行留下的临时文件 {stray.name}")
        except OSError:
            pass


def _last_digest(state: Path) -> str | None:
    try:
        return json.loads((state / LAST_RUN).read_text(encoding="utf-8")).get("digest")
    except (OSError, ValueError, AttributeError):
        return None


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(temp, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
