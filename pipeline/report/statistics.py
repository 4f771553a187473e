"""统计: counts and shares by level and status, per-unit figures and ranking, two native charts.

The chart data sits in plain columns to the right of the tables (headed 图表数据), so the
charts stay live when someone edits a number, and nothing is hidden from a reader.
"""

from __future__ import annotations

import pandas as pd

from .styles import LEGEND_STATUSES, STATUS_COLOURS, status_light

STAGE_STATUSES = ("未开工", "前期工作", "推进中", "基本完成")
# Chart fills for 节点 stages: shades of the light they are coloured as.
STAGE_FILLS = {"未开工": "#F4B183", "前期工作": "#E2F0D9", "推进中": "#A9D18E", "基本完成": "#70AD47"}
LAGGING = ("滞后", "严重滞后")
UNIT_COLUMNS = [
    "排名",
    "单位",
    "任务数",
    "是否报送",
    "数量类指标",
    "已完成",
    "滞后",
    "其中严重滞后",
    "未报送指标",
    "平均完成率",
]
CHART_DATA_COL = 14


def unit_table(master: pd.DataFrame, missing_units: list[str]) -> pd.DataFrame:
    """Per unit: tasks, returned or not, completed, lagging, average rate, and the unit ranking.

    Ranking rule (README, 统计): a unit's score is the average 完成率 of its 数量 indicators that
    have a target, each capped at 100 % (so one over-achieved item cannot hide a lagging one),
    an indicator it left without a value counting as 0. Units are ranked by score, highest
    first; equal scores share the best rank (1, 2, 2, 4). A unit with no return this period
    (未报送) or with only 节点 indicators has no score and is not ranked; they are listed last.
    """
    # One grouped pass (a Python loop over 3,000 unit groups costs seconds; issue 7).
    quantity = (master["kind"] == "数量") & (master["target"] > 0)
    status = master["status"]
    flags = pd.DataFrame(
        {
            "unit": master["unit"],
            "returned": master["returned"].astype(bool),
            "quantity": quantity,
            "capped": master["rate"].fillna(0).clip(upper=1).where(quantity),
            "done": status == "已完成",
            "lagging": status.isin(LAGGING),
            "severe": status == "严重滞后",
            "unreported": status == "未报送",
        }
    )
    grouped = flags.groupby("unit", sort=False)
    counts = grouped.agg(
        tasks=("unit", "size"), returned=("returned", "any"), quantity=("quantity", "sum"), done=("done", "sum"),
        lagging=("lagging", "sum"), severe=("severe", "sum"), unreported=("unreported", "sum"),
        score=("capped", "mean"),
    )  # fmt: skip
    returned = counts["returned"] & ~counts.index.isin(missing_units)
    table = pd.DataFrame(
        {
            "单位": counts.index,
            "任务数": counts["tasks"].to_numpy(),
            "是否报送": ["是" if flag else "否" for flag in returned],
            "数量类指标": counts["quantity"].astype(int).to_numpy(),
            "已完成": counts["done"].astype(int).to_numpy(),
            "滞后": counts["lagging"].astype(int).to_numpy(),
            "其中严重滞后": counts["severe"].astype(int).to_numpy(),
            "未报送指标": counts["unreported"].astype(int).to_numpy(),
            "平均完成率": counts["score"].where(returned).to_numpy(),
        },
        columns=UNIT_COLUMNS[1:],
    )
    table["平均完成率"] = table["平均完成率"].astype("float64")
    table.insert(0, "排名", table["平均完成率"].round(9).rank(method="min", ascending=False).astype("Int64"))
    return table.sort_values("排名", na_position="last", kind="stable").reset_index(drop=True)


MAX_CHART_POINTS = 80


def chart_points(master: pd.DataFrame, severe_points: float) -> pd.DataFrame:
    """The bars of the rate chart: label, rate, schedule, status.

    One bar per rated row at district level; where units share indicators (city, province) one
    bar per indicator, its units' average rate, so that 3,000 counties make 40 readable bars
    rather than 67,000. At most MAX_CHART_POINTS bars, in task-list order.
    """
    rated = master[master["rate"].notna()]
    if rated.empty or rated.groupby("code")["unit"].nunique().max() <= 1:
        points = rated.assign(label=rated["code"])[["label", "rate", "schedule", "status"]]
        return points.head(MAX_CHART_POINTS)
    grouped = rated.groupby("code", sort=False).agg(rate=("rate", "mean"), schedule=("schedule", "first"),
                                                    units=("unit", "size"))  # fmt: skip
    severe = severe_points / 100
    status = pd.Series("正常", index=grouped.index)
    status[grouped["rate"] < grouped["schedule"]] = "滞后"
    status[grouped["rate"] < grouped["schedule"] - severe] = "严重滞后"
    status[grouped["rate"] >= 1] = "已完成"
    points = pd.DataFrame({
        "label": [f"{code}（{units}个单位平均）" for code, units in zip(grouped.index, grouped["units"], strict=True)],
        "rate": grouped["rate"].to_numpy(),
        "schedule": grouped["schedule"].to_numpy(),
        "status": status.to_numpy(),
    })  # fmt: skip
    return points.head(MAX_CHART_POINTS)


def status_counts(master: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """(levels, counts): one row per level (and 合计), a column per status that occurs (the five
    lights always), 合计, and the share of rated 数量 indicators at or above 序时进度."""
    present = set(master["level"].tolist())  # tolist: iterating a str column is per element in Python
    levels = [lvl for lvl in ("省级", "市级", "区级", "县级") if lvl in present]
    levels += sorted(present - set(levels) - {""})
    if not levels or (master["level"] == "").any():
        levels.append("其他" if levels else "全部")
    occurring = set(master["status"].tolist())
    statuses = list(LEGEND_STATUSES) + [s for s in STAGE_STATUSES if s in occurring]
    records = []
    for level in [*levels, "合计"]:
        if level == "合计" or level == "全部":
            group = master
        elif level == "其他":
            group = master[~master["level"].isin(levels)]
        else:
            group = master[master["level"] == level]
        record = {"级别": level, **{s: int((group["status"] == s).sum()) for s in statuses}, "合计": len(group)}
        rated = group[group["rate"].notna()]
        record["达到序时进度"] = float((rated["rate"] >= rated["schedule"] - 1e-12).mean()) if len(rated) else None
        records.append(record)
    return statuses, pd.DataFrame.from_records(records)


def write_statistics_sheet(book, styles, data) -> None:
    sheet = book.add_worksheet("统计")
    master = data.master
    statuses, counts = status_counts(master)
    width = len(statuses) + 3
    sheet.set_column(0, 0, 10)
    sheet.set_column(1, 1, 18)
    sheet.set_column(2, max(width, len(UNIT_COLUMNS)), 10)
    sheet.set_column(CHART_DATA_COL, CHART_DATA_COL, 18)
    sheet.set_column(CHART_DATA_COL + 1, CHART_DATA_COL + 3, 10)
    sheet.merge_range(
        0, 0, 0, max(width - 1, len(UNIT_COLUMNS) - 1), f"{data.title}（{data.period_label}）统计", styles.subtitle
    )
    sheet.set_row(0, 28)
    returned = len(data.units) - len(data.missing_units)
    quantity = int((master["kind"] == "数量").sum())
    sheet.write_string(
        1, 0,
        f"序时进度 {data.month}/12 = {data.month / 12:.2%}；共 {len(master)} 个指标（数量类 {quantity} 个，"
        f"节点类 {len(master) - quantity} 个）；已报送单位 {returned}/{len(data.units)} 个。",
    )  # fmt: skip

    # 一、二: counts and shares by level and status.
    top = 3
    table_rows = len(counts)
    for section, (heading, as_share) in enumerate(
        (("一、各级别指标状态（个）", False), ("二、各级别指标状态占比", True))
    ):
        start = top + section * (table_rows + 3)
        sheet.write_string(start, 0, heading, styles.heading)
        header = start + 1
        sheet.write_string(header, 0, "级别", styles.header)
        for col, status in enumerate(statuses, start=1):
            sheet.write_string(header, col, status, styles.status(status))
        sheet.write_string(header, len(statuses) + 1, "合计", styles.header)
        sheet.write_string(header, len(statuses) + 2, "达到序时进度的数量类指标占比", styles.header)
        sheet.set_row(header, 45)
        for offset, record in enumerate(counts.to_dict("records"), start=1):
            row = header + offset
            label_style = styles.header if record["级别"] == "合计" else styles.center
            sheet.write_string(row, 0, record["级别"], label_style)
            total = record["合计"]
            for col, status in enumerate(statuses, start=1):
                if as_share:
                    share = record[status] / total if total else 0.0
                    sheet.write_number(row, col, share, styles.percent)
                else:
                    sheet.write_number(row, col, record[status], styles.number)
            if as_share:
                sheet.write_number(row, len(statuses) + 1, 1.0 if total else 0.0, styles.percent)
            else:
                sheet.write_number(row, len(statuses) + 1, total, styles.number)
            reached = record["达到序时进度"]
            if reached is None or pd.isna(reached):
                sheet.write_blank(row, len(statuses) + 2, None, styles.percent)
            else:
                sheet.write_number(row, len(statuses) + 2, reached, styles.percent)
    count_header = top + 1
    level_rows = (count_header + 1, count_header + table_rows - 1)  # without 合计

    # 三: per unit, with the ranking.
    units = unit_table(master, data.missing_units)
    unit_top = top + 2 * (table_rows + 3)
    sheet.write_string(unit_top, 0, "三、各单位完成情况与排名", styles.heading)
    for col, name in enumerate(UNIT_COLUMNS):
        sheet.write_string(unit_top + 1, col, name, styles.header)
    sheet.set_row(unit_top + 1, 30)
    for offset, item in enumerate(units.to_dict("records"), start=1):
        row = unit_top + 1 + offset
        if pd.isna(item["排名"]):
            sheet.write_string(row, 0, "不排名", styles.center)
        else:
            sheet.write_number(row, 0, int(item["排名"]), styles.center)
        sheet.write_string(row, 1, item["单位"], styles.text)
        sheet.write_number(row, 2, item["任务数"], styles.number)
        sheet.write_string(
            row, 3, item["是否报送"], styles.status("未报送") if item["是否报送"] == "否" else styles.center
        )
        for col, name in enumerate(UNIT_COLUMNS[4:9], start=4):
            sheet.write_number(row, col, item[name], styles.number)
        if pd.isna(item["平均完成率"]):
            sheet.write_blank(row, 9, None, styles.percent)
        else:
            sheet.write_number(row, 9, float(item["平均完成率"]), styles.percent)
    rule_row = unit_top + 2 + len(units)
    sheet.merge_range(
        rule_row, 0, rule_row, len(UNIT_COLUMNS) - 1,
        "排名规则：按各单位数量类指标（有目标值）的平均完成率从高到低排名，单项完成率超过100%的按100%计，"
        "未填完成数的指标按0计；平均完成率相同的名次并列（1、2、2、4）。本期未报送的单位和只有节点类指标的单位不参与排名。",
        styles.note,
    )  # fmt: skip
    sheet.set_row(rule_row, 30)

    # 四: charts, from the data beside the tables.
    chart_top = rule_row + 2
    sheet.write_string(chart_top, 0, "四、图表", styles.heading)
    rated = chart_points(master, data.severe_points)
    sheet.write_string(top, CHART_DATA_COL, "图表数据（供图表引用）", styles.heading)
    sheet.write_string(top + 1, CHART_DATA_COL, "指标", styles.header)
    sheet.write_string(top + 1, CHART_DATA_COL + 1, "完成率", styles.header)
    sheet.write_string(top + 1, CHART_DATA_COL + 2, "序时进度", styles.header)
    sheet.write_string(top + 1, CHART_DATA_COL + 3, "状态", styles.header)
    for offset, item in enumerate(rated.itertuples(index=False), start=2):
        sheet.write_string(top + offset, CHART_DATA_COL, item.label)
        sheet.write_number(top + offset, CHART_DATA_COL + 1, float(item.rate), styles.plain_percent)
        sheet.write_number(top + offset, CHART_DATA_COL + 2, float(item.schedule), styles.plain_percent)
        sheet.write_string(top + offset, CHART_DATA_COL + 3, item.status)
    if not rated.empty:
        first, last = top + 2, top + 1 + len(rated)
        categories = ["统计", first, CHART_DATA_COL, last, CHART_DATA_COL]
        chart = book.add_chart({"type": "column"})
        chart.add_series({
            "name": "完成率",
            "categories": categories,
            "values": ["统计", first, CHART_DATA_COL + 1, last, CHART_DATA_COL + 1],
            "fill": {"color": "#5B9BD5"},
            "points": [{"fill": {"color": STATUS_COLOURS[status_light(s)][1]}, "border": {"color": "#7F7F7F"}}
                       for s in rated["status"]],
            "gap": 60,
        })  # fmt: skip
        line = book.add_chart({"type": "line"})
        line.add_series({
            "name": "序时进度",
            "categories": categories,
            "values": ["统计", first, CHART_DATA_COL + 2, last, CHART_DATA_COL + 2],
            "line": {"color": "#C00000", "width": 2, "dash_type": "dash"},
            "marker": {"type": "none"},
        })  # fmt: skip
        chart.combine(line)
        chart.set_title({"name": "各指标完成率与序时进度（柱色同状态）", "name_font": {"size": 12}})
        chart.set_x_axis({"num_font": {"rotation": -45, "size": 8}})
        chart.set_y_axis(
            {"num_format": "0%", "min": 0, "major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}}
        )
        chart.set_size({"width": 960, "height": 380})
        chart.set_legend({"position": "bottom"})
        sheet.insert_chart(chart_top + 1, 0, chart)
    status_chart = book.add_chart({"type": "column", "subtype": "stacked"})
    for col, status in enumerate(statuses, start=1):
        fill = STAGE_FILLS.get(status) or STATUS_COLOURS[status][1]
        status_chart.add_series({
            "name": ["统计", count_header, col],
            "categories": ["统计", level_rows[0], 0, level_rows[1], 0],
            "values": ["统计", level_rows[0], col, level_rows[1], col],
            "fill": {"color": fill},
            "border": {"color": "#7F7F7F"},
            "gap": 80,
        })  # fmt: skip
    status_chart.set_title({"name": "各级别指标状态（个）", "name_font": {"size": 12}})
    status_chart.set_y_axis({"major_gridlines": {"visible": True, "line": {"color": "#D9D9D9"}}})
    status_chart.set_size({"width": 600, "height": 340})
    status_chart.set_legend({"position": "right"})
    sheet.insert_chart(chart_top + 21, 0, status_chart)
    sheet.set_h_pagebreaks([chart_top, chart_top + 20])  # printed: tables, then one chart a page
    sheet.set_landscape()
    sheet.set_paper(9)
    sheet.fit_to_pages(1, 0)
    sheet.print_area(0, 0, chart_top + 40, CHART_DATA_COL - 1)
    sheet.set_footer("&C— &P —")
