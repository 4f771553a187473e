"""pipeline.mail: bodies, messages, attachment names, and delivery to a real SMTP server.

The servers are aiosmtpd controllers on 127.0.0.1 (plain, STARTTLS, SSL-wrapped), with a
self-signed certificate made for the session; a silent server is a plain socket in a thread.
Their fixtures are shared with test_operations.py: conftest.py and smtp_server.py.
"""

from __future__ import annotations

import email
import time
from dataclasses import replace
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from pipeline.config import MailConfig
from pipeline.errors import MailError
from pipeline.mail import (
    attach_file,
    build_reminder,
    build_report_message,
    password_from_env,
    render_report_body,
    send_message,
    write_eml,
)

from .smtp_server import PASSWORD, USER, authenticate, free_port

TITLE = "2023年省市区重点民生实事项目完成情况汇总表"
WORKBOOK_NAME = f"{TITLE}（1-5月）.xlsx"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PASSWORD_ENV = "CONSOLIDATE_SMTP_PASSWORD"
CONTENT = bytes(range(256)) * 64  # every byte value: the attachment must survive untouched

SUMMARY = {
    "workbook": f"/abs/outbox/{WORKBOOK_NAME}",
    "title": TITLE,
    "period": "2023-05",
    "period_label": "1-5月",
    "schedule": 0.4167,
    "accepted": ["区人社局.xlsx", "区残联.xlsx"],
    "rejected": ["bad.xlsx"],
    "missing_units": ["区教育局", "区卫健委"],
    "issues": 3,
    "exit_code": 1,
    "status_counts": {"已完成": 8, "正常": 5, "滞后": 4, "严重滞后": 2, "未报送": 1},
    "lagging": [
        {"code": "7-2", "indicator": "完成70户困难残疾人家庭无障碍改造", "unit": "区残联",
         "rate": 0.2857, "schedule": 0.4167, "status": "滞后"},
        {"code": "3-1", "indicator": "新增<养老>床位 & 护理", "unit": "区民政局",
         "rate": 0.1, "schedule": 0.4167, "status": "严重滞后"},
    ],
    "problems": [
        {"file": "区人社局.xlsx", "unit": "区人社局", "location": "Sheet1!E7", "level": "错误",
         "message": "E7：已完成“见附件”不是数字，请填写累计完成数"},
        {"file": "bad.xlsx", "unit": "区住建局", "location": "", "level": "错误",
         "message": "文件无法打开，请另存为 .xlsx 后重新报送"},
    ],
}


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


def mail_config(port: int, security: str = "none", **changes) -> MailConfig:
    cfg = MailConfig(
        host="127.0.0.1",
        port=port,
        security=security,
        sender=f"督查室 <{USER}>",
        to=("leader@example.gov.cn",),
        cc=("office@example.gov.cn",),
        password_env=PASSWORD_ENV,
        timeout=5.0,
    )
    return replace(cfg, **changes)


def attachments(raw: bytes) -> list[Message]:
    parsed = email.message_from_bytes(raw)
    return [part for part in parsed.walk() if part.get_content_disposition() == "attachment"]


def rfc2047_name(part: Message) -> str:
    raw = part.get_param("name")
    assert raw.startswith("=?utf-8?b?"), raw
    return str(make_header(decode_header(raw)))


def text_of(raw: bytes, subtype: str) -> str:
    for part in email.message_from_bytes(raw).walk():
        if part.get_content_type() == f"text/{subtype}":
            return part.get_payload(decode=True).decode(part.get_content_charset())
    raise AssertionError(f"no text/{subtype} part")


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    path = tmp_path / WORKBOOK_NAME
    path.write_bytes(CONTENT)
    return path


# ---------------------------------------------------------------------------------------------
# Bodies


def test_report_body_lists_lagging_items_worst_first_and_missing_units():
    plain, _ = render_report_body(SUMMARY)
    assert plain.startswith(f"{TITLE}（1-5月）\n")
    assert "序时进度 41.7%" in plain
    assert "已完成 8 项，正常 5 项，滞后 4 项，严重滞后 2 项，未报送 1 项。" in plain
    assert (
        "1. 【严重滞后】3-1 新增<养老>床位 & 护理（区民政局）：完成率 10.0%，序时进度 41.7%，"
        "落后 31.7 个百分点"
    ) in plain
    assert (
        "2. 【滞后】7-2 完成70户困难残疾人家庭无障碍改造（区残联）：完成率 28.6%，序时进度 41.7%，"
        "落后 13.1 个百分点"
    ) in plain
    assert "三、未报送单位（2 个）\n区教育局、区卫健委" in plain
    assert "退回 1 份（bad.xlsx）" in plain
    assert f"附件：{WORKBOOK_NAME}" in plain


def test_report_body_groups_problems_by_unit_and_gives_the_count():
    plain, page = render_report_body(SUMMARY)
    assert "四、报表问题（共 3 条，以下为前 2 条，全部见附件“问题清单”）" in plain
    assert (
        "区人社局：\n  · 区人社局.xlsx，Sheet1!E7【错误】：E7：已完成“见附件”不是数字，请填写累计完成数"
    ) in plain
    assert "区住建局：\n  · bad.xlsx【错误】：文件无法打开" in plain
    assert "<p><b>区人社局</b></p><ul><li>区人社局.xlsx，Sheet1!E7【错误】" in page


def test_report_body_html_escapes_everything():
    hostile = {**SUMMARY, "title": "<script>alert(1)</script>", "missing_units": ['区"教育"局<b>']}
    _, page = render_report_body(hostile)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "新增&lt;养老&gt;床位 &amp; 护理" in page
    assert "区&quot;教育&quot;局&lt;b&gt;" in page
    assert "<td style=\"border:1px solid #999999;padding:2px 6px\">28.6%</td>" in page


def test_report_body_says_none_when_nothing_lags():
    quiet = {"title": TITLE, "period": "2023-05", "schedule": 0.4167, "issues": 0,
             "status_counts": {"已完成": 3}}
    plain, _ = render_report_body(quiet)
    assert f"{TITLE}（1-5月）" in plain  # the label falls back to the period
    assert "二、滞后事项：无。" in plain
    assert "三、未报送单位：无。" in plain
    assert "四、报表问题：无。" in plain


# ---------------------------------------------------------------------------------------------
# Messages


def test_report_message_headers(workbook):
    cfg = mail_config(25, subject="【月报】{title}（{period_label}，{period}）")
    msg = build_report_message(cfg, SUMMARY, workbook)
    raw = msg.as_bytes()
    raw.decode("ascii")  # every header and body line encoded
    parsed = email.message_from_bytes(raw)
    subject = str(make_header(decode_header(parsed["Subject"])))
    assert subject == f"【月报】{TITLE}（1-5月，2023-05）"
    assert parsed["From"].startswith("=?utf-8?b?")
    assert str(make_header(decode_header(parsed["From"]))) == f"督查室 <{USER}>"
    assert parsed["To"] == "leader@example.gov.cn"
    assert parsed["Cc"] == "office@example.gov.cn"
    assert parsedate_to_datetime(parsed["Date"]).tzinfo is not None
    assert parsed["Message-ID"].endswith("@example.gov.cn>")
    assert text_of(raw, "plain") == render_report_body(SUMMARY)[0]
    assert text_of(raw, "html") == render_report_body(SUMMARY)[1]


def test_attachment_name_decodes_to_the_chinese_name_both_ways(workbook):
    raw = build_report_message(mail_config(25), SUMMARY, workbook).as_bytes()
    [part] = attachments(raw)
    assert part.get_content_type() == XLSX
    assert part.get_filename() == WORKBOOK_NAME  # RFC 2231, Content-Disposition
    assert rfc2047_name(part) == WORKBOOK_NAME  # RFC 2047, Content-Type name=
    assert part.get_payload(decode=True) == CONTENT


def test_attachment_headers_stay_on_one_line(workbook):
    raw = build_report_message(mail_config(25), SUMMARY, workbook).as_bytes()
    lines = raw.split(b"\n")
    [index] = [i for i, line in enumerate(lines) if line.startswith(b"Content-Type: " + XLSX.encode())]
    assert lines[index].startswith(f'Content-Type: {XLSX}; name="=?utf-8?b?'.encode())
    assert lines[index].endswith(b'?="')
    assert not lines[index + 1][:1].isspace()  # not folded
    [disposition] = [line for line in lines if line.startswith(b"Content-Disposition: attachment")]
    assert disposition.startswith(b"Content-Disposition: attachment; filename*=utf-8''2023%E5")
    assert max(len(line) for line in lines) <= 998


def test_attach_file_with_another_name_and_type(tmp_path):
    msg = build_report_message(mail_config(25), SUMMARY, _write(tmp_path / "a.xlsx", b"x"))
    attach_file(msg, _write(tmp_path / "data.bin", b"\x00\x01"), filename="区人社局 问题清单.csv")
    parts = attachments(msg.as_bytes())
    assert [p.get_content_type() for p in parts] == [XLSX, "text/csv"]
    assert parts[1].get_filename() == "区人社局 问题清单.csv"
    assert rfc2047_name(parts[1]) == "区人社局 问题清单.csv"
    assert parts[1].get_payload(decode=True) == b"\x00\x01"
    assert parts[0].get_filename() == parts[0].get_param("name") == "a.xlsx"


def test_missing_attachment_is_a_mail_error(tmp_path):
    with pytest.raises(MailError, match="找不到要附加的文件"):
        build_report_message(mail_config(25), SUMMARY, tmp_path / "gone.xlsx")


def test_subject_template_with_an_unknown_placeholder_is_a_mail_error(workbook):
    with pytest.raises(MailError, match=r"subject = \"\{titel\}\" 无法使用.*\{period_label\}"):
        build_report_message(mail_config(25, subject="{titel}"), SUMMARY, workbook)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"to": ()}, "没有收件人"),
        ({"to": ("leader.example.gov.cn",)}, "收件人地址“leader.example.gov.cn”格式不对"),
        ({"sender": "督查室"}, "发件人地址“督查室”格式不对"),
        ({"cc": ("a@example.gov.cn\nBcc: spy@example.com",)}, "抄送地址“a@example.gov.cn\nBcc"),
    ],
)
def test_bad_addresses_are_mail_errors(workbook, changes, expected):
    with pytest.raises(MailError, match=expected):
        build_report_message(mail_config(25, **changes), SUMMARY, workbook)


def test_reminder_asks_a_missing_unit_for_its_sheet_with_the_template(tmp_path):
    template = _write(tmp_path / "区教育局_填报模板.xlsx", CONTENT[:1000])
    msg = build_reminder(
        mail_config(25), "区教育局", ["jyj@example.gov.cn"],
        title=TITLE, period_label="1-5月", template=template, problems=[],
    )  # fmt: skip
    raw = msg.as_bytes()
    parsed = email.message_from_bytes(raw)
    subject = str(make_header(decode_header(parsed["Subject"])))
    assert subject == f"【催报】{TITLE}（1-5月）：请区教育局报送进展情况"
    assert parsed["To"] == "jyj@example.gov.cn" and parsed["Cc"] is None
    body = text_of(raw, "plain")
    assert body.startswith("区教育局：\n")
    assert "尚未收到贵单位1-5月重点民生实事项目进展情况" in body
    assert "请按附件模板填写" in body and body.rstrip().endswith("督查室")
    [part] = attachments(raw)
    assert part.get_filename() == rfc2047_name(part) == "区教育局_填报模板.xlsx"
    assert part.get_payload(decode=True) == CONTENT[:1000]


def test_reminder_lists_the_problems_of_rejected_rows():
    problems = [SUMMARY["problems"][0], {**SUMMARY["problems"][0], "location": "Sheet1!E9",
                                        "message": "E9：目标值与任务清单不一致"}]
    msg = build_reminder(
        mail_config(25), "区人社局", ["rsj@example.gov.cn"],
        title=TITLE, period_label="1-5月", template=None, problems=problems,
    )  # fmt: skip
    raw = msg.as_bytes()
    subject = str(make_header(decode_header(email.message_from_bytes(raw)["Subject"])))
    assert subject == f"【请更正】{TITLE}（1-5月）：区人社局报表有2处问题"
    body = text_of(raw, "plain")
    assert "1. 区人社局.xlsx，Sheet1!E7【错误】：E7：已完成“见附件”不是数字，请填写累计完成数" in body
    assert "2. 区人社局.xlsx，Sheet1!E9【错误】：E9：目标值与任务清单不一致" in body
    assert "请更正后重新报送" in body
    assert attachments(raw) == []


def test_reminder_without_an_address_names_the_unit():
    with pytest.raises(MailError, match=r"没有区教育局的邮箱地址.*\[units\.\"区教育局\"\]"):
        build_reminder(mail_config(25), "区教育局", [], title=TITLE, period_label="1-5月",
                       template=None, problems=[])


def test_password_from_env():
    assert password_from_env(mail_config(25), {}) is None  # no username, no login
    cfg = mail_config(25, username=USER)
    assert password_from_env(cfg, {PASSWORD_ENV: PASSWORD}) == PASSWORD
    for environ in ({}, {PASSWORD_ENV: ""}):
        with pytest.raises(MailError, match=f"环境变量 {PASSWORD_ENV} 未设置或为空"):
            password_from_env(cfg, environ)
    with pytest.raises(MailError, match="没有 password_env"):
        password_from_env(replace(cfg, password_env=""), {})


def test_write_eml_is_parsed_back_with_the_attachment_intact(tmp_path, workbook):
    msg = build_report_message(mail_config(25), SUMMARY, workbook)
    target = tmp_path / "out" / "report.eml"
    target.parent.mkdir()
    target.write_bytes(b"an older draft")
    assert write_eml(msg, target) == target
    assert [p.name for p in target.parent.iterdir()] == ["report.eml"]  # no temp file left
    raw = target.read_bytes()
    assert b"\r\n" in raw
    [part] = attachments(raw)
    assert part.get_payload(decode=True) == CONTENT
    assert part.get_filename() == rfc2047_name(part) == WORKBOOK_NAME


# ---------------------------------------------------------------------------------------------
# Sending, through a real server on 127.0.0.1


def test_plain_delivery(smtp_server, workbook):
    inbox, port = smtp_server()
    send_message(build_report_message(mail_config(port), SUMMARY, workbook), mail_config(port), None)
    [received] = inbox.messages
    assert received.mail_from == USER
    assert received.rcpt_tos == ["leader@example.gov.cn", "office@example.gov.cn"]
    [part] = attachments(received.content)
    assert part.get_payload(decode=True) == CONTENT
    assert part.get_filename() == rfc2047_name(part) == WORKBOOK_NAME
    assert "区教育局" in text_of(received.content, "plain")


def test_starttls_with_login(smtp_server, workbook, server_tls, client_tls):
    inbox, port = smtp_server(
        tls_context=server_tls, require_starttls=True,
        authenticator=authenticate, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    cfg = mail_config(port, "starttls", username=USER)
    send_message(build_report_message(cfg, SUMMARY, workbook), cfg, PASSWORD, ssl_context=client_tls)
    [received] = inbox.messages
    assert received.authenticated
    assert attachments(received.content)[0].get_payload(decode=True) == CONTENT


def test_ssl_with_login(smtp_server, workbook, server_tls, client_tls):
    # aiosmtpd counts only STARTTLS as encryption for AUTH; here the whole connection is TLS.
    inbox, port = smtp_server(ssl_context=server_tls, authenticator=authenticate,
                              auth_require_tls=False)
    cfg = mail_config(port, "ssl", username=USER)
    send_message(build_report_message(cfg, SUMMARY, workbook), cfg, PASSWORD, ssl_context=client_tls)
    [received] = inbox.messages
    assert received.authenticated
    assert attachments(received.content)[0].get_filename() == WORKBOOK_NAME


def test_refused_login_is_a_mail_error(smtp_server, workbook, server_tls, client_tls):
    inbox, port = smtp_server(
        tls_context=server_tls, require_starttls=True,
        authenticator=authenticate, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    cfg = mail_config(port, "starttls", username=USER)
    msg = build_report_message(cfg, SUMMARY, workbook)
    with pytest.raises(MailError) as caught:
        send_message(msg, cfg, "wrong", ssl_context=client_tls)
    assert str(caught.value).startswith(
        f"邮件服务器拒绝登录，请检查用户名 {USER} 和环境变量 {PASSWORD_ENV} 中的密码"
    )
    assert "535" in str(caught.value)
    assert inbox.messages == []


def test_login_without_a_password_fails_before_connecting(workbook):
    cfg = mail_config(free_port(), username=USER)
    with pytest.raises(MailError, match=f"环境变量 {PASSWORD_ENV}"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None)


def test_untrusted_certificate_is_a_tls_failure(smtp_server, workbook, server_tls):
    _, port = smtp_server(ssl_context=server_tls)
    cfg = mail_config(port, "ssl")
    with pytest.raises(MailError, match=f"邮件服务器 127.0.0.1:{port} 的证书无法验证"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None)


def test_ssl_against_a_plain_port_is_a_tls_failure(smtp_server, workbook, client_tls):
    _, port = smtp_server()
    cfg = mail_config(port, "ssl")
    with pytest.raises(MailError, match=f"与邮件服务器 127.0.0.1:{port} 建立加密连接失败"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None, ssl_context=client_tls)


def test_starttls_not_offered_is_a_mail_error(smtp_server, workbook, client_tls):
    _, port = smtp_server()
    cfg = mail_config(port, "starttls")
    with pytest.raises(MailError, match="不支持 STARTTLS"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None, ssl_context=client_tls)


def test_server_that_wants_encryption_first(smtp_server, workbook, server_tls):
    _, port = smtp_server(tls_context=server_tls, require_starttls=True)
    cfg = mail_config(port, "none")
    with pytest.raises(MailError, match=r"要求先加密或登录才能发信（530 .*请把 security 设为"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None)


def test_refused_recipient_is_a_mail_error(smtp_server, workbook):
    inbox, port = smtp_server()
    cfg = mail_config(port, to=("nobody@example.gov.cn",), cc=())
    with pytest.raises(MailError, match=r"拒收全部收件人：nobody@example.gov.cn（550 5\.1\.1"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None)
    assert inbox.messages == []


def test_partly_refused_recipients_are_named(smtp_server, workbook):
    inbox, port = smtp_server()
    cfg = mail_config(port, cc=("nobody@example.gov.cn",))
    with pytest.raises(MailError, match="邮件已发给其他收件人，但以下收件人被邮件服务器拒收：nobody@"):
        send_message(build_report_message(cfg, SUMMARY, workbook), cfg, None)
    assert inbox.messages[0].rcpt_tos == ["leader@example.gov.cn"]


def test_closed_port_fails_quickly(workbook):
    port = free_port()  # bound and released: nothing listens there now
    cfg = mail_config(port)
    msg = build_report_message(cfg, SUMMARY, workbook)
    started = time.monotonic()
    with pytest.raises(MailError, match=f"无法连接邮件服务器 127.0.0.1:{port}：连接被拒绝"):
        send_message(msg, cfg, None)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("security", ["none", "ssl"])
def test_silent_server_times_out(silent_server, workbook, client_tls, security):
    cfg = mail_config(silent_server, security, timeout=1.0)
    msg = build_report_message(cfg, SUMMARY, workbook)
    started = time.monotonic()
    with pytest.raises(MailError, match=f"无法连接邮件服务器 127.0.0.1:{silent_server}：1 秒内没有响应"):
        send_message(msg, cfg, None, ssl_context=client_tls)
    assert time.monotonic() - started < cfg.timeout + 2


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
