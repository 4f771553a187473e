"""Rates, 序时进度, status and ranks: pure functions, and a city-level run across 12 counties."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.compute import compute_master, rank_within_indicator, schedule_share

from .conftest import Workspace, make_return

COUNTIES = ["岳阳楼区", "云溪区", "君山区", "岳阳县", "华容县", "湘阴县", "平江县", "汨罗市", "临湘市", "屈原区",
            "南湖新区", "经开区", "城陵矶新港区", "岳阳经开区"]  # fmt: skip


def merged_frame(rows: list[dict]) -> pd.DataFrame:
    """The merge stage's output for hand-made rows (only what compute reads)."""
    base = {"kind": "数量", "previous": np.nan, "stage": "", "returned": True, "narrative": "", "remarks": "",
            "completed_source": "填报", "file": "a.xlsx", "order": 1, "level": "市级", "seq": 1}  # fmt: skip
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["order"] = range(len(frame))
    return frame


def test_rate_is_uncapped_and_status_follows_schedule():
    frame = compute_master(
        merged_frame([
            {"code": "1", "unit": "a", "target": 100, "completed": 105.2},
            {"code": "2", "unit": "a", "target": 100, "completed": 42},
            {"code": "3", "unit": "a", "target": 100, "completed": 41},
            {"code": "4", "unit": "a", "target": 100, "completed": 21.6},
            {"code": "5", "unit": "a", "target": 100, "completed": 21.7},
            {"code": "6", "unit": "a", "target": 100, "completed": np.nan, "returned": False},
        ]),
        month=5,
        severe_points=20,
    )  # fmt: skip
    assert frame["rate"].iloc[0] == pytest.approx(1.052)
    assert frame["schedule"].iloc[0] == pytest.approx(5 / 12)
    # 5/12 = 41.67 %: 42 % is on schedule, 41 % behind, 21.6 % more than 20 points behind.
    assert list(frame["status"]) == ["已完成", "正常", "滞后", "严重滞后", "滞后", "未报送"]


def test_severe_margin_comes_from_config():
    frame = compute_master(merged_frame([{"code": "1", "unit": "a", "target": 100, "completed": 30}]), 5, 10)
    assert frame["status"].iloc[0] == "严重滞后"


def test_milestone_rows_carry_their_stage():
    frame = compute_master(
        merged_frame([
            {"code": "1", "unit": "a", "target": np.nan, "completed": np.nan, "kind": "节点", "stage": "基本完成"},
            {"code": "2", "unit": "a", "target": np.nan, "completed": np.nan, "kind": "节点", "stage": ""},
            {"code": "3", "unit": "a", "target": np.nan, "completed": np.nan, "kind": "节点", "returned": False},
        ]),
        5,
        20,
    )  # fmt: skip
    assert list(frame["status"]) == ["基本完成", "推进中", "未报送"]
    assert frame["rate"].isna().all()


def test_ties_share_the_best_rank_and_count_who_took_part():
    frame = merged_frame([
        {"code": "9-1", "unit": "a", "target": 10, "completed": 9, "rate": 0.9},
        {"code": "9-1", "unit": "b", "target": 20, "completed": 16, "rate": 0.8},
        {"code": "9-1", "unit": "c", "target": 5, "completed": 4, "rate": 0.8},
        {"code": "9-1", "unit": "d", "target": 10, "completed": 7, "rate": 0.7},
        {"code": "9-1", "unit": "e", "target": 10, "completed": np.nan, "rate": np.nan},
        {"code": "9-2", "unit": "a", "target": 10, "completed": 3, "rate": 0.3},
    ])  # fmt: skip
    rank, count = rank_within_indicator(frame)
    assert list(rank[:4]) == [1, 2, 2, 4]
    assert pd.isna(rank[4]) and pd.isna(rank[5])  # no rate; alone on its indicator
    assert list(count) == [4, 4, 4, 4, 4, 1]


def test_rates_equal_on_paper_tie_despite_floating_point():
    frame = merged_frame([
        {"code": "1", "unit": "a", "target": 3, "completed": 1, "rate": 1 / 3},
        {"code": "1", "unit": "b", "target": 30, "completed": 10, "rate": 10 / 30},
    ])  # fmt: skip
    rank, _ = rank_within_indicator(frame)
    assert list(rank) == [1, 1]


@pytest.mark.parametrize(
    ("month", "plan", "expected"),
    [(5, None, 5 / 12), (5, {3: 0.2, 6: 0.5, 9: 0.75, 12: 1.0}, 0.2), (6, {3: 0.2, 6: 0.5}, 0.5), (2, {3: 0.2}, 0.0)],
)
def test_schedule_follows_a_plan_when_given(month, plan, expected):
    assert schedule_share(month, plan) == pytest.approx(expected)


# -- city level: one indicator shared by 12 counties, two counties without that task -------------


def city_tasks() -> list[list]:
    rows = []
    for county in COUNTIES[:12]:
        rows.append(["2-1", 2, "省级", "促进就业", "城镇新增就业", 1000, "人", "数量", "亓磊", "市人社局", county])
    for county in COUNTIES:  # everyone has the second indicator, two only have this one
        rows.append(["3-1", 3, "省级", "妇幼健康", "两癌免费检查", 500, "人", "数量", "邓建华", "市卫健委", county])
    return rows


def test_city_level_ranks_among_the_twelve_with_the_task(tmp_path):
    ws = Workspace(tmp_path / "city", city_tasks())
    done = [800, 700, 700, 650, 600, 500, 450, 420, 400, 300, 200, 100]
    old = time.time() - 3600
    for county, value in zip(COUNTIES[:12], done, strict=True):
        make_return(ws.inbox / f"{county}.xlsx", [["2-1", "", 1000, f"{value}人", "", "", "", ""],
                                                  ["3-1", "", 500, 250, "", "", "", ""]], mtime=old)  # fmt: skip
    make_return(ws.inbox / f"{COUNTIES[12]}.xlsx", [["3-1", "", 500, 300, "", "", "", ""]], mtime=old)
    result = CliRunner().invoke(cli, ["run", "--json", "--config", str(ws.config)])
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert result.exit_code == 0, result.output
    assert summary["missing_units"] == [COUNTIES[13]]
    detail = ws.detail()
    employment = {r["填报单位"]: r for r in detail if r["指标编号"] == "2-1"}
    assert len(employment) == 12
    ranks = [employment[c]["排名"] for c in COUNTIES[:12]]
    assert ranks == [1, 2, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert {employment[c]["参与排名数"] for c in COUNTIES[:12]} == {12}
    screening = {r["填报单位"]: r for r in detail if r["指标编号"] == "3-1"}
    assert len(screening) == 14
    assert screening[COUNTIES[12]]["排名"] == 1 and screening[COUNTIES[12]]["参与排名数"] == 13
    assert screening[COUNTIES[13]]["状态"] == "未报送" and screening[COUNTIES[13]]["排名"] is None
    summary_sheet = ws.sheet_rows("汇总表")
    assert any("填报单位" in (row or ()) for row in summary_sheet)


def test_planned_counts_become_shares_and_bad_plans_name_the_cell(tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.tasks import read_task_list

    path = tmp_path / "tasks.csv"
    header = "指标编号,序号,级别,项目名称,指标任务,目标值,计量单位,指标类型,牵头领导,牵头责任单位,二季度,四季度\n"
    path.write_text(header + "1-1,1,区级,p,i,200,人,数量,l,区人社局,50,100%\n", encoding="utf-8")
    assert read_task_list(path)["plan"].iloc[0] == {6: 0.25, 12: 1.0}
    path.write_text(header + "1-1,1,区级,p,i,200,人,数量,l,区人社局,500,\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="K2 计划进度超过目标值"):
        read_task_list(path)


def test_the_column_reading_of_a_task_list_equals_the_row_reading(tmp_path):
    """The fast path (whole columns) gives exactly the frame the row-by-row reading builds."""
    from pipeline.tasks import PLAN_HEADERS, TASK_HEADERS, _read_clean_list, _task_record
    from pipeline.text import header_key

    path = tmp_path / "tasks.csv"
    path.write_text(
        "指标编号,序号,级别,项目名称,指标任务,目标值,计量单位,指标类型,牵头领导,牵头责任单位,填报单位,二季度,四季度\n"
        "1-1,1,区级, p ,i,200,人,数量,l,区人社局、区民政局,,50,100%\n"
        ",,,,,,,,,,,,\n"
        ",注：本表由督查室填写\n"  # a note: a short row, blank past its end
        "1-2,2,区级,,i2,,项,,l,区残联,区残联 ,,\n"
        "1-3,3,区级,p3,,3.5万,个,数量,l,区人社局,,0.4,\n",
        encoding="utf-8",
    )
    rows = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()]
    header = [header_key(cell) for cell in rows[0]]
    columns = {TASK_HEADERS[key]: i for i, key in enumerate(header) if key in TASK_HEADERS}
    plans = {PLAN_HEADERS[key]: i for i, key in enumerate(header) if key in PLAN_HEADERS}
    problems: list[str] = []
    records = [_task_record(row, columns, plans, n, "tasks", problems) for n, row in enumerate(rows[1:], start=2)]
    expected = pd.DataFrame.from_records([r for r in records if r is not None])
    assert problems == []
    pd.testing.assert_frame_equal(_read_clean_list(rows[1:], columns, plans), expected)
    rows[5][5] = "很多"  # a problem: left to the row reading, which names the cell
    assert _read_clean_list(rows[1:], columns, plans) is None


def test_check_reported_looks_at_the_same_rows_whatever_the_dtypes():
    """The whole-column prefilter flags what the row loop flags; object columns fall back to it."""
    from pipeline.compute import check_reported

    frame = compute_master(
        merged_frame([
            {"code": "1", "unit": "a", "target": 100, "completed": 40, "reported_rate": 0.5, "previous": 50},
            {"code": "2", "unit": "a", "target": 100, "completed": 40, "reported_rate": 0.4, "target_reported": 90},
            {"code": "3", "unit": "a", "target": 100, "completed": np.nan, "row": 7},
            {"code": "4", "unit": "a", "target": 100, "completed": 10, "returned": False, "reported_rate": 0.9},
            {"code": "5", "unit": "a", "target": 100, "completed": 10, "reported_rate": 0.10000000001},
        ]).assign(target_reported=lambda f: f.get("target_reported", np.nan), row=lambda f: f.get("row", 1),
                  sheet="Sheet1", cell_rate="F2", cell_narrative="", cell_target="C2", cell_completed=""),
        5, 20,
    )  # fmt: skip
    issues = check_reported(frame, 0.5)
    assert [(i.code, i.message.split("：")[0]) for i in issues] == [
        ("rate-mismatch", "F2"), ("decreased", "指标 1 的累计完成数 40 比上期的 50 少，累计数不应减少，请核对。"),
        ("target-mismatch", "C2"), ("no-value", "第7行"),
    ]  # fmt: skip
    as_objects = frame.astype({c: object for c in ("reported_rate", "rate", "change")})
    assert check_reported(as_objects, 0.5) == issues
