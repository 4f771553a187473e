"""Task list × accepted returns → one row per (indicator, reporting unit).

A newer return of the same unit and period supersedes the older one as a whole ("newer" =
later modification time, then later file name); the older stays in the history.
"""

from __future__ import annotations

import pandas as pd

from .errors import WARNING, Issue

_CARRIED = [
    "completed", "completed_source", "reported_rate", "reported_rank", "reported_rank_of",
    "stage", "narrative", "remarks", "target_reported", "file", "sheet", "row",
    "cell_completed", "cell_rate", "cell_narrative", "cell_target",
]  # fmt: skip


# What choosing, merging and checking use of a stored row (Store.period_rows fetches only these).
ROW_COLUMNS_USED = ["unit", "code", *(column for column in _CARRIED if column != "file")]


def choose_returns(rows: pd.DataFrame, files: pd.DataFrame) -> tuple[pd.DataFrame, list[Issue]]:
    """Keep, per unit, the rows of its newest return; say which return replaced which.

    A return is one received file: its bytes (sha256) under its name. ``files`` has one row per
    return of the period: sha256, file, mtime.
    """
    if rows.empty:
        return rows, []
    keys = ["sha256", "file"]
    # Rank the few distinct (unit, return) pairs rather than every row (70k rows, 3k returns).
    per_unit = (
        rows[["unit", *keys]]
        .drop_duplicates()
        .merge(files[[*keys, "mtime"]].drop_duplicates(keys), on=keys, how="left")
        .sort_values(["unit", "mtime", "file", "sha256"])
    )
    issues, winners = [], set()
    units, names, hashes = per_unit["unit"].tolist(), per_unit["file"].tolist(), per_unit["sha256"].tolist()
    start = 0
    for end in range(1, len(units) + 1):  # sorted by unit: each unit's returns are one run, oldest first
        if end < len(units) and units[end] == units[start]:
            continue
        unit = units[start]
        if not pd.isna(unit):  # groupby's rule: a unit that is missing takes part in nothing
            winners.add((unit, hashes[end - 1], names[end - 1]))
            issues += [superseded_issue(unit, older, names[end - 1]) for older in names[start : end - 1]]
        start = end
    keys_of_rows = zip(rows["unit"].tolist(), rows["sha256"].tolist(), rows["file"].tolist(), strict=True)
    keep = [key in winners for key in keys_of_rows]
    return rows[keep].reset_index(drop=True), issues


def superseded_issue(unit: str, older: str, newest: str) -> Issue:
    if older == newest:
        message = f"{unit} 本期的报送文件“{newest}”已更新，旧版本已被新版本取代（保留在历史记录中）。"
    else:
        message = f"{unit} 本期有更新的报送文件“{newest}”，本文件“{older}”已被取代（保留在历史记录中）。"
    return Issue(older, unit, "", WARNING, "superseded", message)


def merge_tasks(tasks: pd.DataFrame, rows: pd.DataFrame, previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per task, with the returned values where the unit returned them.

    ``previous`` (code, unit, completed) holds the previous period's values, for 本期新增.
    """
    carried = rows[["code", "unit", *_CARRIED]] if not rows.empty else pd.DataFrame(columns=["code", "unit", *_CARRIED])
    merged = tasks.merge(carried, on=["code", "unit"], how="left", validate="one_to_one")
    merged["returned"] = merged["file"].notna()
    if previous is not None and not previous.empty:
        prior = previous[["code", "unit", "completed"]].rename(columns={"completed": "previous"})
        merged = merged.merge(prior, on=["code", "unit"], how="left", validate="one_to_one")
    else:
        merged["previous"] = float("nan")
    return merged


def missing_rows(tasks: pd.DataFrame, rows: pd.DataFrame) -> list[Issue]:
    """A unit that returned a sheet without some of its tasks: say which are missing."""
    if rows.empty:
        return []
    units = rows["unit"].tolist()
    returned = dict.fromkeys(zip(units, rows["file"].tolist(), strict=True))  # distinct, in row order
    # Plain dicts of the unit's codes: 70k (code, unit) tuples built and hashed cost more.
    reported: dict[str, set[str]] = {}
    for code, unit in zip(rows["code"].tolist(), units, strict=True):
        if unit in reported:
            reported[unit].add(code)
        else:
            reported[unit] = {code}
    codes_of: dict[str, list[str]] = {}  # once, not per unit
    for code, unit in zip(tasks["code"].tolist(), tasks["unit"].tolist(), strict=True):
        codes_of.setdefault(unit, []).append(code)
    issues = []
    for unit, file in returned:
        done = reported[unit]
        codes = [code for code in codes_of.get(unit, ()) if code not in done]
        if codes:
            issues.append(
                Issue(file, unit, "", WARNING, "missing-tasks",
                      f"报送中缺少本单位的指标：{'、'.join(codes)}。请补充这些指标的完成情况。")
            )  # fmt: skip
    return issues


def missing_units(tasks: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Units with tasks and no accepted return for the period, in task-list order."""
    returned = set(rows["unit"]) if not rows.empty else set()
    return [unit for unit in dict.fromkeys(tasks["unit"]) if unit not in returned]
