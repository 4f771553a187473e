"""pipeline.operations through the CLI: `mail`, `run --mail` and `remind`, against a real SMTP server.

The server is an aiosmtpd controller on a free 127.0.0.1 port (security "none"); a refused login
is the same server with an authenticator. The smtp_server fixture and its helpers are shared with
test_mail.py: conftest.py and smtp_server.py.
"""

from __future__ import annotations

import csv
import email
import json
import sys
import types
import zipfile
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.config import load_config
from pipeline.operations import reminder_targets, send_reminders, unit_addresses, workbook_fingerprint
from pipeline.store import Store

from .conftest import SMALL_TASKS, TASK_HEADER, Workspace, make_return
from .smtp_server import PASSWORD, USER, authenticate, free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")

PASSWORD_ENV = "CONSOLIDATE_TEST_SMTP_PASSWORD"
LEADER = "leader@example.gov.cn"
OFFICE = "office@example.gov.cn"
EMAILS = {"区人社局": "rsj@example.gov.cn", "区残联": "cl@example.gov.cn；cl2@example.gov.cn", "区文旅广体局": ""}
GOOD_ROWS = [["1-1", "", 8150, 3500, "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]]
BAD_ROWS = [["1-1", "", 8150, "见附件", "", "", "", ""], ["1-2", "", 1200, 615, "", "", "", ""]]


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


def mail_section(port: int, *, login: bool = False, cc: tuple[str, ...] = (OFFICE,)) -> str:
    lines = [
        "[mail]", 'host = "127.0.0.1"', f"port = {port}", 'security = "none"', "timeout = 5",
        f'from = "督查室 <{USER}>"', f'to = ["{LEADER}"]', f"cc = {json.dumps(list(cc))}",
    ]  # fmt: skip
    if login:
        lines += [f'username = "{USER}"', f'password_env = "{PASSWORD_ENV}"']
    return "\n".join(lines) + "\n"


def make_workspace(root: Path, port: int, *, extra: str = "", emails: dict = EMAILS, **mail) -> Workspace:
    """The small district workspace, with 联系邮箱 in the task list and [mail] pointing at port."""
    ws = Workspace(root, SMALL_TASKS, extra_config=mail_section(port, **mail) + extra)
    with open(ws.root / "tasks.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*TASK_HEADER, "联系邮箱"])
        writer.writerows(["" if v is None else v for v in row] + [emails.get(row[9], "")] for row in SMALL_TASKS)
    return ws


def invoke(ws: Workspace, *args: str, env: dict | None = None):
    result = CliRunner().invoke(cli, [*args, "--config", str(ws.config)], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def consolidated(ws: Workspace, rows=GOOD_ROWS, unit: str = "区人社局"):
    make_return(ws.inbox / f"{unit}.xlsx", rows)
    result = invoke(ws, "run")
    assert result.exit_code in (0, 1), result.output
    return ws.workbook()


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw)


def subject(raw: bytes) -> str:
    return str(make_header(decode_header(parse(raw)["Subject"])))


def attachments(raw: bytes) -> list[Message]:
    return [part for part in parse(raw).walk() if part.get_content_disposition() == "attachment"]


def plain_text(raw: bytes) -> str:
    for part in parse(raw).walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode(part.get_content_charset())
    raise AssertionError("no text/plain part")


def by_unit(messages) -> dict[str, tuple[list[str], bytes]]:
    """Reminders keyed by the unit named first in the body ("区残联：")."""
    return {plain_text(raw).split("：", 1)[0]: (rcpts, raw) for rcpts, raw in messages}


# ---------------------------------------------------------------------------------------------
# consolidate mail


def test_mail_sends_the_workbook_attached(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    workbook = consolidated(ws)
    result = invoke(ws, "mail")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"汇总表“{workbook.name}”已发送给 {LEADER}，抄送 {OFFICE}。\n"
    [(rcpts, raw)] = inbox.messages
    assert rcpts == [LEADER, OFFICE]
    assert subject(raw) == "测试汇总表（1-5月）"
    [part] = attachments(raw)
    assert part.get_filename() == workbook.name
    assert part.get_payload(decode=True) == workbook.read_bytes()
    assert "未报送单位（2 个）\n区残联、区文旅广体局" in plain_text(raw)


def test_mail_is_sent_once_and_force_sends_again(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    workbook = consolidated(ws)
    assert invoke(ws, "mail").exit_code == 0
    again = invoke(ws, "mail")
    assert again.exit_code == 0
    assert f"汇总表“{workbook.name}”已于 " in again.stdout
    assert f"发送给 {LEADER}, {OFFICE}，内容没有变化，本次未重复发送。如需再次发送，请加 --force。" in again.stdout
    assert len(inbox.messages) == 1
    forced = invoke(ws, "mail", "--force")
    assert forced.exit_code == 0 and "已发送给" in forced.stdout
    assert len(inbox.messages) == 2


def test_a_night_with_nothing_new_is_not_mailed_again_but_a_new_return_is(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws)
    assert invoke(ws, "run", "--mail").exit_code == 0
    assert invoke(ws, "run", "--mail").exit_code == 0  # the same cells, written again
    assert len(inbox.messages) == 1
    make_return(ws.inbox / "区残联.xlsx", [["2-1", "", 181, 90, "", "", "", ""]])
    assert invoke(ws, "run", "--mail").exit_code == 0
    assert len(inbox.messages) == 2
    assert "区残联" not in plain_text(inbox.messages[1].content).split("三、未报送单位")[1].split("\n")[1]


def test_dry_run_writes_a_valid_eml_and_sends_nothing(tmp_path, smtp_server):
    inbox, port = smtp_server(authenticator=authenticate, auth_required=True, auth_require_tls=False)
    ws = make_workspace(tmp_path / "ws", port, login=True)
    workbook = consolidated(ws)
    result = invoke(ws, "mail", "--dry-run", env={PASSWORD_ENV: ""})
    assert result.exit_code == 0, result.output
    eml = ws.outbox / f"{workbook.stem}.eml"
    assert result.stdout.startswith(f"未发送（--dry-run）：邮件已写入 {eml}，可用邮件程序打开检查；")
    assert f"环境变量 {PASSWORD_ENV} 未设置或为空" in result.stdout  # said before the real send
    raw = eml.read_bytes()
    assert b"\r\n" in raw
    assert subject(raw) == "测试汇总表（1-5月）"
    [part] = attachments(raw)
    assert part.get_filename() == workbook.name
    assert part.get_payload(decode=True) == workbook.read_bytes()
    assert inbox.messages == []
    assert ws.workbook() == workbook  # the .eml is no second workbook
    sent = invoke(ws, "mail", env={PASSWORD_ENV: PASSWORD})
    assert sent.exit_code == 0, sent.output  # a dry run is not recorded as sent


def test_refused_login_exits_4_keeps_the_workbook_and_the_next_mail_retries(tmp_path, smtp_server):
    inbox, port = smtp_server(authenticator=authenticate, auth_required=True, auth_require_tls=False)
    ws = make_workspace(tmp_path / "ws", port, login=True)
    workbook = consolidated(ws)
    failed = invoke(ws, "mail", env={PASSWORD_ENV: "wrong"})
    assert failed.exit_code == 4
    assert failed.stderr.startswith(f"错误：邮件服务器拒绝登录，请检查用户名 {USER} 和环境变量 {PASSWORD_ENV} 中的密码")
    assert (
        f"汇总表未发送，仍保留在 {workbook}；下次运行 consolidate run --mail 或 consolidate mail 时会重新发送。"
        in failed.stderr
    )
    assert workbook.is_file() and inbox.messages == []
    retried = invoke(ws, "mail", env={PASSWORD_ENV: PASSWORD})
    assert retried.exit_code == 0, retried.output
    assert len(inbox.messages) == 1


def test_missing_password_variable_exits_4(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port, login=True)
    consolidated(ws)
    result = invoke(ws, "mail", env={PASSWORD_ENV: ""})
    assert result.exit_code == 4
    assert f"环境变量 {PASSWORD_ENV} 未设置或为空" in result.stderr
    assert inbox.messages == []


def test_partly_refused_recipients_are_recorded_and_not_resent(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port, cc=("nobody@example.gov.cn",))
    consolidated(ws)
    result = invoke(ws, "mail")
    assert result.exit_code == 4
    assert "以下收件人被邮件服务器拒收：nobody@example.gov.cn" in result.stderr
    assert (
        "其他收件人已收到，已记为已发送、不会自动重发；更正地址后可用 consolidate mail --force 重发。" in result.stderr
    )
    assert [rcpts for rcpts, _ in inbox.messages] == [[LEADER]]
    assert "未重复发送" in invoke(ws, "mail").stdout
    assert len(inbox.messages) == 1


def test_mail_without_a_mail_section_exits_2(workspace):
    consolidated(workspace)
    result = invoke(workspace, "mail")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"错误：配置文件 {workspace.config} 中没有 [mail] 部分，无法发送邮件。")


def test_mail_before_any_run_exits_2(tmp_path):
    ws = make_workspace(tmp_path / "ws", free_port())
    result = invoke(ws, "mail")
    assert result.exit_code == 2
    assert result.stderr == (
        f"错误：还没有可发送的汇总结果（找不到 {ws.state / 'last_run.json'}）：请先运行 consolidate run 生成汇总表。\n"
    )


def test_mail_when_the_workbook_is_gone_exits_2(tmp_path):
    ws = make_workspace(tmp_path / "ws", free_port())
    workbook = consolidated(ws)
    workbook.unlink()
    result = invoke(ws, "mail")
    assert result.exit_code == 2
    assert f"错误：上次汇总生成的汇总表 {workbook} 已不存在（可能被移动或删除）" in result.stderr


def test_bad_recipient_address_is_a_config_error(tmp_path):
    ws = make_workspace(tmp_path / "ws", free_port(), cc=("office.example.gov.cn",))
    consolidated(ws)
    result = invoke(ws, "mail")
    assert result.exit_code == 2
    assert "抄送地址“office.example.gov.cn”格式不对" in result.stderr


# ---------------------------------------------------------------------------------------------
# consolidate run --mail


def test_run_mail_end_to_end(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    make_return(ws.inbox / "区人社局.xlsx", GOOD_ROWS)
    result = invoke(ws, "run", "--mail")
    assert result.exit_code == 0, result.output
    assert f"汇总表“{ws.workbook().name}”已发送给 {LEADER}，抄送 {OFFICE}。" in result.stdout
    assert "读取报送文件" not in result.output  # no progress bar without a terminal
    [(_, raw)] = inbox.messages
    assert attachments(raw)[0].get_payload(decode=True) == ws.workbook().read_bytes()


def test_run_mail_json_reports_the_mail(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    make_return(ws.inbox / "区人社局.xlsx", GOOD_ROWS)
    result = invoke(ws, "run", "--mail", "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["mail"]["sent"] is True
    assert summary["mail"]["recipients"] == [LEADER, OFFICE]
    assert len(result.stdout.strip().splitlines()) == 1
    assert len(inbox.messages) == 1


def test_failed_send_in_run_exits_4_and_a_later_mail_sends_it_once(tmp_path, smtp_server):
    port = free_port()  # nothing listens there yet
    ws = make_workspace(tmp_path / "ws", port)
    make_return(ws.inbox / "区人社局.xlsx", BAD_ROWS)  # a rejected row: the run alone exits 1
    failed = invoke(ws, "run", "--mail")
    assert failed.exit_code == 4
    assert f"错误：无法连接邮件服务器 127.0.0.1:{port}：连接被拒绝。" in failed.stderr
    assert "汇总表未发送，仍保留在" in failed.stderr
    workbook = ws.workbook()
    inbox, _ = smtp_server(port=port)  # the server is back
    retried = invoke(ws, "mail")
    assert retried.exit_code == 0, retried.output
    again = invoke(ws, "run", "--mail")
    assert again.exit_code == 1  # the run's own code: the mail was already sent
    assert "未重复发送" in again.stdout
    [(_, raw)] = inbox.messages
    assert attachments(raw)[0].get_filename() == workbook.name


def test_run_quiet_prints_one_line(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    make_return(ws.inbox / "区人社局.xlsx", GOOD_ROWS)
    quiet = invoke(ws, "run", "--quiet")
    assert quiet.exit_code == 0
    [line] = quiet.output.splitlines()
    assert "退出码 0：2023-05：接收 1 份" in line and str(ws.workbook()) in line
    with_mail = invoke(ws, "run", "--quiet", "--mail")
    assert len(with_mail.output.splitlines()) == 2  # the mail's line, the summary's line


# ---------------------------------------------------------------------------------------------
# consolidate remind


def test_remind_writes_to_missing_units_and_lists_those_without_an_address(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws)  # 区人社局 returned; 区残联 and 区文旅广体局 did not
    result = invoke(ws, "remind")
    assert result.exit_code == 0, result.output
    [(rcpts, raw)] = inbox.messages
    assert rcpts == ["cl@example.gov.cn", "cl2@example.gov.cn"]
    assert subject(raw) == "【催报】测试汇总表（1-5月）：请区残联报送进展情况"
    body = plain_text(raw)
    assert body.startswith("区残联：\n") and "尚未收到贵单位1-5月重点民生实事项目进展情况" in body
    assert "已发送 1 封：区残联【催报】（cl@example.gov.cn, cl2@example.gov.cn）" in result.stdout
    assert (
        "以下单位没有邮箱，未发送：区文旅广体局（请在任务清单“联系邮箱”列或 config.toml 的 [units] 中填写）"
        in result.stdout
    )


def test_remind_sends_a_unit_the_problems_of_its_rejected_rows(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws, BAD_ROWS)
    result = invoke(ws, "remind")
    assert result.exit_code == 0, result.output
    reminders = by_unit(inbox.messages)
    assert sorted(reminders) == ["区人社局", "区残联"]
    rcpts, raw = reminders["区人社局"]
    assert rcpts == ["rsj@example.gov.cn"]
    assert subject(raw) == "【请更正】测试汇总表（1-5月）：区人社局报表有1处问题"
    body = plain_text(raw)
    assert "1. 区人社局.xlsx，Sheet1!D2【错误】：" in body and "见附件" in body
    assert "请更正后重新报送" in body
    assert "区人社局【请更正】（rsj@example.gov.cn）" in result.stdout


def test_remind_once_a_day_unless_forced(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws)
    assert invoke(ws, "remind").exit_code == 0
    again = invoke(ws, "remind")
    assert again.exit_code == 0
    assert "今天已发送过、本次未重复发送：区残联（如需再次发送，请加 --force）" in again.stdout
    assert len(inbox.messages) == 1
    assert invoke(ws, "remind", "--force").exit_code == 0
    assert len(inbox.messages) == 2
    tomorrow = send_reminders(load_config(ws.config), today="2099-01-01")
    assert tomorrow["sent"] == ["区残联"] and len(inbox.messages) == 3
    store = Store(ws.state)
    try:
        kinds = [kind for (kind,) in store.conn.execute("SELECT kind FROM mails")]
    finally:
        store.close()
    assert kinds == ["remind:区残联:2023-05"] * 3


def test_remind_dry_run_writes_one_eml_per_unit(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws, BAD_ROWS)
    result = invoke(ws, "remind", "--dry-run")
    assert result.exit_code == 0, result.output
    folder = ws.outbox / "reminders"
    assert sorted(p.name for p in folder.iterdir()) == ["区人社局.eml", "区残联.eml"]
    assert subject((folder / "区残联.eml").read_bytes()) == "【催报】测试汇总表（1-5月）：请区残联报送进展情况"
    assert f"未发送（--dry-run）：2 封邮件已写入 {folder}：" in result.stdout
    assert inbox.messages == []
    assert invoke(ws, "remind").exit_code == 0
    assert len(inbox.messages) == 2  # a dry run is not recorded


def test_config_units_win_over_the_task_list(tmp_path, smtp_server):
    inbox, port = smtp_server()
    units = (
        '[units."区残联"]\nemail = ["canlian@example.gov.cn"]\n[units."区文旅广体局"]\nemail = "wl@example.gov.cn"\n'
    )
    ws = make_workspace(tmp_path / "ws", port, extra=units)
    consolidated(ws)
    assert invoke(ws, "remind").exit_code == 0
    assert sorted(rcpts for rcpts, _ in inbox.messages) == [["canlian@example.gov.cn"], ["wl@example.gov.cn"]]


def test_remind_attaches_each_units_own_template(tmp_path, smtp_server, monkeypatch):
    written = []

    def write_unit_template(config, unit, out_dir):
        path = Path(out_dir) / f"{unit}_填报模板.xlsx"
        path.write_bytes(unit.encode() * 3)
        written.append(unit)
        return path

    fake = types.ModuleType("pipeline.templates")
    fake.write_unit_template = write_unit_template
    monkeypatch.setitem(sys.modules, "pipeline.templates", fake)
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port, emails={**EMAILS, "区文旅广体局": "wl@example.gov.cn"})
    consolidated(ws)
    assert invoke(ws, "remind").exit_code == 0
    reminders = by_unit(inbox.messages)
    assert sorted(reminders) == sorted(written) == ["区文旅广体局", "区残联"]
    for unit, (_, raw) in reminders.items():
        [part] = attachments(raw)
        assert part.get_filename() == f"{unit}_填报模板.xlsx"
        assert part.get_payload(decode=True) == unit.encode() * 3
        assert "请按附件模板填写" in plain_text(raw)


def test_remind_attaches_each_missing_units_real_template(tmp_path, smtp_server):
    pytest.importorskip("pipeline.templates", reason="pipeline/templates.py 尚未加入")
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port, emails={**EMAILS, "区文旅广体局": "wl@example.gov.cn"})
    consolidated(ws)
    result = invoke(ws, "remind")
    assert result.exit_code == 0, result.output
    reminders = by_unit(inbox.messages)
    assert sorted(reminders) == ["区文旅广体局", "区残联"]  # 区人社局 returned: nothing for it
    own_codes = {unit: {row[0] for row in SMALL_TASKS if row[9] == unit} for unit in reminders}
    for unit, (_, raw) in reminders.items():
        [part] = attachments(raw)
        assert unit in part.get_filename() and part.get_filename().endswith(".xlsx")
        path = tmp_path / part.get_filename()
        path.write_bytes(part.get_payload(decode=True))
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            cells = {str(v) for ws_ in book.worksheets for row in ws_.iter_rows(values_only=True) for v in row if v}
        finally:
            book.close()
        all_codes = {row[0] for row in SMALL_TASKS}
        assert all_codes & cells == own_codes[unit], unit
        assert "请按附件模板填写" in plain_text(raw)


def test_remind_without_the_templates_module_sends_the_text_and_says_so(tmp_path, smtp_server, monkeypatch):
    monkeypatch.setitem(sys.modules, "pipeline.templates", None)  # as before templates.py existed
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws)
    result = invoke(ws, "remind")
    assert result.exit_code == 0, result.output
    [(_, raw)] = inbox.messages
    assert attachments(raw) == []
    assert "请填写各项指标的累计完成数和完成情况" in plain_text(raw)
    assert "注意：本版本还不能生成填报模板，催报邮件未附模板。" in result.stdout


def test_remind_for_another_period_than_the_last_run_exits_2(tmp_path):
    ws = make_workspace(tmp_path / "ws", free_port())
    consolidated(ws)
    ws.write_config("2023-06", mail_section(free_port()))
    result = invoke(ws, "remind")
    assert result.exit_code == 2
    assert "上次汇总的是 2023-05 期，而配置文件中本期为 2023-06：请先运行 consolidate run" in result.stderr


def test_remind_send_failure_exits_4_and_the_next_remind_sends(tmp_path, smtp_server):
    port = free_port()
    ws = make_workspace(tmp_path / "ws", port)
    consolidated(ws)
    failed = invoke(ws, "remind")
    assert failed.exit_code == 4
    assert f"发送失败：区残联：无法连接邮件服务器 127.0.0.1:{port}" in failed.stdout
    assert "错误：1 个单位的催报邮件发送失败，原因见上。" in failed.stderr
    inbox, _ = smtp_server(port=port)
    assert invoke(ws, "remind").exit_code == 0
    assert len(inbox.messages) == 1


def test_remind_with_nothing_to_do(tmp_path, smtp_server):
    inbox, port = smtp_server()
    ws = make_workspace(tmp_path / "ws", port)
    make_return(ws.inbox / "区人社局.xlsx", GOOD_ROWS)
    make_return(ws.inbox / "区残联.xlsx", [["2-1", "", 181, 90, "", "", "", ""]])
    make_return(ws.inbox / "区文旅广体局.xlsx", [["3-1", "", "", "", "", "", "推进中", ""]])
    assert invoke(ws, "run").exit_code == 0
    result = invoke(ws, "remind")
    assert result.exit_code == 0, result.output
    assert "各单位均已报送，报表中也没有被拒收的内容，无需催报。" in result.stdout
    assert inbox.messages == []


# ---------------------------------------------------------------------------------------------
# The pieces


def _problem(file, unit, level="错误", message="E7：已完成不是数字"):
    return {"file": file, "unit": unit, "location": "Sheet1!E7", "level": level, "code": "x", "message": message}


def test_reminder_targets_only_the_newest_attempt_counts():
    summary = {
        "missing_units": ["区教育局", "区民政局", "区卫健局"],
        "superseded": ["人社旧.xlsx"],
        "problems": [
            _problem("人社旧.xlsx", "区人社局"),  # replaced by a newer return
            _problem("人社新.xlsx", "区人社局"),  # the newest, partly rejected: counts
            _problem("人社新.xlsx", "区人社局", level="警告"),  # warnings never do
            _problem("残联坏.xlsx", "区残联"),  # rejected, then a good file came: history
            _problem("区教育局报表.xlsx", ""),  # could not be opened; the name says whose
            _problem("附件1.xlsx", ""),  # nobody's
            _problem("民政.xlsx", "区民政局"),  # the unit's only (rejected) file
        ],
    }
    files = [
        {"file": "人社旧.xlsx", "unit": "区人社局", "mtime": 1.0, "status": "partial"},
        {"file": "人社新.xlsx", "unit": "区人社局", "mtime": 2.0, "status": "partial"},
        {"file": "残联坏.xlsx", "unit": "区残联", "mtime": 1.0, "status": "rejected"},
        {"file": "残联好.xlsx", "unit": "区残联", "mtime": 2.0, "status": "accepted"},
        {"file": "区教育局报表.xlsx", "unit": "", "mtime": 3.0, "status": "rejected"},
        {"file": "附件1.xlsx", "unit": "", "mtime": 3.0, "status": "rejected"},
        {"file": "民政.xlsx", "unit": "区民政局", "mtime": 3.0, "status": "rejected"},
    ]
    units = ["区人社局", "区残联", "区教育局", "区民政局", "区卫健局"]
    targets = reminder_targets(summary, files, lambda stem: next((u for u in units if u in stem), None))
    assert {unit: [p["file"] for p in problems] for unit, problems in targets.problems.items()} == {
        "区人社局": ["人社新.xlsx"], "区教育局": ["区教育局报表.xlsx"], "区民政局": ["民政.xlsx"],
    }  # fmt: skip
    assert targets.problems["区教育局"][0]["unit"] == "区教育局"
    assert targets.missing == ["区卫健局"]
    assert targets.unattributed == ["附件1.xlsx"]
    assert targets.units == ["区人社局", "区教育局", "区民政局", "区卫健局"]


def test_reminder_targets_a_newer_rejected_file_after_a_good_one_counts():
    summary = {"missing_units": [], "problems": [_problem("b.xlsx", "区残联")]}
    files = [
        {"file": "a.xlsx", "unit": "区残联", "mtime": 1.0, "status": "accepted"},
        {"file": "b.xlsx", "unit": "区残联", "mtime": 2.0, "status": "rejected"},
    ]
    assert [p["file"] for p in reminder_targets(summary, files).problems["区残联"]] == ["b.xlsx"]


def test_unit_addresses_split_the_usual_separators_and_config_wins(tmp_path):
    ws = make_workspace(tmp_path / "ws", 25, extra='[units."区残联"]\nemail = []\n')
    config = load_config(ws.config)
    import pandas as pd

    tasks = pd.DataFrame({
        "unit": ["区人社局", "区人社局", "区残联", "区民政局"],
        "email": ["a@x.cn、b@x.cn", "b@x.cn, c@x.cn; d@x.cn", "cl@x.cn", "mz＠x.cn，办公室 <o@x.cn>"],
    })  # fmt: skip
    assert unit_addresses(config, tasks) == {
        "区人社局": ["a@x.cn", "b@x.cn", "c@x.cn", "d@x.cn"],
        "区残联": [],  # config.toml says: none
        "区民政局": ["mz@x.cn", "办公室 <o@x.cn>"],
    }


def test_workbook_fingerprint_ignores_the_time_of_writing(tmp_path):
    def book(path: Path, created: str, cell: str) -> Path:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("docProps/core.xml", f"<created>{created}</created>")
            archive.writestr("xl/worksheets/sheet1.xml", f"<c>{cell}</c>")
        return path

    first = book(tmp_path / "a.xlsx", "2023-06-01T01:30:00Z", "3500")
    again = book(tmp_path / "b.xlsx", "2023-06-02T01:30:00Z", "3500")
    changed = book(tmp_path / "c.xlsx", "2023-06-02T01:30:00Z", "3600")
    assert workbook_fingerprint(first) == workbook_fingerprint(again) != workbook_fingerprint(changed)
    other = tmp_path / "d.xlsx"
    other.write_bytes(b"not a zip")
    assert len(workbook_fingerprint(other)) == 64
