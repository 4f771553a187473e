"""统计: counts by level and status, per-unit figures and ranking, and two native charts."""

from __future__ import annotations

import pandas as pd

from .styles import STATUS_COLOURS

QUANTITY_STATUSES = ["已完成", "正常", "滞后", "严重滞后", "未报送"]


def unit_table(master: pd.DataFrame, missing_units: list[str]) -> pd.DataFrame:
    """Per unit: tasks, returned, completed, lagging, average rate, and the unit ranking.

    Ranking rule (README): units with at least one rated indicator, by average 完成率 of their
    数量 indicators (each capped at 100 % so one over-achieved item cannot hide a lagging one),
    descending; ties share the best rank.
    """
    rows = []
    for unit, group in master.groupby("unit", sort=False):
        rated = group["rate"].dropna()
        rows.append(
            {
                "单位": unit,
                "任务数": len(group),
                "是否报送": "否" if unit in missing_units else "是",
                "已完成": int((group["status"] == "已完成").sum()),
                "滞后": int(group["status"].isin(["滞后", "严重滞后"]).sum()),
                "平均完成率": rated.clip(upper=1).mean() if not rated.empty else float("nan"),
            }
        )
    table = pd.DataFrame(rows, columns=["单位", "任务数", "是否报送", "已完成", "滞后", "平均完成率"])
    table["排名"] = table["平均完成率"].rank(method="min", ascending=False).astype("Int64")
    return table.sort_values(["排名", "单位"], na_position="last", kind="stable").reset_index(drop=True)


def write_statistics_sheet(book, styles, data) -> None:
    sheet = book.add_worksheet("统计")
    master = data.master
    sheet.set_column(0, 0, 16)
    sheet.set_column(1, 8, 11)
    sheet.write_string(0, 0, f"{data.title}（{data.period_label}）统计", styles.subtitle)
    # Status by level.
    levels = [lvl for lvl in ("省级", "市级", "区级", "县级") if lvl in set(master["level"])] or ["全部"]
    statuses = QUANTITY_STATUSES + [s for s in ("未开工", "前期工作", "推进中", "基本完成") if s in set(master["status"])]
    top = 2
    sheet.write_string(top, 0, "级别", styles.header)
    for col, status in enumerate(statuses, start=1):
        sheet.write_string(top, col, status, styles.status(status))
    sheet.write_string(top, len(statuses) + 1, "合计", styles.header)
    sheet.write_string(top, len(statuses) + 2, "完成率≥序时占比", styles.header)
    for offset, level in enumerate(levels, start=1):
        group = master if level == "全部" else master[master["level"] == level]
        sheet.write_string(top + offset, 0, level, styles.center)
        for col, status in enumerate(statuses, start=1):
            sheet.write_number(top + offset, col, int((group["status"] == status).sum()), styles.number)
        sheet.write_number(top + offset, len(statuses) + 1, len(group), styles.number)
        rated = group["rate"].notna()
        share = (group.loc[rated, "rate"] >= group.loc[rated, "schedule"]).mean() if rated.any() else None
        if share is None:
            sheet.write_blank(top + offset, len(statuses) + 2, None, styles.percent)
        else:
            sheet.write_number(top + offset, len(statuses) + 2, float(share), styles.percent)
    total_row = top + len(levels) + 1
    sheet.write_string(total_row, 0, "合计", styles.header)
    for col, status in enumerate(statuses, start=1):
        sheet.write_number(total_row, col, int((master["status"] == status).sum()), styles.number)
    sheet.write_number(total_row, len(statuses) + 1, len(master), styles.number)

    # Per unit.
    units = unit_table(master, data.missing_units)
    unit_top = total_row + 3
    headers = list(units.columns)
    for col, name in enumerate(headers):
        sheet.write_string(unit_top, col, name, styles.header)
    for offset, item in enumerate(units.itertuples(index=False), start=1):
        row = unit_top + offset
        sheet.write_string(row, 0, item.单位, styles.text)
        sheet.write_number(row, 1, item.任务数, styles.number)
        sheet.write_string(row, 2, item.是否报送, styles.center)
        sheet.write_number(row, 3, item.已完成, styles.number)
        sheet.write_number(row, 4, item.滞后, styles.number)
        if pd.isna(item.平均完成率):
            sheet.write_blank(row, 5, None, styles.percent)
            sheet.write_blank(row, 6, None, styles.center)
        else:
            sheet.write_number(row, 5, float(item.平均完成率), styles.percent)
            sheet.write_number(row, 6, int(item.排名), styles.center)

    # Chart data: rate per rated indicator against 序时进度 (kept beside the charts).
    rated = master[master["rate"].notna()]
    data_col = 10
    sheet.write_string(top, data_col, "指标", styles.header)
    sheet.write_string(top, data_col + 1, "完成率", styles.header)
    sheet.write_string(top, data_col + 2, "序时进度", styles.header)
    for offset, item in enumerate(rated.itertuples(index=False), start=1):
        label = item.code if master["unit"].nunique() == 1 else f"{item.code} {item.unit}"
        sheet.write_string(top + offset, data_col, label)
        sheet.write_number(top + offset, data_col + 1, float(item.rate), styles.plain_percent)
        sheet.write_number(top + offset, data_col + 2, float(item.schedule), styles.plain_percent)
    if not rated.empty:
        first, last = top + 1, top + len(rated)
        chart = book.add_chart({"type": "column"})
        chart.add_series({"name": "完成率", "categories": ["统计", first, data_col, last, data_col],
                          "values": ["统计", first, data_col + 1, last, data_col + 1], "fill": {"color": "#5B9BD5"}})
        line = book.add_chart({"type": "line"})
        line.add_series({"name": "序时进度", "categories": ["统计", first, data_col, last, data_col],
                         "values": ["统计", first, data_col + 2, last, data_col + 2],
                         "line": {"color": "#C00000", "width": 2, "dash_type": "dash"}, "marker": {"type": "none"}})
        chart.combine(line)
        chart.set_title({"name": "各指标完成率与序时进度"})
        chart.set_y_axis({"num_format": "0%", "min": 0})
        chart.set_size({"width": 900, "height": 360})
        chart.set_legend({"position": "bottom"})
        sheet.insert_chart(unit_top + len(units) + 3, 0, chart)
    status_chart = book.add_chart({"type": "column", "subtype": "stacked"})
    for col, status in enumerate(statuses, start=1):
        colour = STATUS_COLOURS.get(status, ("#000000", "#A5A5A5"))[1]
        status_chart.add_series({"name": ["统计", top, col], "categories": ["统计", top + 1, 0, top + len(levels), 0],
                                 "values": ["统计", top + 1, col, top + len(levels), col],
                                 "fill": {"color": colour}, "border": {"color": "#7F7F7F"}})
    status_chart.set_title({"name": "各级别指标状态"})
    status_chart.set_size({"width": 560, "height": 320})
    status_chart.set_legend({"position": "bottom"})
    sheet.insert_chart(unit_top + len(units) + 22, 0, status_chart)
