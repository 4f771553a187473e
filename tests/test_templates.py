"""The per-unit templates: what they hold, what is locked, and that a filled one reads back clean."""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import openpyxl
import pytest

from pipeline.intake.layout import build_alias_index
from pipeline.intake.read import META_SHEET
from pipeline.tasks import read_task_list
from pipeline.templates import (
    INPUT_FILL,
    TEMPLATE_SHEET,
    template_columns,
    template_name,
    write_template,
)
from pipeline.text import header_key

from .conftest import Workspace, invoke, last_json, make_return

HEADER_ROW = 4  # 1-based: title, 填报单位/填报人/联系电话, 填报说明, header


def columns_of(ws) -> dict[str, int]:
    """Field → 1-based column, by the reader's own aliases."""
    aliases = build_alias_index()
    found = {}
    for cell in ws[HEADER_ROW]:
        key = header_key(cell.value)
        found[aliases.get(key, key)] = cell.column
    return found


def data_rows(ws):
    return range(HEADER_ROW + 1, ws.max_row + 1)


def age_inbox(inbox: Path) -> None:
    old = time.time() - 3600
    for path in inbox.iterdir():
        os.utime(path, (old, old))


@pytest.fixture
def small_tasks(workspace):
    return read_task_list(workspace.root / "tasks.csv")


# -- what a template holds ---------------------------------------------------------------------


def test_header_wordings_are_the_readers_aliases():
    aliases = build_alias_index()
    fields = [aliases.get(header_key(column.header)) for column in template_columns("2023-05")]
    assert fields == ["code", "project", "indicator", "target", "measure", None, "completed", "rate", "rank",
                      "stage", "narrative", "remarks"]  # fmt: skip
    # 上期累计 is nobody's alias: it can never be read as 已完成.
    assert header_key("上期累计\n（1-4月）") == "上期累计" and "上期累计" not in aliases


def test_template_name():
    assert template_name("区人社局", "2023-05") == "区人社局_2023-05_填报模板.xlsx"
    assert template_name("A/B:单位", "2023-05") == "A_B_单位_2023-05_填报模板.xlsx"


def test_template_content_locking_and_metadata(small_tasks, tmp_path):
    path = tmp_path / template_name("区人社局", "2023-05")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xlsxwriter warns about what Excel would "repair"
        write_template(small_tasks, None, "区人社局", "2023-05", path, title="2023年重点民生实事项目完成情况汇总表")
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == [TEMPLATE_SHEET, META_SHEET]
    assert book[META_SHEET].sheet_state == "veryHidden"
    meta = [tuple(row) for row in book[META_SHEET].iter_rows(values_only=True)]
    assert meta == [("unit", "区人社局"), ("period", "2023-05"), ("version", "1")]
    ws = book[TEMPLATE_SHEET]
    assert ws["A1"].value == "2023年重点民生实事项目完成情况填报表"
    assert ws["A2"].value == "填报单位：区人社局"
    assert str(ws["A3"].value).startswith("填报说明：")
    assert ws.protection.sheet is True and not ws.protection.password
    col = columns_of(ws)
    rows = list(data_rows(ws))
    assert [ws.cell(r, col["code"]).value for r in rows] == ["1-1", "1-2"]
    assert [ws.cell(r, col["target"]).value for r in rows] == [8150, 1200]
    assert [ws.cell(r, col["measure"]).value for r in rows] == ["人", "人次"]
    assert ws.cell(rows[0], col["project"]).value == "促进就业"
    for field in ("code", "project", "indicator", "target", "measure", "上期累计"):
        assert ws.cell(rows[0], col[field]).protection.locked, field
    for field in ("completed", "rate", "rank", "narrative", "remarks"):
        cell = ws.cell(rows[0], col[field])
        assert not cell.protection.locked, field
        assert cell.fill.fgColor.rgb[-6:] == INPUT_FILL[1:], field
    assert ws.cell(rows[0], col["stage"]).protection.locked  # 数量 rows have no stage to fill
    # 填报人 and 联系电话: labelled input cells above the table.
    labels = {c.value: c for c in ws[2] if c.value}
    for label in ("填报人：", "联系电话："):
        answer = ws.cell(2, labels[label].column + 1)
        assert not answer.protection.locked
    assert ws.page_setup.orientation == "landscape" and ws.print_title_rows == f"${HEADER_ROW}:${HEADER_ROW}"


def test_template_checks_and_input_messages(small_tasks, tmp_path):
    path = write_template(small_tasks, None, "区文旅广体局", "2023-05", tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(path)[TEMPLATE_SHEET]
    col = columns_of(ws)
    validations = {str(dv.sqref): dv for dv in ws.data_validations.dataValidation}
    row = HEADER_ROW + 1
    completed = validations[ws.cell(row, col["completed"]).coordinate]
    assert (completed.type, completed.operator, completed.formula1) == ("decimal", "greaterThanOrEqual", "0")
    assert completed.showInputMessage and "累计完成数" in completed.prompt and "只填数字" in completed.prompt
    assert "数字" in completed.error
    stage = validations[ws.cell(row, col["stage"]).coordinate]
    assert stage.type == "list" and stage.formula1 == '"未开工,前期工作,推进中,基本完成,已完成"'
    assert not ws.cell(row, col["stage"]).protection.locked  # a 节点 row: the stage is the report


def test_previous_period_values_are_prefilled(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 2900, "", "", "", ""],
                                                   ["1-2", "", 1200, 480.5, "", "", "", ""]])  # fmt: skip
    workspace.write_config("2023-04")
    age_inbox(workspace.inbox)
    assert invoke(workspace.config, "run").exit_code == 0
    workspace.write_config("2023-05")
    result = invoke(workspace.config, "templates", "--unit", "人社局")  # a unit may be named loosely
    assert result.exit_code == 0, result.output
    path = workspace.outbox / "templates" / "区人社局_2023-05_填报模板.xlsx"
    assert str(path) in result.output
    ws = openpyxl.load_workbook(path)[TEMPLATE_SHEET]
    col = columns_of(ws)
    assert [ws.cell(r, col["上期累计"]).value for r in data_rows(ws)] == [2900, 480.5]
    assert ws.cell(HEADER_ROW, col["上期累计"]).value == "上期累计\n（1-4月）"
    assert ws.cell(HEADER_ROW, col["completed"]).value == "已完成\n（1-5月累计）"


def test_january_carries_nothing_over(workspace):
    make_return(workspace.inbox / "区人社局.xlsx", [["1-1", "", 8150, 8000, "", "", "", ""]])
    workspace.write_config("2022-12")
    age_inbox(workspace.inbox)
    invoke(workspace.config, "run")
    workspace.write_config("2023-01")
    invoke(workspace.config, "templates", "--unit", "区人社局")
    ws = openpyxl.load_workbook(workspace.outbox / "templates" / "区人社局_2023-01_填报模板.xlsx")[TEMPLATE_SHEET]
    col = columns_of(ws)
    assert [ws.cell(r, col["上期累计"]).value for r in data_rows(ws)] == [None, None]


def test_unknown_unit_is_a_usage_error(workspace):
    result = invoke(workspace.config, "templates", "--unit", "区财政局")
    assert result.exit_code == 2
    assert "任务清单中没有单位“区财政局”" in result.output and "区人社局、区残联、区文旅广体局" in result.output
    assert not (workspace.outbox / "templates").exists()


def test_every_unit_gets_one(workspace):
    result = invoke(workspace.config, "templates")
    assert result.exit_code == 0, result.output
    assert "已生成 3 份填报模板" in result.output
    names = sorted(p.name for p in (workspace.outbox / "templates").iterdir())
    assert names == sorted(template_name(unit, "2023-05") for unit in ("区人社局", "区残联", "区文旅广体局"))


# -- round trip: generate, fill as a unit would, return, consolidate -----------------------------


def fill_template(path: Path, target: Path, values: dict, *, filled_by=("张三", "0730-8888888")) -> Path:
    """Fill a template with openpyxl as a unit would: ``values`` maps 指标编号 → field → value."""
    book = openpyxl.load_workbook(path)
    ws = book[TEMPLATE_SHEET]
    col = columns_of(ws)
    for row in data_rows(ws):
        code = ws.cell(row, col["code"]).value
        for field, value in values.get(code, {}).items():
            cell = ws.cell(row, col[field])
            assert not cell.protection.locked, (code, field)
            cell.value = value
    labels = {c.value: c.column for c in ws[2] if c.value}
    ws.cell(2, labels["填报人："] + 1).value = filled_by[0]
    ws.cell(2, labels["联系电话："] + 1).value = filled_by[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    book.save(target)
    return target


def test_round_trip_every_value_arrives_without_issues(workspace):
    assert invoke(workspace.config, "templates").exit_code == 0
    folder = workspace.outbox / "templates"
    fill_template(folder / "区人社局_2023-05_填报模板.xlsx", workspace.inbox / "新建 Microsoft Excel 工作表.xlsx", {
        "1-1": {"completed": 3500, "rate": 3500 / 8150, "rank": "3/12",
                "narrative": "已完成3500人，完成率42.94%。", "remarks": "按季度推进"},
        "1-2": {"completed": 615.5, "narrative": "已培训615.5人次。"},
    })  # fmt: skip
    fill_template(folder / "区残联_2023-05_填报模板.xlsx", workspace.inbox / "区残联_2023-05_填报模板.xlsx", {
        "2-1": {"completed": 200, "narrative": "已全部完成并超额。"},
    })  # fmt: skip
    fill_template(folder / "区文旅广体局_2023-05_填报模板.xlsx", workspace.inbox / "文旅.xlsx", {
        "3-1": {"stage": "未开工", "narrative": "项目一期已开工，预计10月完工。"},  # the stage, not the text, decides
    })  # fmt: skip
    age_inbox(workspace.inbox)
    result = invoke(workspace.config, "run", "--json")
    summary = last_json(result.output)
    assert result.exit_code == 0, result.output
    assert summary["rejected"] == [] and summary["missing_units"] == []
    assert summary["issues"] == 0 and workspace.issues() == []
    detail = {row["指标编号"]: row for row in workspace.detail()}
    # Identified by the hidden metadata although renamed to Excel's default name.
    assert detail["1-1"]["填报单位"] == "区人社局"
    assert detail["1-1"]["来源文件"] == "新建 Microsoft Excel 工作表.xlsx"
    assert detail["1-1"]["已完成"] == 3500 and detail["1-1"]["取值方式"] == "填报"
    assert detail["1-1"]["上报完成率"] == pytest.approx(3500 / 8150)
    assert detail["1-1"]["上报排名"] == 3
    assert detail["1-1"]["完成情况"] == "已完成3500人，完成率42.94%。" and detail["1-1"]["备注"] == "按季度推进"
    assert detail["1-2"]["已完成"] == 615.5
    assert detail["2-1"]["已完成"] == 200 and detail["2-1"]["状态"] == "已完成"
    assert detail["3-1"]["状态"] == "未开工"
    assert detail["3-1"]["完成情况"] == "项目一期已开工，预计10月完工。"


def test_round_trip_stage_drives_milestone_status(workspace):
    invoke(workspace.config, "templates", "--unit", "区文旅广体局")
    template = workspace.outbox / "templates" / "区文旅广体局_2023-05_填报模板.xlsx"
    statuses = []
    for stage in ("前期工作", "基本完成", "已完成"):
        shutil.rmtree(workspace.state, ignore_errors=True)
        for old in workspace.inbox.iterdir():
            old.unlink()
        fill_template(template, workspace.inbox / "回执.xlsx", {"3-1": {"stage": stage, "narrative": "按计划推进。"}})
        age_inbox(workspace.inbox)
        invoke(workspace.config, "run")
        statuses.append(next(r["状态"] for r in workspace.detail() if r["指标编号"] == "3-1"))
    assert statuses == ["前期工作", "基本完成", "已完成"]


def test_round_trip_shipped_example(example):
    """Every unit of the shipped example fills its template: 45 values arrive, 问题清单 stays empty."""
    assert invoke(example / "config.toml", "templates").exit_code == 0
    inbox = example / "inbox"
    shutil.rmtree(inbox)
    tasks = read_task_list(example / "tasks.xlsx")
    expected = {}
    for task in tasks.itertuples(index=False):
        if task.kind == "数量":
            expected[task.code] = round(task.target * 0.37, 1)
        else:
            expected[task.code] = "推进中"
    for template in sorted((example / "outbox" / "templates").iterdir()):
        book = openpyxl.load_workbook(template)
        ws = book[TEMPLATE_SHEET]
        col = columns_of(ws)
        values = {}
        for row in data_rows(ws):
            code = ws.cell(row, col["code"]).value
            field = "stage" if isinstance(expected[code], str) else "completed"
            values[code] = {field: expected[code], "narrative": f"{code} 按计划推进。"}
        fill_template(template, inbox / template.name, values)
    age_inbox(inbox)
    result = invoke(example / "config.toml", "run", "--json")
    summary = last_json(result.output)
    assert result.exit_code == 0, result.output
    assert len(summary["accepted"]) == 17 and summary["missing_units"] == [] and summary["issues"] == 0
    ws = Workspace.__new__(Workspace)
    ws.outbox = example / "outbox"
    detail = ws.detail()
    assert len(detail) == 45
    for row in detail:
        if isinstance(expected[row["指标编号"]], str):
            assert row["状态"] == "推进中"
        else:
            assert row["已完成"] == pytest.approx(expected[row["指标编号"]])


def test_task_text_that_reads_like_markup_stays_text_in_the_template(small_tasks, tmp_path):
    rich = "<r><t>城镇新增就业8150人</t></r>"
    tasks = small_tasks.assign(indicator=small_tasks["indicator"].where(small_tasks["code"] != "1-1", rich))
    path = tmp_path / template_name("区人社局", "2023-05")
    write_template(tasks, None, "区人社局", "2023-05", path, title="汇总表")
    ws = openpyxl.load_workbook(path)[TEMPLATE_SHEET]
    col = columns_of(ws)
    cells = [ws.cell(r, col["indicator"]) for r in data_rows(ws)]
    assert [cell.value for cell in cells][0] == rich and cells[0].data_type == "s"
