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


def choose_returns(rows: pd.DataFrame, files: pd.DataFrame) -> tuple[pd.DataFrame, list[Issue]]:
    """Keep, per unit, the rows of its newest file; say which file replaced which.

    ``files`` has one row per received file of the period: file, sha256, mtime.
    """
    if rows.empty:
        return rows, []
    ranked = rows.merge(files[["file", "mtime"]].drop_duplicates("file"), on="file", how="left")
    per_unit = ranked[["unit", "file", "mtime"]].drop_duplicates().sort_values(["unit", "mtime", "file"])
    winners = per_unit.groupby("unit", sort=False).tail(1)
    issues = []
    for unit, group in per_unit.groupby("unit", sort=False):
        newest = group.iloc[-1]["file"]
        for older in group.iloc[:-1]["file"]:
            issues.append(
                Issue(older, unit, "", WARNING, "superseded",
                      f"{unit} 本期有更新的报送文件“{newest}”，本文件“{older}”已被取代（保留在历史记录中）。")
            )  # fmt: skip
    keep = ranked.merge(winners[["unit", "file"]], on=["unit", "file"], how="inner")
    return keep.drop(columns=["mtime"]), issues


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
    returned = rows[["unit", "file"]].drop_duplicates()
    reported = set(zip(rows["code"], rows["unit"], strict=True))
    issues = []
    for unit, file in returned.itertuples(index=False):
        codes = [code for code in tasks.loc[tasks["unit"] == unit, "code"] if (code, unit) not in reported]
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
