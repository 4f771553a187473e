"""The reference table's own layout as returns: 45 rows split per unit, values from narratives."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from pipeline.cli import cli

from .conftest import Workspace
from .reference_layout import DATA, parse_reference, split_by_unit, write_reference_return

# code → completed value the narrative states (None: it states no number, or a milestone).
EXPECTED = {
    "1-1": 700, "1-2": 50, "1-3": 9, "1-4": 95000,
    "2-1": 3500, "2-2": 615, "2-3": None,  # "其中创业培训300人次": the row's 615 is the headline's
    "3-1": None, "3-2": 1491,
    "4-1": 24, "4-2": 43, "4-3": None,
    "5-1": 0,  # 正在制定方案 → nothing built yet
    "6-1": None, "6-2": None, "6-3": None,
    "7-1": 108, "7-2": 20,
    "8-1": 23, "8-2": 1678,
    "9-1": 20, "9-2": 1638, "9-3": 66000,
    "10-1": None, "11-1": 14200, "12-1": 1799, "13-1": 43, "14-1": None,
    "15-1": 10, "15-2": 0,  # 暂未开工
    "16-1": None, "17-1": None,  # counts of sub-projects, not 已完成N: asked for the number
    "18-1": None, "19-1": None, "20-1": None, "21-1": None, "22-1": None,
    "23-1": 7, "23-2": 4,
    "24-1": None, "25-1": None, "26-1": None, "27-1": None, "28-1": None, "29-1": None,
}  # fmt: skip


def seed_task_rows() -> list[list]:
    with open(DATA / "seed-tasks.csv", encoding="utf-8") as handle:
        tasks = list(csv.DictReader(handle))
    return [
        [t["指标编号"], t["序号"], t["级别"], t["项目名称"], t["指标任务"], t["目标值"], t["计量单位"],
         t["指标类型"], t["牵头领导"], t["牵头责任单位"], ""]
        for t in tasks
    ]  # fmt: skip


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("reference"), seed_task_rows())
    for unit, rows in split_by_unit(parse_reference()).items():
        write_reference_return(ws.inbox / f"{unit}.xlsx", rows)
    result = CliRunner().invoke(cli, ["run", "--config", str(ws.config)])
    return ws, result


def test_every_unit_is_read(reference_run):
    ws, result = reference_run
    assert result.exit_code == 0, result.output
    assert "拒收 0 份" in result.output
    assert "未报送单位 0 个" in result.output


def test_completed_values_are_extracted_from_narratives(reference_run):
    ws, _ = reference_run
    detail = {row["指标编号"]: row for row in ws.detail()}
    assert len(detail) == 45
    extracted = {code: detail[code]["已完成"] for code in EXPECTED}
    assert extracted == EXPECTED
    for code, value in EXPECTED.items():
        source = detail[code]["取值方式"]
        assert source == ("文本提取" if value is not None else None), code


def test_rates_are_recomputed_and_reported_values_kept(reference_run):
    ws, _ = reference_run
    detail = {row["指标编号"]: row for row in ws.detail()}
    assert detail["2-2"]["完成率"] == pytest.approx(615 / 1200)
    assert detail["2-2"]["上报完成率"] == pytest.approx(0.503)
    assert detail["9-3"]["完成率"] == pytest.approx(66000 / 108000)
    assert detail["2-1"]["上报排名"] == 12
    assert detail["11-1"]["上报排名"] == 7
    assert detail["3-1"]["上报完成率"] == pytest.approx(0.59)
    assert detail["6-3"]["状态"] == "已完成"  # 已全部达标
    assert detail["29-1"]["状态"] == "未开工"
    assert detail["14-1"]["状态"] == "基本完成"


def test_wrong_rates_and_unsplittable_rows_are_flagged(reference_run):
    ws, _ = reference_run
    issues = ws.issues()
    assert all(i["级别"] == "警告" for i in issues)
    mismatched = sorted(i["问题"].split("：")[1].split(" ")[1] for i in issues if "上报完成率" in i["问题"])
    assert mismatched == ["2-2", "9-3"]
    assert any("2-3" in i["问题"] and "分行填写" in i["问题"] for i in issues)
    asked = sorted(i["问题"].split("指标 ")[1].split(" ")[0] for i in issues if "没有填写已完成数" in i["问题"])
    assert asked == ["16-1", "17-1", "2-3"]
