"""Generate a benchmark workspace: a province-scale task list and N template-form returns.

The layout of each return is that of ``examples/make_example.py`` (title row, 填报单位 line,
header 指标编号/指标任务/目标值/计量单位/已完成/完成率/排名/完成情况/备注 on row 3, a 填报人 note
under the table). The task list is the city/province shape: 40 indicators, each shared by many
units with a target of its own; every unit has 5–40 of them (about 23 on average), so 3,000
returns carry about 68,600 rows. Some cells are left as units leave them (已完成 only in the
narrative, typed as text, hand-computed rates that are off; a few returns miss a row). Output is
deterministic for a given N (fixed seed, fixed document dates, fixed file modification times in
the past), and the first k units of a larger workspace are the units of a smaller one. The
indicators come from tests/data/seed-tasks.csv, as for examples/make_example.py.

    python benchmarks/generate.py --units 300 --root benchmarks/work/returns-300
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SEED_TASKS = REPO / "tests" / "data" / "seed-tasks.csv"
GENERATOR_VERSION = "2"  # bump when the output changes, so that cached workspaces are redone
INDICATORS = 40
ROWS_PER_RETURN = (5, 40)
FIXED_DATE = datetime.datetime(2023, 6, 2, 9, 0, 0)
FIXED_MTIME = datetime.datetime(2023, 6, 2, 9, 0, 0).timestamp()
PERIOD = "2023-05"
TASK_HEADER = [
    "指标编号",
    "序号",
    "级别",
    "项目名称",
    "指标任务",
    "目标值",
    "计量单位",
    "指标类型",
    "牵头领导",
    "牵头责任单位",
    "填报单位",
]
RETURN_HEADER = ["指标编号", "指标任务", "目标值", "计量单位", "已完成", "完成率", "排名", "完成情况", "备注"]

# County names are built from these; 120 counties × 25 departments = 3,000 units.
_COUNTY_FIRST = "平华岳临湘汨永宁安新长石桃澧慈桑南祁衡耒常攸醴茶炎"
_COUNTY_SECOND = "江阳容湘罗乡远化陵州源沙门县山水"
_COUNTY_SUFFIX = ("县", "区", "市")
DEPARTMENTS = (
    "人社局", "民政局", "卫健局", "医保局", "住建局", "教育局", "水利局", "农业农村局", "残联", "发改局",
    "财政局", "交通运输局", "自然资源局", "生态环境局", "文旅广体局", "商务局", "应急管理局", "城管局",
    "市场监管局", "科工局", "行政审批服务局", "退役军人事务局", "妇联", "团委", "供销社",
)  # fmt: skip
_NOTES = ("", "", "", "", "数据截至5月31日", "含上月补报数", "已报分管领导审核")
_STAGE_TEXT = (
    "项目已完成前期工作，正在推进施工",
    "正在推进中，主体工程完成60%",
    "项目基本完成，正在组织验收",
    "已开工建设",
)


def load_indicators(path: Path = SEED_TASKS) -> list[dict]:
    """The reference table's first 40 indicators: code, project, text, target, measure, kind."""
    if not path.exists():
        raise SystemExit(f"generate.py needs the reference indicators: {path} not found")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))[:INDICATORS]
    indicators = []
    for row in rows:
        target = float(row["目标值"]) if row["目标值"].strip() and row["指标类型"] == "数量" else None
        indicators.append(
            {
                "code": row["指标编号"],
                "seq": int(row["序号"]),
                "level": row["级别"],
                "project": row["项目名称"],
                "indicator": row["指标任务"],
                "target": target,
                "measure": row["计量单位"],
                "kind": row["指标类型"],
                "leader": row["牵头领导"],
            }
        )
    return indicators


def unit_names(count: int) -> list[str]:
    """``count`` distinct unit names, e.g. "平江县人社局"; a prefix of the 3,000-unit list."""
    counties = []
    for suffix in _COUNTY_SUFFIX:
        for first in _COUNTY_FIRST:
            for second in _COUNTY_SECOND:
                counties.append(f"{first}{second}{suffix}")
    random.Random(11).shuffle(counties)
    names = [f"{county}{dept}" for county in counties for dept in DEPARTMENTS]
    if count > len(names):
        raise ValueError(f"at most {len(names)} units")
    return names[:count]


def unit_tasks(index: int, unit: str, indicators: list[dict]) -> list[dict]:
    """The tasks and this month's progress of one unit (depends on the unit's index only)."""
    rng = random.Random(1_000_003 * (index + 1))
    count = rng.randint(*ROWS_PER_RETURN)
    chosen = sorted(rng.sample(range(len(indicators)), count))
    tasks = []
    for position in chosen:
        base = indicators[position]
        task = dict(base, unit=unit, lead_units=f"省{DEPARTMENTS[position % len(DEPARTMENTS)]}")
        if base["target"] is not None:
            target = max(1, round(base["target"] * rng.uniform(0.2, 2.0)))
            share = rng.choice((rng.uniform(0.05, 0.6), rng.uniform(0.3, 1.15), 1.0))
            completed = round(target * share)
            task.update(target=target, completed=completed)
            rate = completed / target
            # Most units copy the computed rate; some compute it by hand and get it wrong.
            reported = rate if rng.random() < 0.9 else rate * rng.uniform(0.8, 1.2)
            task["reported_rate"] = round(reported, 4) if rng.random() < 0.7 else None
            narrative = f"已完成{completed}{base['measure']}，完成率{reported * 100:.1f}%"
            if rng.random() < 0.3:
                narrative += f"，在{rng.randint(12, 120)}个有任务的县市区中排名第{rng.randint(1, 12)}"
            task["narrative"] = narrative + "。"
            # Some units leave 已完成 blank and state the figure in the narrative only; a few type
            # it as text with its unit ("3500人").
            roll = rng.random()
            task["completed_cell"] = (
                completed if roll < 0.93 else (f"{completed}{base['measure']}" if roll < 0.95 else None)
            )
        else:
            task.update(target=None, completed=None, reported_rate=None, completed_cell=None)
            task["narrative"] = rng.choice(_STAGE_TEXT)
        task["rank"] = f"{rng.randint(1, 12)}/{rng.randint(12, 120)}" if rng.random() < 0.15 else ""
        task["remarks"] = rng.choice(_NOTES)
        task["returned"] = True
        tasks.append(task)
    if rng.random() < 0.03:  # a unit that forgot one of its rows (a 问题清单 warning)
        rng.choice(tasks)["returned"] = False
    return tasks


def write_task_list(tasks: list[dict], path: Path) -> None:
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "constant_memory": True})
    book.set_properties({"created": FIXED_DATE, "author": "督查室"})
    sheet = book.add_worksheet("任务清单")
    for col, name in enumerate(TASK_HEADER):
        sheet.write_string(0, col, name)
    for row, task in enumerate(tasks, start=1):
        values = [task["code"], task["seq"], task["level"], task["project"], task["indicator"], task["target"],
                  task["measure"], task["kind"], task["leader"], task["lead_units"], task["unit"]]  # fmt: skip
        for col, value in enumerate(values):
            if isinstance(value, (int, float)):
                sheet.write_number(row, col, value)
            elif value:
                sheet.write_string(row, col, value)
    book.close()


def write_return(unit: str, tasks: list[dict], path: Path) -> None:
    """One unit's return in the template form (as examples/make_example.py writes it)."""
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    book.set_properties({"created": FIXED_DATE})
    sheet = book.add_worksheet("Sheet1")
    title = book.add_format({"bold": True, "font_size": 16, "align": "center"})
    head = book.add_format({"bold": True, "border": 1, "align": "center", "text_wrap": True})
    pct = book.add_format({"num_format": "0.00%", "border": 1})
    cell = book.add_format({"border": 1, "text_wrap": True})
    sheet.merge_range(0, 0, 0, len(RETURN_HEADER) - 1, "2023年重点民生实事项目完成情况（1-5月）", title)
    sheet.write_string(1, 0, f"填报单位：{unit}")
    for col, name in enumerate(RETURN_HEADER):
        sheet.write_string(2, col, name, head)
    for row, task in enumerate((task for task in tasks if task["returned"]), start=3):
        sheet.write_string(row, 0, task["code"], cell)
        sheet.write_string(row, 1, task["indicator"], cell)
        if task["target"] is not None:
            sheet.write_number(row, 2, task["target"], cell)
        else:
            sheet.write_blank(row, 2, None, cell)
        sheet.write_string(row, 3, task["measure"], cell) if task["measure"] else sheet.write_blank(row, 3, None, cell)
        if isinstance(task["completed_cell"], str):
            sheet.write_string(row, 4, task["completed_cell"], cell)
        elif task["completed_cell"] is not None:
            sheet.write_number(row, 4, task["completed_cell"], cell)
        else:
            sheet.write_blank(row, 4, None, cell)
        if task["reported_rate"] is not None:
            sheet.write_number(row, 5, task["reported_rate"], pct)
        else:
            sheet.write_blank(row, 5, None, cell)
        for col, key in ((6, "rank"), (7, "narrative"), (8, "remarks")):
            sheet.write_string(row, col, task[key], cell) if task[key] else sheet.write_blank(row, col, None, cell)
    sheet.write_string(row + 2, 0, "填报人：张三    联系电话：0730-8888888")
    sheet.set_column(0, 0, 9)
    sheet.set_column(1, 1, 36)
    sheet.set_column(2, 6, 10)
    sheet.set_column(7, 7, 50)
    sheet.set_column(8, 8, 20)
    book.close()


def write_config(root: Path, workers: int | None = None, name: str = "config.toml", state: str = "state") -> Path:
    """config.toml for the workspace; ``workers`` adds [limits] workers = …"""
    extra = f"workers = {workers}\n" if workers is not None else ""
    path = root / name
    path.write_text(
        f'[report]\ntitle = "2023年全省重点民生实事项目完成情况汇总表"\nperiod = "{PERIOD}"\n\n'
        f'[paths]\ninbox = "inbox"\noutbox = "outbox"\ntasks = "tasks.xlsx"\nstate = "{state}"\n\n'
        f"[limits]\nsettle_seconds = 0\n{extra}",
        encoding="utf-8",
    )
    return path


def _write_one(job: tuple[int, str, str]) -> int:
    index, unit, inbox = job
    indicators = load_indicators()
    tasks = unit_tasks(index, unit, indicators)
    path = Path(inbox) / f"{unit}.xlsx"
    write_return(unit, tasks, path)
    # Modification times in the past (and distinct, in unit order): nothing is "still settling".
    mtime = FIXED_MTIME + index
    os.utime(path, (mtime, mtime))
    return sum(task["returned"] for task in tasks)


def stamp(units: int) -> str:
    return f"generator {GENERATOR_VERSION}; units {units}; seed tasks {SEED_TASKS.stat().st_size}\n"


def generate(root: Path, units: int, *, jobs: int = 2, force: bool = False) -> Path:
    """Write (or reuse, when the stamp matches) the workspace; return its config.toml."""
    marker = root / ".generated"
    if not force and marker.exists() and marker.read_text(encoding="utf-8") == stamp(units):
        return root / "config.toml"
    if root.exists():
        shutil.rmtree(root)
    inbox = root / "inbox"
    inbox.mkdir(parents=True)
    indicators = load_indicators()
    names = unit_names(units)
    tasks = [task for index, unit in enumerate(names) for task in unit_tasks(index, unit, indicators)]
    # A province's list runs indicator by indicator, each with its units (stable: unit order kept).
    position = {item["code"]: i for i, item in enumerate(indicators)}
    tasks.sort(key=lambda task: position[task["code"]])
    write_task_list(tasks, root / "tasks.xlsx")
    write_config(root)
    work = [(index, unit, str(inbox)) for index, unit in enumerate(names)]
    if jobs > 1 and units >= 100:
        with ProcessPoolExecutor(jobs) as pool:
            rows = sum(pool.map(_write_one, work, chunksize=64))
    else:
        rows = sum(map(_write_one, work))
    marker.write_text(stamp(units), encoding="utf-8")
    (root / "README.txt").write_text(f"{units} returns, {rows} rows, {len(tasks)} tasks\n", encoding="utf-8")
    return root / "config.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, required=True, help="number of returns (units)")
    parser.add_argument("--root", type=Path, help="workspace folder (default benchmarks/work/returns-N)")
    parser.add_argument("--jobs", type=int, default=2, help="processes writing the files")
    parser.add_argument("--force", action="store_true", help="regenerate even when cached")
    args = parser.parse_args()
    root = args.root or HERE / "work" / f"returns-{args.units}"
    config = generate(root, args.units, jobs=args.jobs, force=args.force)
    print(f"{config} ({(root / 'README.txt').read_text(encoding='utf-8').strip()})")


if __name__ == "__main__":
    main()
