"""In-process measurements of one workspace, for benchmarks/run.py (each mode prints one JSON line).

    python benchmarks/stages.py reads   CONFIG            # raw calamine vs our reader vs safety inspection
    python benchmarks/stages.py stages  CONFIG [--workers N]   # one fresh run, timed stage by stage
    python benchmarks/stages.py pool    CONFIG --workers N [--repeat 3] [--with-normalize]   # inspect + parse in isolated workers only, against raw calamine
    python benchmarks/stages.py profile CONFIG [--top 40] [--out FILE.prof]   # cProfile of one fresh run
        # (of this process: what the workers do, normalize_book included since they normalize, is not in it)

Stage timings come from wrapping the library functions that ``pipeline.run`` calls (module
globals and Store methods) with a timer, then calling ``pipeline.run.run(config)`` itself: the
real run, nothing replicated, and no timing code in ``pipeline/``. What no wrapped function
covers (the loops written inline in ``_run_locked``) is reported as "glue". A wrapped name that
the code no longer has is skipped and listed under "missing". A wrapped function that runs in
the forked parse workers (the inspection since 10a2aef, read_book, and normalize_book since the
workers normalize) is timed there too, into memory shared with this process, and reported as
"in the workers: <stage>": seconds summed over the workers (with two, more than the wall time),
and the largest resident size a worker had after it. Each row also has "cpu", the CPU seconds
of the process that ran it (steadier than the wall time on a shared machine).

Run it from the repository whose ``pipeline`` should be measured (``run.py --repo`` does so).
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import dataclasses
import functools
import glob
import inspect
import json
import os
import pstats
import resource
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

# (label, module path, owner attribute path, parent label)
STAGES = [
    ("task list (read_task_list)", "pipeline.run", "read_task_list", None),
    ("task index (TaskIndex.from_tasks)", "pipeline.run", "TaskIndex.from_tasks", None),
    ("discover", "pipeline.run", "discover", None),
    ("hash + archive (_receive)", "pipeline.run", "_receive", None),  # before ea6062f
    ("hash + archive (receive)", "pipeline.run", "receive", None),
    ("store: take_in (copy while hashing)", "pipeline.store", "Store.take_in", "hash + archive (receive)"),
    ("store: publish (one sync, renames)", "pipeline.store", "Store.publish", "hash + archive (receive)"),
    ("read_returns", "pipeline.run", "read_returns", None),
    ("inspect (safety.inspect_file; in the worker since 10a2aef)", "pipeline.run", "inspect_file", "read_returns"),
    ("parse (run_isolated → read_book; and normalize_book since the workers normalize)", "pipeline.run", "run_isolated", "read_returns"),
    ("read_book", "pipeline.run", "read_book", "read_returns"),  # in the worker
    ("normalize (normalize_book; in the workers since they normalize)", "pipeline.run", "normalize_book", "read_returns"),
    ("frame_from_returns", "pipeline.run", "frame_from_returns", None),
    ("store: known_results", "pipeline.store", "Store.known_results", None),
    ("store: row_records (accepted rows as tuples)", "pipeline.store", "Store.row_records", None),
    ("validate (pandera)", "pipeline.run", "validate_returns", None),
    ("store: record_receipt", "pipeline.store", "Store.record_receipt", None),  # older name
    ("store: record_file", "pipeline.store", "Store.record_file", None),
    ("store: record_result", "pipeline.store", "Store.record_result", None),
    ("consolidate", "pipeline.run", "consolidate", None),
    ("store: period_files", "pipeline.store", "Store.period_files", "consolidate"),
    ("store: period_rows", "pipeline.store", "Store.period_rows", "consolidate"),
    ("store: period_issues", "pipeline.store", "Store.period_issues", "consolidate"),
    ("merge: choose_returns", "pipeline.run", "choose_returns", "consolidate"),
    ("merge: merge_tasks", "pipeline.run", "merge_tasks", "consolidate"),
    ("merge: missing_rows", "pipeline.run", "missing_rows", "consolidate"),
    ("merge: missing_units", "pipeline.run", "missing_units", "consolidate"),
    ("compute: compute_master", "pipeline.run", "compute_master", "consolidate"),
    ("compute: check_reported", "pipeline.run", "check_reported", "consolidate"),
    ("content_digest (is the workbook unchanged?)", "pipeline.run", "content_digest", None),
    ("write_workbook", "pipeline.run", "write_workbook", None),
    ("汇总表 (write_summary)", "pipeline.report.workbook", "write_summary", "write_workbook"),
    ("明细 (write_detail)", "pipeline.report.workbook", "write_detail", "write_workbook"),
    ("问题清单 (write_issues)", "pipeline.report.workbook", "write_issues", "write_workbook"),
    ("未报送 (write_missing)", "pipeline.report.workbook", "write_missing", "write_workbook"),
    ("滞后事项 (write_lagging)", "pipeline.report.workbook", "write_lagging", "write_workbook"),
    ("统计 (write_statistics)", "pipeline.report.workbook", "write_statistics", "write_workbook"),
    ("xlsxwriter close (XML + zip)", "xlsxwriter.workbook", "Workbook.close", "write_workbook"),
    ("build_summary", "pipeline.run", "build_summary", None),
    ("store: record_run", "pipeline.store", "Store.record_run", None),
    ("fsync workbook", "pipeline.run", "_fsync", None),
    ("write last_run.json", "pipeline.run", "write_json_atomic", None),
]


class StageTimer:
    def __init__(self):
        import multiprocessing

        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)  # this process's CPU seconds in the stage
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self.rss_after: dict[str, float] = {}  # resident MB when the stage last returned
        # The same per stage for calls in the forked workers, in memory they inherit.
        context = multiprocessing.get_context("fork")
        self.parent = os.getpid()
        self.slot = {label: number for number, (label, *_) in enumerate(STAGES)}
        self.worker_seconds = context.RawArray("d", len(STAGES))
        self.worker_cpu = context.RawArray("d", len(STAGES))
        self.worker_calls = context.RawArray("q", len(STAGES))
        self.worker_rss = context.RawArray("d", len(STAGES))
        self.worker_lock = context.Lock()

    def install(self) -> None:
        import importlib

        for label, module_name, path, _ in STAGES:
            owner = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part, None)
            if owner is None or not hasattr(owner, attr):
                self.missing.append(f"{module_name}.{path}")
                continue
            static = inspect.getattr_static(owner, attr)
            original = getattr(owner, attr)
            timed = self._timed(label, original)
            if isinstance(static, classmethod):
                setattr(owner, attr, staticmethod(timed))  # ``original`` is already bound to the class
            else:
                setattr(owner, attr, timed)

    def _timed(self, label, original):
        seconds, cpu, calls, rss = self.seconds, self.cpu, self.calls, self.rss_after
        slot, parent = self.slot[label], self.parent

        def timed(*args, **kwargs):
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed, cpu_elapsed = time.perf_counter() - start, time.process_time() - cpu_start
                if os.getpid() == parent:
                    seconds[label] += elapsed
                    cpu[label] += cpu_elapsed
                    calls[label] += 1
                    rss[label] = max(rss.get(label, 0.0), _rss_mb())
                else:
                    self._add_worker(slot, elapsed, cpu_elapsed)

        return timed

    def _add_worker(self, slot: int, elapsed: float, cpu_elapsed: float) -> None:
        # Bounded: a worker killed while it held the lock must not hang the others.
        if self.worker_lock.acquire(timeout=1.0):
            try:
                self.worker_seconds[slot] += elapsed
                self.worker_cpu[slot] += cpu_elapsed
                self.worker_calls[slot] += 1
                self.worker_rss[slot] = max(self.worker_rss[slot], _rss_mb())
            finally:
                self.worker_lock.release()

    def report(self, total: float) -> list[dict]:
        top = sum(self.seconds.get(label, 0.0) for label, _, _, parent in STAGES if parent is None)
        rows = []
        for label, _, _, parent in STAGES:
            if label in self.seconds:
                rows.append({"stage": label, "parent": parent, "seconds": self.seconds[label], "cpu": self.cpu[label],
                             "calls": self.calls[label], "rss_mb": round(self.rss_after.get(label, 0.0))})  # fmt: skip
            slot = self.slot[label]
            if self.worker_calls[slot]:
                rows.append({"stage": f"in the workers: {label}", "parent": parent, "where": "workers",
                             "seconds": self.worker_seconds[slot], "cpu": self.worker_cpu[slot],
                             "calls": self.worker_calls[slot],
                             "rss_mb": round(self.worker_rss[slot])})  # fmt: skip
        rows.append({"stage": "glue (inline loops of _run_locked, lock, log, commit)", "parent": None,
                     "seconds": total - top, "calls": 1})  # fmt: skip
        return rows


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fresh(config_path: Path, workers: int | None = None):
    """The workspace's config with an empty state/ and outbox/ (every file is parsed)."""
    from pipeline.config import load_config

    config = load_config(config_path)
    # Moved aside now and deleted when this process exits: deleting a 3,000-file archive just
    # before the run slows its archiving (ext4 still busy), a cost no nightly run has.
    for folder in (config.paths.state, config.paths.outbox):
        if folder.exists():
            trash = folder.with_name(f".wiped-{folder.name}-{time.time_ns()}")
            folder.rename(trash)
            atexit.register(shutil.rmtree, trash, ignore_errors=True)
    if workers is not None:
        config = dataclasses.replace(config, limits=dataclasses.replace(config.limits, workers=workers))
    return config


def inbox_files(config_path: Path) -> list[str]:
    from pipeline.config import load_config

    return sorted(glob.glob(str(load_config(config_path).paths.inbox / "*.xlsx")))


def mode_reads(config_path: Path, repeat: int) -> dict:
    """Raw python_calamine read of every file, against our reader and the safety inspection, and
    (``read_job_in_process``) what a worker does to read one file, here in-process: inspection
    (with the sheet scan, where the checkout does it in the same pass) and read_book. Where the
    workers also normalize, ``worker_job_in_process`` is the whole of a worker's job: the same
    and normalize_book."""
    from python_calamine import CalamineWorkbook

    import pipeline.run as pipeline_run
    from pipeline.config import load_config
    from pipeline.intake.read import read_book
    from pipeline.intake.safety import inspect_file
    from pipeline.intake.xmlscan import scan_xlsx

    config = load_config(config_path)
    limits = config.limits
    files = inbox_files(config_path)
    paths = [Path(f) for f in files]
    read_job = _read_job_of(pipeline_run, limits)
    worker_job = _worker_job_of(pipeline_run, config)
    timings = defaultdict(list)
    for _ in range(repeat):
        start = time.perf_counter()
        for name in files:
            CalamineWorkbook.from_path(name).get_sheet_by_index(0).to_python()
        timings["raw_calamine"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for name in files:
            read_book(name, "xlsx", None, limits.max_rows)
        timings["read_book_in_process"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for path in paths:
            scan_xlsx(path)
        timings["xmlscan_only"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for path in paths:
            inspect_file(path, limits)
        timings["inspect_file"].append(time.perf_counter() - start)
        if read_job is not None:
            start = time.perf_counter()
            for name in files:
                read_job(name)
            timings["read_job_in_process"].append(time.perf_counter() - start)
        if worker_job is not None:
            start = time.perf_counter()
            for name in files:
                worker_job(name)
            timings["worker_job_in_process"].append(time.perf_counter() - start)
    return {"files": len(files), **{k: sorted(v)[len(v) // 2] for k, v in timings.items()}, "all": timings}


def _read_job_of(pipeline_run, limits):
    """A worker's reading of one path (inspection and read_book, not normalize), whatever the
    checkout's signatures; None when the checkout inspects in the parent (before 10a2aef)."""
    if hasattr(pipeline_run, "_read_file"):  # since the workers normalize: _read_job = _read_file + normalize
        return functools.partial(pipeline_run._read_file, limits=limits)
    read_job = pipeline_run._read_job
    if "inspect_file" not in inspect.getsource(read_job):
        return None
    if len(inspect.signature(read_job).parameters) == 2:
        return functools.partial(read_job, limits=limits)
    return lambda name: read_job((name, limits))


def _worker_job_of(pipeline_run, config):
    """A worker's whole job for one path, reading and normalizing under the file's own name;
    None when the checkout normalizes in the parent."""
    if not hasattr(pipeline_run, "_read_file"):
        return None
    from pipeline.intake.layout import build_alias_index
    from pipeline.intake.normalize import TaskIndex
    from pipeline.tasks import read_task_list

    job = functools.partial(
        pipeline_run._read_job, limits=config.limits, index=TaskIndex.from_tasks(read_task_list(config.paths.tasks)),
        aliases=build_alias_index(config.aliases), period=config.report.period,
    )  # fmt: skip
    return lambda name: job((name, [Path(name).name]))


def mode_stages(config_path: Path, workers: int | None) -> dict:
    timer = StageTimer()
    timer.install()
    import pipeline.run as pipeline_run

    config = fresh(config_path, workers)
    start = time.perf_counter()
    result = pipeline_run.run(config)
    total = time.perf_counter() - start
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "total": total,
        "workers": config.limits.workers,
        "accepted": len(result.accepted),
        "rejected": len(result.rejected),
        "rows": int(len(result.master)),
        "issues": len(result.issues),
        "stages": timer.report(total),
        "missing": timer.missing,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_maxrss_mb": children.ru_maxrss / 1024,  # the largest worker (reaped children)
        "cpu_self": own.ru_utime + own.ru_stime,
        "cpu_workers": children.ru_utime + children.ru_stime,
    }


def mode_pool(config_path: Path, workers: int, with_normalize: bool = False, repeat: int = 1) -> dict:
    """The reading stage alone: every file inspected and parsed in the isolated worker pool
    (pipeline.run._read_file, the old _read_job), or, for a checkout whose run inspects in the
    parent first (before 10a2aef), inspect_file here and read_book in the pool. Normalizing is
    not part of it, wherever the checkout does it, so that the figure stays comparable with the
    raw calamine read, which is timed here too, in this process, alternating with the pool
    (``repeat`` rounds), so that the ratio comes from one run.

    Two figures of the pool: ``books`` hands every parsed book back to this process (pickled,
    sent, unpickled), as an older run did; ``kept`` is the reading as the run does it since the
    workers normalize (a3322b0): each worker keeps the rows it read for its own normalizing,
    and sends back only their count here. ``inspect``/``parse``/``total`` are the last round's
    ``books``, as before. ``with_normalize``: also the workers' whole job (reading and
    normalize_book) through the pool, where the workers normalize."""
    from python_calamine import CalamineWorkbook

    import pipeline.run as pipeline_run
    from pipeline.config import load_config
    from pipeline.intake.isolate import run_isolated
    from pipeline.intake.read import read_book
    from pipeline.intake.safety import inspect_file

    config = load_config(config_path)
    limits = config.limits
    files = inbox_files(config_path)
    options = {"workers": workers, "timeout": limits.parse_timeout, "memory_mb": limits.worker_memory_mb}
    read_job = _read_job_of(pipeline_run, limits)
    timings = defaultdict(list)
    for _ in range(repeat):
        start = time.perf_counter()
        for name in files:
            CalamineWorkbook.from_path(name).get_sheet_by_index(0).to_python()
        timings["raw_calamine"].append(time.perf_counter() - start)
        start = time.perf_counter()
        if read_job is not None:
            outcomes = run_isolated(read_job, files, **options)  # fork: any function will do
            inspected = start
        else:
            jobs = []
            for name in files:
                verdict = inspect_file(Path(name), limits)
                jobs.append((name, verdict.kind, verdict.encoding, limits.max_rows))
            inspected = time.perf_counter()
            outcomes = run_isolated(lambda job: read_book(*job), jobs, **options)
        done = time.perf_counter()
        timings["books"].append(done - start)
        last_inspect, last_parse = inspected - start, done - inspected
        if read_job is not None:
            start = time.perf_counter()
            kept = run_isolated(functools.partial(_rows_kept, read_job), files, **options)
            timings["kept"].append(time.perf_counter() - start)
            assert sum(o.ok for o in kept) == sum(o.ok for o in outcomes)
    result = {
        "workers": workers,
        "files": len(files),
        "ok": sum(o.ok for o in outcomes),
        "worker_inspects": read_job is not None,
        "inspect": last_inspect,
        "parse": last_parse,
        "total": last_inspect + last_parse,
        **{name: sorted(values)[len(values) // 2] for name, values in timings.items()},
        "all": timings,
    }
    worker_job = _worker_job_of(pipeline_run, config) if with_normalize else None
    if worker_job is not None:
        start = time.perf_counter()
        outcomes = run_isolated(worker_job, files, **options)
        result["read_and_normalize"] = time.perf_counter() - start
        result["read_and_normalize_ok"] = sum(o.ok for o in outcomes)
    return result


def _rows_kept(read_job, name: str) -> tuple:
    """A worker's reading of one file, its rows kept here: what it sends back is their count."""
    problem, code, book = read_job(name)
    return problem, code, None if book is None else sum(len(sheet.rows) for sheet in book.sheets)


def mode_profile(config_path: Path, top: int, out: Path | None, workers: int | None) -> dict:
    import pipeline.run as pipeline_run

    read_job = pipeline_run._read_job

    def read_job_unprofiled(*args, **kwargs):
        sys.setprofile(None)  # the forked worker inherits the profiler; its time is not ours to see
        return read_job(*args, **kwargs)

    pipeline_run._read_job = read_job_unprofiled
    config = fresh(config_path, workers)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    pipeline_run.run(config)
    profile.disable()
    total = time.perf_counter() - start
    if out:
        profile.dump_stats(str(out))
    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append(
            {"function": func, "where": f"{_short(filename)}:{line}", "calls": nc, "tottime": tt, "cumtime": ct}
        )
    by_cum = sorted(rows, key=lambda r: -r["cumtime"])[:top]
    by_tot = sorted(rows, key=lambda r: -r["tottime"])[:top]
    return {"total": total, "by_cumtime": by_cum, "by_tottime": by_tot}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/pipeline/", "/schemas/"):
        if marker in filename:
            head = "" if marker == "site-packages/" else marker.strip("/") + "/"
            return head + filename.split(marker, 1)[1]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("reads", "stages", "pool", "profile"))
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--with-normalize", action="store_true", help="pool: also time the workers' whole job")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())  # measure the pipeline of the repository we are run from
    if args.mode == "reads":
        result = mode_reads(args.config, args.repeat)
    elif args.mode == "stages":
        result = mode_stages(args.config, args.workers)
    elif args.mode == "pool":
        result = mode_pool(args.config, args.workers or 1, args.with_normalize, args.repeat)
    else:
        result = mode_profile(args.config, args.top, args.out, args.workers)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
