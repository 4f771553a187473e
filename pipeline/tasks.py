"""Read the coordinator's task list (.xlsx or .csv) into the TaskList frame.

The task list is the coordinator's own file, so a problem in it stops the run (ConfigError,
exit 2) with the cell to fix, rather than producing a workbook from a wrong master.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import importlib.util
import io
import itertools
import math
import os
import pickle
import sys
from pathlib import Path

import pandas as pd

from .errors import ConfigError, cell_address
from .text import ParsedNumber, clean_text, header_key, parse_number, split_names

# Task list header (as written by the coordinator, after header_key folding) → column.
TASK_HEADERS = {
    "指标编号": "code",
    "编号": "code",
    "序号": "seq",
    "级别": "level",
    "项目名称": "project",
    "指标任务": "indicator",
    "目标值": "target",
    "计量单位": "measure",
    "指标类型": "kind",
    "牵头领导": "leader",
    "牵头责任单位": "lead_units",
    "填报单位": "unit",
    "联系邮箱": "email",
    "邮箱": "email",
}
REQUIRED = ("code", "seq", "level", "project", "indicator", "target", "measure", "kind", "leader", "lead_units")
# Optional planned cumulative shares (季度/月度序时进度): header → month the share applies from.
PLAN_HEADERS = {f"{m}月": m for m in range(1, 13)} | {
    "一季度": 3,
    "二季度": 6,
    "三季度": 9,
    "四季度": 12,
    "第一季度": 3,
    "第二季度": 6,
    "第三季度": 9,
    "第四季度": 12,
}


def read_task_list(path: Path) -> pd.DataFrame:
    """Load and check the task list; raise ConfigError naming the cell of the first problems."""
    if not path.exists():
        raise ConfigError(f"找不到任务清单 {path}，请检查 config.toml 中 [paths] tasks 的设置。")
    rows, sheet = _read_rows(path)
    if not rows:
        raise ConfigError(f"任务清单 {path.name} 是空的。")
    header = [header_key(cell) for cell in rows[0]]
    columns: dict[str, int] = {}
    plan_columns: dict[int, int] = {}
    for index, key in enumerate(header):
        if key in TASK_HEADERS and TASK_HEADERS[key] not in columns:
            columns[TASK_HEADERS[key]] = index
        elif key.replace("序时进度", "").replace("计划", "") in PLAN_HEADERS:
            plan_columns[PLAN_HEADERS[key.replace("序时进度", "").replace("计划", "")]] = index
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        names = {value: key for key, value in reversed(TASK_HEADERS.items())}
        raise ConfigError(
            f"任务清单 {path.name} 第1行缺少列：{'、'.join(names[m] for m in missing)}。"
            "请按 README 的任务清单格式填写表头。"
        )
    frame = _read_clean_list(rows[1:], columns, plan_columns)
    if frame is None:  # something to report: the careful reading names every cell to fix
        records, problems = [], []
        for offset, row in enumerate(rows[1:], start=2):
            record = _task_record(row, columns, plan_columns, offset, sheet, problems)
            if record is not None:
                records.append(record)
        if problems:
            shown = "；".join(problems[:10])
            more = f"（另有 {len(problems) - 10} 处）" if len(problems) > 10 else ""
            raise ConfigError(f"任务清单 {path.name} 有误：{shown}{more}")
        if not records:
            raise ConfigError(f"任务清单 {path.name} 没有任何任务行。")
        frame = pd.DataFrame.from_records(records)
    duplicated = frame[frame.duplicated(["code", "unit"], keep=False)]
    if not duplicated.empty:
        first = duplicated.iloc[0]
        raise ConfigError(
            f"任务清单 {path.name} 中指标 {first.code} 对填报单位 {first.unit} 出现了多次，每个指标每个单位只能一行。"
        )
    _check_schema(frame, path)
    return frame


def _check_schema(frame: pd.DataFrame, path: Path) -> None:
    import pandera.pandas as pa

    from schemas import TaskList

    try:
        TaskList.validate(frame.drop(columns=["plan"]), lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.head(5)
        shown = "；".join(f"{row.column or ''} {row.failure_case}（{row.check}）" for row in cases.itertuples())
        raise ConfigError(f"任务清单 {path.name} 不符合格式：{shown}") from None


def _read_clean_list(body: list[list], columns: dict[str, int], plan_columns: dict[int, int]) -> pd.DataFrame | None:
    """The task frame ``_task_record`` would give, built column by column; None when any row has
    a problem (or no row is a task), which the row-by-row reading then reports.

    A province's task list has 70k rows: calling ``_task_record`` per row, with its cell lookups
    and a dict per row, costs a second; the same rules over whole columns cost a fraction of that.
    """
    # Transposed once, in C; a short row (CSV) reads as blanks past its end, as in _task_record.
    by_column = list(itertools.zip_longest(*body))
    blank = (None,) * len(body)

    def cells(index: int | None) -> tuple:
        return by_column[index] if index is not None and index < len(by_column) else blank

    def texts(name: str) -> list[str]:
        column = cells(columns.get(name))
        distinct = dict.fromkeys(column)
        if all(type(value) is str or value is None for value in distinct):
            # A column repeats a few texts (units, levels, indicators): clean each once. Only
            # for str and None, whose equal keys always clean alike (True == 1 would not).
            cleaned = {value: clean_text(value) for value in distinct}
            return list(map(cleaned.__getitem__, column))
        return [clean_text(value) for value in column]

    def numbers(index: int) -> tuple[list, list, list]:
        """(values, ok, percent), as parse_number reads each cell."""
        column = cells(index)
        values, ok, percent = list(column), [True] * len(column), [False] * len(column)
        parsed: dict[str, ParsedNumber] = {}
        for i in [i for i, value in enumerate(column) if type(value) is not float or not math.isfinite(value)]:
            value = column[i]  # not a number cell (a finite float reads as itself): text or blank
            number = parsed.get(value) if type(value) is str else None
            if number is None:
                number = parse_number(value)
                if type(value) is str:
                    parsed[value] = number
            values[i], ok[i], percent[i] = number.value, number.ok, number.percent
        return values, ok, percent

    codes, indicators = texts("code"), texts("indicator")
    kept = [i for i in range(len(body)) if codes[i] or indicators[i]]  # no tuple per row: less for the GC
    if not kept or not all(codes[i] for i in kept):
        return None
    seqs, seq_ok, _ = numbers(columns["seq"])
    targets, target_ok, _ = numbers(columns["target"])
    if not all(seq_ok[i] and seqs[i] is not None for i in kept):
        return None
    if not all(target_ok[i] and (targets[i] is None or targets[i] >= 0) for i in kept):
        return None
    kinds = texts("kind")
    kinds = [kinds[i] or ("数量" if targets[i] is not None else "节点") for i in kept]
    if not all(kind in ("数量", "节点") for kind in kinds):
        return None
    lead_units, units = texts("lead_units"), texts("unit")
    first_named = {names: next(iter(split_names(names)), "") for names in dict.fromkeys(lead_units)}
    units = [units[i] or first_named[lead_units[i]] for i in kept]
    if not all(units):
        return None
    plans = _plans(kept, {month: numbers(index) for month, index in plan_columns.items()}, targets)
    if plans is None:
        return None
    projects, levels, measures = texts("project"), texts("level"), texts("measure")
    leaders, emails = texts("leader"), texts("email")
    return pd.DataFrame(
        {
            "code": [codes[i] for i in kept],
            "seq": [int(seqs[i]) for i in kept],
            "level": [levels[i] for i in kept],
            "project": [projects[i] or indicators[i] for i in kept],
            "indicator": [indicators[i] or projects[i] for i in kept],
            "target": [targets[i] for i in kept],
            "measure": [measures[i] for i in kept],
            "kind": kinds,
            "leader": [leaders[i] for i in kept],
            "lead_units": [lead_units[i] for i in kept],
            "unit": units,
            "email": [emails[i] for i in kept],
            "order": [i + 2 for i in kept],
            "plan": plans,
        }
    )


def _plans(kept: list[int], shares: dict[int, tuple[list, list, list]], targets: list) -> list[dict] | None:
    """Each kept row's planned shares by month, by _task_record's rules; None if one is wrong."""
    if not shares:
        return [{} for _ in kept]
    plans = []
    for i in kept:
        plan = {}
        for month, (values, _, percent) in shares.items():
            share = values[i]
            if share is None:
                continue
            if percent[i] or share <= 1:
                plan[month] = share
            elif targets[i]:
                plan[month] = share / targets[i]
            else:
                return None
            if plan[month] > 1 + 1e-9:
                return None
        plans.append(plan)
    return plans


def _task_record(row, columns, plan_columns, row_number, sheet, problems) -> dict | None:
    def cell(name):
        index = columns.get(name)
        return row[index] if index is not None and index < len(row) else None

    def where(name):
        return f"{sheet}!{cell_address(row_number, columns[name])}"

    code = clean_text(cell("code"))
    indicator = clean_text(cell("indicator"))
    if not code and not indicator:
        return None  # blank line or a note under the table
    if not code:
        problems.append(f"{where('code')} 缺少指标编号")
        return None
    seq = parse_number(cell("seq"))
    target = parse_number(cell("target"))
    if not target.ok or (target.value is not None and target.value < 0):
        problems.append(f"{where('target')} 目标值“{clean_text(cell('target'))}”不是非负数")
    if not seq.ok or seq.value is None:
        problems.append(f"{where('seq')} 序号“{clean_text(cell('seq'))}”不是数字")
    kind = clean_text(cell("kind")) or ("数量" if target.value is not None else "节点")
    if kind not in ("数量", "节点"):
        problems.append(f"{where('kind')} 指标类型“{kind}”应为“数量”或“节点”")
    lead_units = clean_text(cell("lead_units"))
    unit = clean_text(cell("unit")) or next(iter(split_names(lead_units)), "")
    if not unit:
        problems.append(f"{where('lead_units')} 缺少牵头责任单位（或填报单位）")
    plan = {}
    for month, index in plan_columns.items():
        share = parse_number(row[index] if index < len(row) else None)
        if share.value is None:
            continue
        if share.percent or share.value <= 1:
            plan[month] = share.value  # "40%" or 0.4: a share of the target
        elif target.value:
            plan[month] = share.value / target.value  # a planned cumulative count
        else:
            problems.append(f"{sheet}!{cell_address(row_number, index)} 计划进度“{clean_text(row[index])}”"
                            "应为百分数（如 40%），或在有目标值时填计划累计数")  # fmt: skip
            continue
        if plan[month] > 1 + 1e-9:
            problems.append(f"{sheet}!{cell_address(row_number, index)} 计划进度超过目标值（{plan[month]:.0%}）")
    return {
        "code": code,
        "seq": int(seq.value) if seq.value is not None else 0,
        "level": clean_text(cell("level")),
        "project": clean_text(cell("project")) or indicator,
        "indicator": indicator or clean_text(cell("project")),
        "target": target.value if target.ok else None,
        "measure": clean_text(cell("measure")),
        "kind": kind,
        "leader": clean_text(cell("leader")),
        "lead_units": lead_units,
        "unit": unit,
        "email": clean_text(cell("email")),
        "order": row_number,
        "plan": plan,
    }


def _read_rows(path: Path) -> tuple[list[list], str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            from .intake.safety import detect_text_encoding

            data = path.read_bytes()
            try:
                text = data.decode(detect_text_encoding(data))
            except UnicodeDecodeError:
                raise ConfigError(f"任务清单 {path.name} 的编码无法识别，请另存为 UTF-8 的 CSV 或 .xlsx。") from None
            return [list(row) for row in csv.reader(io.StringIO(text))], path.stem
        from python_calamine import CalamineWorkbook

        book = CalamineWorkbook.from_path(str(path))
        visible = [meta.name for meta in book.sheets_metadata if str(meta.visible).endswith("Visible")]
        sheet_name = visible[0] if visible else book.sheet_names[0]
        sheet = book.get_sheet_by_name(sheet_name)
        return sheet.to_python(skip_empty_area=False), sheet_name  # already a fresh list of lists
    except ConfigError:
        raise
    except Exception as exc:  # the coordinator's own file: say what the reader said
        raise ConfigError(f"无法读取任务清单 {path.name}：{exc}") from None


def task_units(tasks: pd.DataFrame) -> list[str]:
    """The reporting units, in task-list order."""
    return list(dict.fromkeys(tasks["unit"]))


# ---- the list as last read, kept in state/ -----------------------------------------------------
#
# A province's list (68,673 tasks) costs 1.1 s of CPU to read and 0.05 s to load pickled, and it
# changes a few times a year: every night after the first loads it, when neither the file nor the
# code that reads it changed. A list with a problem is never kept (it is read, and reported, every
# run). The file is state, like history.sqlite: the coordinator's own folder, trusted as such.

CACHE_NAME = "task-list.pickle"
_CACHE_FORMAT = b"consolidate task list 1\n"


def task_list_key(path: Path) -> str | None:
    """What a kept list must have been read from: the file's bytes and the code that reads them;
    None when the file cannot be read (read_task_list then says why)."""
    try:
        digest = hashlib.sha256(path.read_bytes())
    except OSError:
        return None
    digest.update(_reader_fingerprint())
    return digest.hexdigest()


@functools.cache
def _reader_fingerprint() -> bytes:
    """This module, the rules and messages it uses, the schema it checks against, and the
    versions that shape the pickle: a change to any of them reads the list again."""
    from . import errors, text

    files = [Path(module.__file__) for module in (sys.modules[__name__], text, errors)]
    schemas = importlib.util.find_spec("schemas")  # found, not imported: that would load pandera
    if schemas is not None and schemas.origin:
        files.append(Path(schemas.origin).with_name("tasks.py"))
    parts = [file.read_bytes() if file.is_file() else b"" for file in files]
    parts += [pd.__version__.encode(), sys.version.encode(), str(pickle.HIGHEST_PROTOCOL).encode()]
    return hashlib.sha256(b"\0".join(parts)).digest()


def load_kept_task_list(cache: Path, key: str) -> pd.DataFrame | None:
    """The list kept under ``key``; None when there is none, or another, or it is damaged."""
    try:
        data = cache.read_bytes()
    except OSError:
        return None
    header = _CACHE_FORMAT + key.encode("ascii") + b"\n"
    body = memoryview(data)[len(header) + 65 :]  # after the header, the pickle's SHA-256 and "\n"
    if not data.startswith(header) or data[len(header) : len(header) + 64] != hashlib.sha256(body).hexdigest().encode():
        return None
    try:
        frame = pickle.loads(body)
    except Exception:  # noqa: BLE001 - a kept list that does not load is read again
        return None
    return frame if isinstance(frame, pd.DataFrame) else None


def keep_task_list(cache: Path, key: str, pickled: bytes) -> None:
    """Keep the pickled list under ``key``: written whole, then renamed into place. A state folder
    that cannot take it only costs the next run a reading."""
    temp = cache.with_name(f".~consolidate-{cache.name}")  # runs are locked: one writer at a time
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "wb") as handle:
            handle.write(_CACHE_FORMAT + key.encode("ascii") + b"\n")
            handle.write(hashlib.sha256(pickled).hexdigest().encode() + b"\n")
            handle.write(pickled)
        os.replace(temp, cache)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink()

