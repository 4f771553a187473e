"""End to end through the CLI: the shipped example, exit codes, --json, and the promises."""

from __future__ import annotations

import json
import time

import openpyxl
import pytest

from .conftest import Workspace, invoke, last_json, make_return

# -- the shipped example: the reference table's May returns ----------------------------------


def test_example_reproduces_reference_numbers(example):
    result = invoke(example / "config.toml", "run", "--json")
    summary = last_json(result.output)
    assert result.exit_code == 0, result.output
    assert summary["rejected"] == []
    assert len(summary["accepted"]) == 17
    assert summary["missing_units"] == []
    ws = Workspace.__new__(Workspace)
    ws.outbox = example / "outbox"
    detail = {(row["指标编号"], row["填报单位"]): row for row in ws.detail()}
    assert len(detail) == 45
    row = detail[("2-1", "区人社局")]
    assert row["已完成"] == 3500
    assert row["完成率"] == pytest.approx(0.4294, abs=1e-4)
    assert row["序时进度"] == pytest.approx(5 / 12)
    assert row["状态"] == "正常"
    assert detail[("7-2", "区残联")]["完成率"] == pytest.approx(0.2857, abs=1e-4)
    assert detail[("7-2", "区残联")]["状态"] == "滞后"
    assert detail[("11-1", "区医保局")]["完成率"] == pytest.approx(1.0519, abs=1e-4)
    assert detail[("11-1", "区医保局")]["状态"] == "已完成"
    assert detail[("2-1", "区人社局")]["来源文件"] == "区人社局.xlsx"
    # The example's other forms: the reference layout, an .xls, a GBK CSV.
    assert detail[("7-1", "区残联")]["取值方式"] == "文本提取"
    assert detail[("7-1", "区残联")]["来源文件"] == "区残联（盖章）.xlsx"
    assert detail[("11-1", "区医保局")]["来源文件"] == "区医保局.xls"
    assert detail[("9-3", "区水利局")]["已完成"] == 66000
    assert summary["workbook"].endswith("2023年省市区重点民生实事项目完成情况汇总表（1-5月）.xlsx")


def test_example_flags_exactly_the_two_wrong_rates(example):
    invoke(example / "config.toml", "run")
    ws = Workspace.__new__(Workspace)
    ws.outbox = example / "outbox"
    mismatches = [i for i in ws.issues() if "上报完成率" in i["问题"]]
    flagged = sorted((i["单位"], i["位置"]) for i in mismatches)
    assert flagged == [("区人社局", "Sheet1!F5"), ("区水利局", "水利局1-5月民生实事进展!F2")]
    texts = " ".join(i["问题"] for i in mismatches)
    assert "50.3%" in texts and "51.25%" in texts
    assert "66.11%" in texts and "61.11%" in texts


def test_rerun_with_nothing_new_gives_the_same_master(example):
    invoke(example / "config.toml", "run")
    ws = Workspace.__new__(Workspace)
    ws.outbox = example / "outbox"
    first = ws.detail()
    second_result = invoke(example / "config.toml", "run", "--json")
    assert last_json(second_result.output)["new_files"] == 0
    assert ws.detail() == first


# -- exit codes and summaries ----------------------------------------------------------------


def test_plain_summary_is_chinese_and_names_the_workbook(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    result = invoke(workspace.config, "run")
    assert result.exit_code == 0
    assert "接收 1 份报送" in result.output
    assert "未报送单位 2 个：区残联、区文旅广体局" in result.output
    assert str(workspace.workbook()) in result.output


def test_json_summary_keys(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, "见附件", "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]],
    )
    result = invoke(workspace.config, "run", "--json")
    summary = last_json(result.output)
    assert result.exit_code == 1
    assert summary["accepted"] == ["区人社局.xlsx"] and summary["partial"] == ["区人社局.xlsx"]
    issue = next(i for i in workspace.issues() if i["级别"] == "错误")
    assert issue["位置"] == "Sheet1!D2"
    assert issue["问题"] == "D2：已完成“见附件”不是数字，请填写累计完成数（只填数字，如 3500）"
    for key in ("workbook", "accepted", "rejected", "missing_units", "issues"):
        assert key in summary
    assert summary["workbook"] == str(workspace.workbook().resolve())
    assert summary["missing_units"] == ["区残联", "区文旅广体局"]


def test_bad_config_exits_2_and_writes_nothing(tmp_path):
    (tmp_path / "config.toml").write_text('[report]\ntitle = "x"\nperiod = "2023-13"\n', encoding="utf-8")
    result = invoke(tmp_path / "config.toml", "run")
    assert result.exit_code == 2
    assert "period" in result.output and "YYYY-MM" in result.output
    assert not (tmp_path / "outbox").exists()


def test_missing_config_exits_2(tmp_path):
    result = invoke(tmp_path / "nope.toml", "run")
    assert result.exit_code == 2
    assert "找不到配置文件" in result.output


def test_unknown_config_key_is_an_error(workspace):
    text = workspace.config.read_text(encoding="utf-8").replace("[limits]", "[limits]\nsettle = 3")
    workspace.config.write_text(text, encoding="utf-8")
    result = invoke(workspace.config, "run")
    assert result.exit_code == 2
    assert "不认识的设置：settle" in result.output


# -- the promises --------------------------------------------------------------------------


def test_newer_return_supersedes_older(workspace):
    old = time.time() - 7200
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3000, "", "", "", ""]], mtime=old)
    make_return(workspace.inbox / "区人社局（更正）.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]], mtime=old + 60)
    result = invoke(workspace.config, "run")
    assert result.exit_code == 0
    row = next(r for r in workspace.detail() if r["指标编号"] == "1-1")
    assert row["已完成"] == 3500
    assert row["来源文件"] == "区人社局（更正）.xlsx"
    superseded = [i for i in workspace.issues() if "取代" in i["问题"]]
    assert len(superseded) == 1
    assert superseded[0]["文件"] == "区人社局.xlsx" and superseded[0]["级别"] == "警告"
    assert "区人社局（更正）.xlsx" in superseded[0]["问题"]


def test_narrative_starting_with_equals_is_written_as_text(workspace):
    make_return(
        workspace.inbox / "区人社局.xlsx",
        [["1-1", "", 8150, 3500, "", "", "=HYPERLINK(\"http://x\")", "+1 备注"]],
    )
    invoke(workspace.config, "run")
    book = openpyxl.load_workbook(workspace.workbook())
    detail = book["明细"]
    header = [c.value for c in detail[1]]
    row = next(r for r in detail.iter_rows(min_row=2) if r[0].value == "1-1")
    narrative = row[header.index("完成情况")]
    assert narrative.data_type == "s"
    assert narrative.value == '=HYPERLINK("http://x")'
    assert row[header.index("备注")].data_type == "s"
    summary = book["汇总表"]
    cells = [c for r in summary.iter_rows() for c in r if c.value == '=HYPERLINK("http://x")']
    assert cells and all(c.data_type == "s" for c in cells)


def test_bad_file_does_not_stop_the_run(workspace):
    (workspace.inbox / "区残联.xlsx").write_bytes(b"PK\x03\x04 this is not really a zip")
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    result = invoke(workspace.config, "run", "--json")
    summary = last_json(result.output)
    assert result.exit_code == 1
    assert summary["rejected"] == ["区残联.xlsx"]
    assert summary["accepted"] == ["区人社局.xlsx"]
    assert "区残联" in summary["missing_units"]
    assert any(i["文件"] == "区残联.xlsx" and i["级别"] == "错误" for i in workspace.issues())


def test_inputs_are_never_changed(workspace):
    path = make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    before = path.read_bytes(), path.stat().st_mtime
    invoke(workspace.config, "run")
    assert (path.read_bytes(), path.stat().st_mtime) == before


def test_status_lists_returned_and_missing(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 3500, "", "", "", ""]])
    invoke(workspace.config, "run")
    result = invoke(workspace.config, "status", "--json")
    info = json.loads(result.output)
    assert [item["unit"] for item in info["returned"]] == ["区人社局"]
    assert info["missing"] == ["区残联", "区文旅广体局"]
    assert info["last_run"]["exit_code"] == 0


def test_unit_with_all_returns_rejected_is_missing(workspace):
    make_return(workspace.inbox / "区残联.xlsx", [["9-9", "", 10, 5, "", "", "", ""]])
    result = invoke(workspace.config, "run", "--json")
    summary = last_json(result.output)
    assert summary["rejected"] == ["区残联.xlsx"]
    assert "区残联" in summary["missing_units"]



def test_empty_inbox_reports_everyone_missing(workspace):
    result = invoke(workspace.config, "run", "--json")
    summary = last_json(result.output)
    assert result.exit_code == 0
    assert summary["missing_units"] == ["区人社局", "区残联", "区文旅广体局"]
    assert {row["状态"] for row in workspace.detail()} == {"未报送"}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace("指标类型,", "类型,"), "第1行缺少列：指标类型"),
        (lambda text: text.replace(",8150,", ",八千,"), "tasks!F2 目标值“八千”不是非负数"),
        (lambda text: text + "1-1,1,省级,促进就业,重复,1,人,数量,亓磊,区人社局,\n", "指标 1-1 对填报单位 区人社局 出现了多次"),
    ],
)
def test_a_bad_task_list_stops_with_the_cell_to_fix(workspace, edit, message):
    path = workspace.root / "tasks.csv"
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    result = invoke(workspace.config, "run")
    assert result.exit_code == 2
    assert message in result.output
    assert not list(workspace.outbox.glob("*.xlsx"))
