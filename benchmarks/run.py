"""The province-scale benchmark (issue 7): one command, every figure of benchmarks/README.md.

    python benchmarks/run.py                          # sizes 30 300 3000, 3 alternations, ≤ ~10 min
    python benchmarks/run.py --sizes 30 300 --repeat 2    # a quick run (about two minutes)
    python benchmarks/run.py --repo /tmp/bench-scratch    # measure another checkout's pipeline/

For each size it generates (once; cached in benchmarks/work/, git-ignored) a workspace of N
template-form returns, then, alternating so that a noisy neighbour hurts both alike:

- ``python -m pipeline run --json --config …`` with an empty state/ (every file is parsed),
  then the same again with nothing new (the nightly rerun);
- benchmarks/naive.py, the pandas script an analyst would write, on the same files;

each in a subprocess whose peak memory is its own ``ru_maxrss`` (``os.wait4``; the largest
single process of its tree, workers included). Then, in-process (benchmarks/stages.py): the raw
python_calamine read of the same files against our reader and the safety inspection, and one
fresh run timed stage by stage. Then ``consolidate --help`` start-up, and the worker pool with
``[limits] workers`` = 1 and 2, with the second core idle and with it busy (a ``while True: pass``
process, killed afterwards): end to end, and the reading stage alone.

Time budget (``--max-minutes``, default 10): one alternation per size and the stage timings
always run; the end-to-end worker comparison runs at the largest size at which it fits in a
quarter of the budget (or ``--workers-size``); further alternations run while time remains.
Whatever was cut is printed. Results go to benchmarks/work/results-<time>.json as well.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import generate, write_config  # noqa: E402

WORK = HERE / "work"
STARTUP_RUNS = 10
TARGETS = {
    "speedup_3000": 6.0,  # × faster than the naive script, end to end
    "peak_mb_3000": 1024.0,
    "read_vs_raw": 1.5,  # reading stage ÷ raw python_calamine read
    "run_30_seconds": 1.5,
    "help_seconds": 0.15,
    "scaling_300_3000": 10.0,
}


class Clock:
    def __init__(self, minutes: float):
        self.start = time.monotonic()
        self.budget = minutes * 60

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def fits(self, seconds: float) -> bool:
        return self.elapsed + seconds <= self.budget


def measure(command: list[str], *, cwd: Path, env: dict | None = None) -> dict:
    """Run a command; wall seconds, its own peak RSS (MB), exit code, last stdout line."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        lines = out.read().decode("utf-8", "replace").strip().splitlines()
        error = err.read().decode("utf-8", "replace")
    return {
        "wall": wall,
        "peak_mb": usage.ru_maxrss / 1024,
        "exit": process.returncode,
        "last": lines[-1] if lines else "",
        "stderr": error[-2000:],
    }


def python_env(repo: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo), PYTHONWARNINGS="ignore")
    env.pop("CONSOLIDATE_KILL_AT", None)
    return env


def wipe(config: Path) -> Path:
    """Move state/ and outbox/ out of the way, to a folder the caller deletes once the runs it
    times are done. Deleting a 3,000-file archive just before a run made that run's archiving
    0.3–0.6 s slower (ext4 still busy with the deletions), a cost no nightly run has."""
    trash = config.parent / f".wiped-{time.time_ns()}"
    trash.mkdir()
    for name in ("state", "outbox"):
        if (config.parent / name).exists():
            (config.parent / name).rename(trash / name)
    return trash


def settle(trash: Path) -> None:
    """Delete what ``wipe`` moved aside, outside the timed runs, and let the disk catch up."""
    shutil.rmtree(trash, ignore_errors=True)
    os.sync()
    time.sleep(2)


def consolidate(config: Path, repo: Path) -> tuple[dict, dict]:
    """A fresh run (empty state/), then a rerun with nothing new."""
    trash = wipe(config)
    command = [sys.executable, "-m", "pipeline", "run", "--json", "--config", str(config)]
    first = measure(command, cwd=repo, env=python_env(repo))
    _check_run(first, config)
    again = measure(command, cwd=repo, env=python_env(repo))
    _check_run(again, config)
    settle(trash)
    return first, again


def _check_run(result: dict, config: Path) -> None:
    if result["exit"] not in (0, 1):
        raise SystemExit(f"consolidate run failed ({result['exit']}) on {config}:\n{result['stderr']}")
    summary = json.loads(result["last"])
    result["accepted"] = len(summary.get("accepted", []))
    result["issues"] = summary.get("issues")


def naive(config: Path, engine: str = "openpyxl") -> dict:
    output = config.parent / f"naive-{engine}.xlsx"
    output.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / "naive.py"), str(config.parent / "inbox"), str(output), "--engine", engine]
    result = measure(command, cwd=HERE, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    if result["exit"] != 0:
        raise SystemExit(f"naive.py failed on {config}:\n{result['stderr']}")
    return result


def _pool_figure(runs: list[dict], name: str) -> float:
    """The median of one figure over every round of the given ``stages.py pool`` runs (before
    the pool timed kept and raw itself: the books figure, the only one it had, for all three)."""
    return med([value for r in runs for value in r.get("all", {}).get(name, [r["inspect"] + r["parse"]])])


def in_process(mode: str, config: Path, repo: Path, *extra: str) -> dict:
    result = measure(
        [sys.executable, str(HERE / "stages.py"), mode, str(config), *extra], cwd=repo, env=python_env(repo)
    )
    if result["exit"] != 0:
        raise SystemExit(f"stages.py {mode} failed on {config}:\n{result['stderr']}")
    data = json.loads(result["last"])
    data["process_peak_mb"] = result["peak_mb"]
    data["process_wall"] = result["wall"]
    return data


def startup(repo: Path) -> dict:
    """``consolidate --help``: the installed script (when measuring this checkout) and its equivalent."""
    commands = {
        "python -c 'from pipeline.cli import main; main()' --help": [
            sys.executable, "-c", "import sys; sys.argv[0] = 'consolidate'; from pipeline.cli import main; main()", "--help"
        ],
        "python -m pipeline --help": [sys.executable, "-m", "pipeline", "--help"],
        "python -c pass (interpreter floor)": [sys.executable, "-c", "pass"],
    }  # fmt: skip
    script = _console_script()
    if script and repo.resolve() == HERE.parent.resolve():
        commands = {"consolidate --help (installed script)": [sys.executable, script, "--help"], **commands}
        shim = shutil.which("consolidate")
        if shim and Path(shim).resolve() != Path(script).resolve():
            commands["consolidate --help (via pyenv shim)"] = [shim, "--help"]
    results = {}
    for _ in range(STARTUP_RUNS):  # interleaved, like everything else
        for label, command in commands.items():
            results.setdefault(label, []).append(measure(command, cwd=repo, env=python_env(repo))["wall"])
    return {label: {"median": statistics.median(v), "min": min(v), "runs": v} for label, v in results.items()}


def _console_script() -> str | None:
    """The real ``consolidate`` script (pyenv's shim is a bash script that execs it)."""
    candidate = Path(sys.executable).parent / "consolidate"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("consolidate")
    if found and "pyenv" in Path(found).read_text(errors="replace")[:400]:
        try:
            resolved = subprocess.run(["pyenv", "which", "consolidate"], capture_output=True, text=True, check=True)
            return resolved.stdout.strip() or None
        except (OSError, subprocess.CalledProcessError):
            return None
    return found


def busy_core():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def environment(repo: Path) -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("pandas", "numpy", "pandera", "python-calamine", "openpyxl", "xlsxwriter", "click"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""

    dirty = git("status", "--porcelain", "--", "pipeline", "schemas")
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "repo": str(repo),
        "commit": git("rev-parse", "--short", "HEAD"),
        "pipeline_changes": len(dirty.splitlines()) if dirty else 0,
        "loadavg": os.getloadavg(),
    }


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{med(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 300, 3000])
    parser.add_argument("--repeat", type=int, default=3, help="alternations per size (consolidate ↔ naive)")
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="checkout whose pipeline/ is measured")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--workers-size", type=int, help="size for the end-to-end workers 1 vs 2 runs")
    parser.add_argument("--workers-repeat", type=int, default=2)
    parser.add_argument("--json", type=Path, help="where to write the results (default benchmarks/work/results-*.json)")
    args = parser.parse_args()
    repo = args.repo.resolve()
    sizes = sorted(set(args.sizes))
    clock = Clock(args.max_minutes)
    notes: list[str] = []
    env = environment(repo)
    print(f"# {env['date']} · {env['nproc']} × {env['cpu']} · Python {env['python']} · "
          + " ".join(f"{k} {v}" for k, v in env["versions"].items()))  # fmt: skip
    print(f"# measuring {repo} (commit {env['commit']}, {env['pipeline_changes']} changed files in pipeline/ schemas/)")

    configs = {}
    for size in sizes:
        start = time.perf_counter()
        configs[size] = generate(WORK / f"returns-{size}", size)
        print(f"workspace {size}: {(configs[size].parent / 'README.txt').read_text().strip()} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
    clock = Clock(args.max_minutes)  # generation (cached after the first time) is not counted

    results: dict = {"environment": env, "sizes": {}, "notes": notes}
    runs = {size: {"fresh": [], "rerun": [], "naive": [], "naive_calamine": []} for size in sizes}

    def alternate(size: int, index: int) -> None:
        config = configs[size]
        order = ("consolidate", "naive") if index % 2 == 0 else ("naive", "consolidate")
        for what in order:
            if what == "consolidate":
                first, again = consolidate(config, repo)
                runs[size]["fresh"].append(first)
                runs[size]["rerun"].append(again)
            else:
                runs[size]["naive"].append(naive(config))
        fresh, nv = runs[size]["fresh"][-1], runs[size]["naive"][-1]
        print(f"  N={size} #{index + 1}: consolidate {fresh['wall']:.2f} s ({fresh['peak_mb']:.0f} MB), "
              f"rerun {runs[size]['rerun'][-1]['wall']:.2f} s, naive {nv['wall']:.2f} s ({nv['peak_mb']:.0f} MB)",
              flush=True)  # fmt: skip

    # 1. One alternation per size, the reference naive-on-calamine, the reading and stage figures.
    for size in sizes:
        print(f"N={size}", flush=True)
        alternate(size, 0)
        runs[size]["naive_calamine"].append(naive(configs[size], "calamine"))
        reads = in_process("reads", configs[size], repo, "--repeat", "3")
        stages = in_process("stages", configs[size], repo)
        results["sizes"][size] = {"reads": reads, "stages": stages}
        read_stage = _stage(stages, "inspect") + _stage(stages, "parse")
        print(f"  raw calamine {reads['raw_calamine']:.2f} s, read_book in-process {reads['read_book_in_process']:.2f} s, "
              f"inspect {reads['inspect_file']:.2f} s; run's reading stage {read_stage:.2f} s; "
              f"instrumented run {stages['total']:.2f} s", flush=True)  # fmt: skip

    # 2. Start-up.
    results["startup"] = startup(repo)
    for label, figures in results["startup"].items():
        print(f"startup {label}: median {figures['median'] * 1000:.0f} ms (min {figures['min'] * 1000:.0f})")

    # 3. Workers 1 vs 2, second core idle and busy: the reading stage alone, then end to end.
    largest = sizes[-1]
    pool_rows = []
    for load in ("idle", "busy"):
        hog = busy_core() if load == "busy" else None
        try:
            time.sleep(0.3 if hog else 0)
            for workers in (1, 2, 2, 1):
                pool = in_process("pool", configs[largest], repo, "--workers", str(workers), "--repeat", "2")
                pool_rows.append({"load": load, **pool})
        finally:
            if hog:
                hog.kill()
                hog.wait()
    results["pool"] = {"size": largest, "runs": pool_rows}
    fresh_at = {size: med([r["wall"] for r in runs[size]["fresh"]]) for size in sizes}
    if args.workers_size:
        matrix_size = args.workers_size
        configs.setdefault(matrix_size, generate(WORK / f"returns-{matrix_size}", matrix_size))
    else:
        fitting = [s for s in sizes if 4 * args.workers_repeat * fresh_at[s] <= clock.budget / 4]
        matrix_size = fitting[-1] if fitting else sizes[0]
        if matrix_size != largest:
            notes.append(f"end-to-end workers comparison at N={matrix_size}, not {largest}: "
                         f"{4 * args.workers_repeat} runs of {fresh_at[largest]:.0f} s would not fit the time budget")  # fmt: skip
    matrix = []
    root = configs[matrix_size].parent
    variants = {w: write_config(root, workers=w, name=f"config-workers{w}.toml") for w in (1, 2)}
    for load in ("idle", "busy"):
        hog = busy_core() if load == "busy" else None
        try:
            time.sleep(0.3 if hog else 0)
            order = [1, 2, 2, 1] * args.workers_repeat
            for workers in order[: 2 * args.workers_repeat]:
                first, again = consolidate(variants[workers], repo)
                matrix.append({"load": load, "workers": workers, "wall": first["wall"], "peak_mb": first["peak_mb"],
                               "rerun": again["wall"]})  # fmt: skip
        finally:
            if hog:
                hog.kill()
                hog.wait()
    settle(wipe(variants[1]))
    results["workers"] = {"size": matrix_size, "runs": matrix}

    # 4. More alternations while the budget allows.
    for index in range(1, args.repeat):
        for size in sizes:
            cost = med([r["wall"] for r in runs[size]["fresh"]]) + med([r["wall"] for r in runs[size]["rerun"]])
            cost += med([r["wall"] for r in runs[size]["naive"]])
            if not clock.fits(cost):
                notes.append(f"N={size}: alternation {index + 1} of {args.repeat} skipped (time budget)")
                continue
            alternate(size, index)

    for size in sizes:
        results["sizes"][size]["runs"] = runs[size]
    report(results, sizes)
    results["elapsed_minutes"] = clock.elapsed / 60
    target = args.json or WORK / f"results-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    print(f"\n{clock.elapsed / 60:.1f} min; results in {target}")


def _stage(stages: dict, prefix: str) -> float:
    return sum(row["seconds"] for row in stages["stages"] if row["stage"].startswith(prefix))


def report(results: dict, sizes: list[int]) -> None:
    print("\n## End to end (seconds: median (min–max); peak MB: largest single process)")
    print("| N | master rows | consolidate (fresh state) | rerun, nothing new | naive (openpyxl) | naive ÷ consolidate "
          "| peak MB consolidate | peak MB naive | naive on calamine | runs |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        runs = results["sizes"][size]["runs"]
        fresh = [r["wall"] for r in runs["fresh"]]
        naive_walls = [r["wall"] for r in runs["naive"]]
        rows = results["sizes"][size]["stages"]["rows"]
        print(f"| {size} | {rows} | {spread(fresh)} | {spread([r['wall'] for r in runs['rerun']])} | {spread(naive_walls)} "
              f"| {med(naive_walls) / med(fresh):.2f}× | {max(r['peak_mb'] for r in runs['fresh']):.0f} "
              f"| {max(r['peak_mb'] for r in runs['naive']):.0f} | {spread([r['wall'] for r in runs['naive_calamine']])} "
              f"| {len(fresh)} |")  # fmt: skip

    print("\n## Reading (seconds, all files, in-process medians of 3)")
    print("| N | raw calamine to_python | read_book in-process | of which xmlscan | inspect_file | run's reading stage "
          "(inspect + run_isolated in the instrumented run; includes normalize if overlapped) | ÷ raw |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for size in sizes:
        reads, stages = results["sizes"][size]["reads"], results["sizes"][size]["stages"]
        stage = _stage(stages, "inspect") + _stage(stages, "parse")
        print(f"| {size} | {reads['raw_calamine']:.2f} | {reads['read_book_in_process']:.2f} | {reads['xmlscan_only']:.2f} "
              f"| {reads['inspect_file']:.2f} | {stage:.2f} | {stage / reads['raw_calamine']:.1f}× |")  # fmt: skip

    print("\n## Stages of one fresh run (seconds; workers from config.toml)")
    print("| stage | " + " | ".join(f"N={s}" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    labels = [row["stage"] for row in results["sizes"][sizes[-1]]["stages"]["stages"]]
    by_size = {s: {row["stage"]: row for row in results["sizes"][s]["stages"]["stages"]} for s in sizes}
    for label in labels:
        parent = by_size[sizes[-1]][label]["parent"]
        name = f"  ↳ {label}" if parent else label
        cells = [f"{by_size[s][label]['seconds']:.3f}" if label in by_size[s] else "-" for s in sizes]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(
        "| **total (instrumented, in-process)** | "
        + " | ".join(f"{results['sizes'][s]['stages']['total']:.2f}" for s in sizes)
        + " |"
    )

    print("\n## consolidate --help start-up (median of interleaved runs)")
    for label, figures in results["startup"].items():
        print(f"- {label}: {figures['median'] * 1000:.0f} ms (min {figures['min'] * 1000:.0f} ms)")

    pool = results["pool"]
    print(f"\n## Worker pool, N={pool['size']}: reading stage alone (inspect + parse in isolated workers), seconds")
    print("Each `stages.py pool` process times the raw calamine read and the pool, alternating. *kept*: the rows stay in "
          "the worker that read them, as in the run (its workers normalize them); *books*: every book is handed back "
          "to the parent. Ratios ÷ the raw read of the same processes.")  # fmt: skip
    print("| second core | workers | raw calamine | kept | kept ÷ raw | books | books ÷ raw |")
    print("|---|---|---|---|---|---|---|")
    for load in ("idle", "busy"):
        for w in (1, 2):
            runs_of = [r for r in pool["runs"] if r["load"] == load and r["workers"] == w]
            raw, kept, books = (_pool_figure(runs_of, name) for name in ("raw_calamine", "kept", "books"))
            print(f"| {load} | {w} | {raw:.2f} | {kept:.2f} | {kept / raw:.2f}× | {books:.2f} | {books / raw:.2f}× |")
    workers = results["workers"]
    print(f"\n## Worker pool, N={workers['size']}: end to end (fresh state), seconds")
    print("| second core | workers = 1 | workers = 2 |")
    print("|---|---|---|")
    for load in ("idle", "busy"):
        cells = [
            spread([r["wall"] for r in workers["runs"] if r["load"] == load and r["workers"] == w]) for w in (1, 2)
        ]
        print(f"| {load} | {cells[0]} | {cells[1]} |")

    print("\n## Targets (issue 7)")
    for line in targets(results, sizes):
        print(f"- {line}")
    for note in results["notes"]:
        print(f"- note: {note}")


def targets(results: dict, sizes: list[int]) -> list[str]:
    lines = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    def fresh(size):
        return med([r["wall"] for r in results["sizes"][size]["runs"]["fresh"]])

    if 3000 in sizes:
        runs = results["sizes"][3000]["runs"]
        ratio = med([r["wall"] for r in runs["naive"]]) / fresh(3000)
        peak = max(r["peak_mb"] for r in runs["fresh"])
        lines.append(
            f"{verdict(ratio >= TARGETS['speedup_3000'])} 3,000 returns {ratio:.2f}× faster than naive (target ≥ 6×)"
        )
        lines.append(
            f"{verdict(peak < TARGETS['peak_mb_3000'])} 3,000 returns peak memory {peak:.0f} MB (target < 1024 MB)"
        )
    pool = results["pool"]
    for workers in (1, 2):
        runs_of = [r for r in pool["runs"] if r["load"] == "idle" and r["workers"] == workers]
        raw, kept, books = (_pool_figure(runs_of, name) for name in ("raw_calamine", "kept", "books"))
        lines.append(f"{verdict(kept / raw <= TARGETS['read_vs_raw'])} N={pool['size']}, workers={workers}: reading stage "
                     f"(inspect + isolated parse, rows kept in the worker as the run does) {kept:.2f} s = "
                     f"{kept / raw:.2f}× the raw calamine read {raw:.2f} s (target ≤ 1.5×); with every book handed "
                     f"back to the parent {books:.2f} s = {books / raw:.2f}×")  # fmt: skip
    if 30 in sizes:
        lines.append(
            f"{verdict(fresh(30) < TARGETS['run_30_seconds'])} 30 returns end to end {fresh(30):.2f} s (target < 1.5 s)"
        )
    help_key = next(iter(results["startup"]))
    help_time = results["startup"][help_key]["median"]
    lines.append(
        f"{verdict(help_time < TARGETS['help_seconds'])} {help_key}: {help_time * 1000:.0f} ms (target < 150 ms)"
    )
    if 300 in sizes and 3000 in sizes:
        scale = fresh(3000) / fresh(300)
        lines.append(
            f"{verdict(scale <= TARGETS['scaling_300_3000'])} 300 → 3,000 returns costs {scale:.1f}× (target ≤ ~10×)"
        )
    return lines


if __name__ == "__main__":
    main()
