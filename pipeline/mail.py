"""Building and sending mail: the consolidated workbook to the leaders, reminders (催报) to units.

Everything here is a plain function of its arguments: the caller reads config.toml, the run
summary (``state/last_run.json``) and the environment, and passes the values in. Only
``send_message`` and ``write_eml`` touch the outside world.

Attachment names are written twice, because mail clients disagree about which form they read:
RFC 2231 (``filename*=utf-8''...``) in Content-Disposition, which Python writes by default, and
RFC 2047 (``name="=?utf-8?b?...?="``) in Content-Type, which Outlook over IMAP/POP and QQ Mail
need (without it they show "Untitled attachment" or ``tcmime.*.bin``). Python's own folding of a
long Content-Type with a non-ASCII ``name`` also mangles the media type itself
(``application/=?utf-8?q?vnd=2Eopenxml...?=``), so ``MAIL_POLICY`` writes that header itself.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import os
import re
import smtplib
import socket
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import quote

from .config import MailConfig
from .errors import MailError

MAX_LAGGING_LISTED = 50  # more would drown the mail; the workbook has them all
MAX_PROBLEMS_LISTED = 20
STATUS_ORDER = ("已完成", "正常", "滞后", "严重滞后", "未报送")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# Named explicitly: mimetypes depends on the machine (on Windows, on the registry).
CONTENT_TYPES = {
    ".xlsx": XLSX_TYPE,
    ".xlsm": "application/vnd.ms-excel.sheet.macroEnabled.12",
    ".xls": "application/vnd.ms-excel",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".csv": "text/csv",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
}
_MAX_HEADER_LINE = 998  # RFC 5322 hard limit, CRLF excluded
_NAME_CHUNK = 150  # characters per encoded word when a name is too long for one line
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _MailPolicy(EmailPolicy):
    """EmailPolicy that writes attachment headers with a non-ASCII name itself, on one line."""

    def fold(self, name, value):
        line = _parameter_line(name, value, self.linesep)
        return line if line is not None else super().fold(name, value)

    def fold_binary(self, name, value):
        line = _parameter_line(name, value, self.linesep)
        return line.encode("ascii") if line is not None else super().fold_binary(name, value)


MAIL_POLICY = _MailPolicy()


# ---------------------------------------------------------------------------------------------
# Bodies


def render_report_body(summary: Mapping) -> tuple[str, str]:
    """The report mail's body from the run summary, as (plain text, HTML); all text in Chinese."""
    title, label = _title(summary), _period_label(summary)
    schedule = summary.get("schedule")
    lagging = _worst_first(summary.get("lagging") or [])
    missing = [str(unit) for unit in summary.get("missing_units") or []]
    problems = list(summary.get("problems") or [])
    issues = summary.get("issues", len(problems))
    workbook = Path(str(summary.get("workbook") or "")).name
    text = [
        f"{title}（{label}）",
        "",
        _overview(summary, schedule, len(missing), issues),
        "",
        "一、完成情况",
        _status_line(summary.get("status_counts") or {}),
        "",
        *_lagging_text(lagging),
        "",
        *_missing_text(missing),
        "",
        *_problems_text(problems, issues),
        "",
        *([f"附件：{workbook}"] if workbook else []),
        "（本邮件由汇总程序自动生成。）",
    ]
    page = [
        f"<h2>{_h(title)}（{_h(label)}）</h2>",
        f"<p>{_h(_overview(summary, schedule, len(missing), issues))}</p>",
        "<h3>一、完成情况</h3>",
        f"<p>{_h(_status_line(summary.get('status_counts') or {}))}</p>",
        *_lagging_html(lagging),
        *_missing_html(missing),
        *_problems_html(problems, issues),
        *([f"<p>附件：{_h(workbook)}</p>"] if workbook else []),
        '<p style="color:#888888">（本邮件由汇总程序自动生成。）</p>',
    ]
    return "\n".join(text) + "\n", _html_document(page)


def _overview(summary: Mapping, schedule, missing: int, issues) -> str:
    accepted = list(summary.get("accepted") or [])
    rejected = [str(name) for name in summary.get("rejected") or []]
    parts = [f"序时进度 {_percent(schedule)}", f"本期汇总报表 {len(accepted)} 份"]
    if rejected:
        parts.append(f"退回 {len(rejected)} 份（{'、'.join(rejected)}）")
    parts += [f"未报送单位 {missing} 个", f"问题 {issues} 条"]
    return "，".join(parts) + "。"


def _status_line(counts: Mapping) -> str:
    order = [s for s in STATUS_ORDER if s in counts] + [s for s in counts if s not in STATUS_ORDER]
    if not order:
        return "无。"
    return "，".join(f"{status} {counts[status]} 项" for status in order) + "。"


def _worst_first(items: list[dict]) -> list[dict]:
    """Largest gap behind 序时进度 first; an item without a rate counts as the worst."""

    def behind(item: dict) -> float:
        rate, schedule = _number(item.get("rate")), _number(item.get("schedule"))
        if rate is None:
            return float("inf")
        return (schedule or 0.0) - rate

    return sorted(items, key=behind, reverse=True)


def _lagging_sentence(item: Mapping) -> str:
    code = f"{item.get('code')} " if item.get("code") else ""
    unit = f"（{item.get('unit')}）" if item.get("unit") else ""
    rate, schedule = _number(item.get("rate")), _number(item.get("schedule"))
    text = f"【{item.get('status') or '滞后'}】{code}{item.get('indicator', '')}{unit}："
    text += f"完成率 {_percent(rate)}，序时进度 {_percent(schedule)}"
    if rate is not None and schedule is not None:
        text += f"，落后 {(schedule - rate) * 100:.1f} 个百分点"
    return text


def _lagging_text(lagging: list[dict]) -> list[str]:
    if not lagging:
        return ["二、滞后事项：无。"]
    lines = [f"二、滞后事项（{len(lagging)} 项，按落后序时进度从多到少排列）"]
    shown = lagging[:MAX_LAGGING_LISTED]
    lines += [f"{n}. {_lagging_sentence(item)}" for n, item in enumerate(shown, 1)]
    if len(lagging) > len(shown):
        lines.append(f"（另有 {len(lagging) - len(shown)} 项，见附件汇总表。）")
    return lines


def _lagging_html(lagging: list[dict]) -> list[str]:
    if not lagging:
        return ["<h3>二、滞后事项</h3>", "<p>无。</p>"]
    shown = lagging[:MAX_LAGGING_LISTED]
    header = ("序号", "状态", "指标编号", "指标任务", "责任单位", "完成率", "序时进度")
    rows = [
        (n, item.get("status") or "滞后", item.get("code", ""), item.get("indicator", ""),
         item.get("unit", ""), _percent(item.get("rate")), _percent(item.get("schedule")))
        for n, item in enumerate(shown, 1)
    ]
    parts = [
        f"<h3>二、滞后事项（{len(lagging)} 项，按落后序时进度从多到少排列）</h3>",
        _html_table(header, rows),
    ]
    if len(lagging) > len(shown):
        parts.append(f"<p>（另有 {len(lagging) - len(shown)} 项，见附件汇总表。）</p>")
    return parts


def _missing_text(missing: list[str]) -> list[str]:
    if not missing:
        return ["三、未报送单位：无。"]
    return [f"三、未报送单位（{len(missing)} 个）", "、".join(missing)]


def _missing_html(missing: list[str]) -> list[str]:
    if not missing:
        return ["<h3>三、未报送单位</h3>", "<p>无。</p>"]
    return [f"<h3>三、未报送单位（{len(missing)} 个）</h3>", f"<p>{_h('、'.join(missing))}</p>"]


def _problems_heading(problems: list[dict], issues) -> str:
    shown = min(len(problems), MAX_PROBLEMS_LISTED)
    if shown and shown < _int(issues, len(problems)):
        return f"四、报表问题（共 {issues} 条，以下为前 {shown} 条，全部见附件“问题清单”）"
    return f"四、报表问题（共 {issues} 条，详见附件“问题清单”）"


def _problem_sentence(problem: Mapping) -> str:
    where = "，".join(str(p) for p in (problem.get("file"), problem.get("location")) if p)
    level = f"【{problem['level']}】" if problem.get("level") else ""
    message = str(problem.get("message", ""))
    return f"{where}{level}：{message}" if where else f"{level}{message}"


def _problems_by_unit(problems: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for problem in problems[:MAX_PROBLEMS_LISTED]:
        unit = str(problem.get("unit") or problem.get("file") or "（未识别单位）")
        groups.setdefault(unit, []).append(problem)
    return groups


def _problems_text(problems: list[dict], issues) -> list[str]:
    if not _int(issues, len(problems)) and not problems:
        return ["四、报表问题：无。"]
    lines = [_problems_heading(problems, issues)]
    for unit, group in _problems_by_unit(problems).items():
        lines.append(f"{unit}：")
        lines += [f"  · {_problem_sentence(problem)}" for problem in group]
    return lines


def _problems_html(problems: list[dict], issues) -> list[str]:
    if not _int(issues, len(problems)) and not problems:
        return ["<h3>四、报表问题</h3>", "<p>无。</p>"]
    parts = [f"<h3>{_h(_problems_heading(problems, issues))}</h3>"]
    for unit, group in _problems_by_unit(problems).items():
        items = "".join(f"<li>{_h(_problem_sentence(problem))}</li>" for problem in group)
        parts.append(f"<p><b>{_h(unit)}</b></p><ul>{items}</ul>")
    return parts


def _html_table(header: tuple, rows: list[tuple]) -> str:
    cell = 'style="border:1px solid #999999;padding:2px 6px"'
    head = "".join(f"<th {cell}>{_h(name)}</th>" for name in header)
    body = "".join(
        "<tr>" + "".join(f"<td {cell}>{_h(value)}</td>" for value in row) + "</tr>" for row in rows
    )
    return f'<table style="border-collapse:collapse"><tr>{head}</tr>{body}</table>'


def _html_document(parts: list[str]) -> str:
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body style="font-family:sans-serif;font-size:14px">\n{body}\n</body></html>\n'
    )


def _reminder_text(unit: str, title: str, period_label: str, has_template: bool,
                   problems: list[dict], signature: str) -> str:
    lines = [f"{unit}：", ""]
    if problems:
        lines.append(
            f"您好！贵单位报送的{period_label}重点民生实事项目进展情况（《{title}》）中有以下"
            f"{len(problems)}处问题，相关内容暂未能汇总，请更正后重新报送："
        )
        lines.append("")
        lines += [f"{n}. {_problem_sentence(problem)}" for n, problem in enumerate(problems, 1)]
        if has_template:
            lines += ["", "附件为贵单位的填报模板，也可直接在模板中填写后回复本邮件。"]
    else:
        how = "请按附件模板填写" if has_template else "请填写"
        lines.append(
            f"您好！截至目前，尚未收到贵单位{period_label}重点民生实事项目进展情况（《{title}》）。"
            f"{how}各项指标的累计完成数和完成情况，尽快回复本邮件报送。"
        )
        lines += ["", "如已报送，请忽略本邮件。"]
    lines += ["", "谢谢支持！"]
    if signature:
        lines += ["", signature]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Messages


def build_report_message(cfg: MailConfig, summary: Mapping, workbook: Path) -> EmailMessage:
    """The mail to the leaders: subject from ``cfg.subject``, the body, the workbook attached."""
    title, label = _title(summary), _period_label(summary)
    try:
        subject = cfg.subject.format(
            title=title, period=str(summary.get("period", "")), period_label=label
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise MailError(
            f"配置文件 [mail] subject = \"{cfg.subject}\" 无法使用（{exc}）；"
            "可用的占位符为 {title}、{period}、{period_label}。"
        ) from None
    msg = _new_message(cfg.sender, cfg.to, cfg.cc, subject)
    plain, page = render_report_body(summary)
    msg.set_content(plain, cte="base64")
    msg.add_alternative(page, subtype="html", cte="base64")
    attach_file(msg, Path(workbook))
    return msg


def build_reminder(
    cfg: MailConfig,
    unit: str,
    to: list[str],
    *,
    title: str,
    period_label: str,
    template: Path | None,
    problems: list[dict],
) -> EmailMessage:
    """催报 to one unit: please return the sheet (template attached), or fix these problems."""
    if not to:
        raise MailError(
            f"没有{unit}的邮箱地址，无法发送催报；请在 config.toml 中填写，"
            f"例如 [units.\"{unit}\"] email = [\"name@example.gov.cn\"]。"
        )
    problems = list(problems or [])
    if problems:
        subject = f"【请更正】{title}（{period_label}）：{unit}报表有{len(problems)}处问题"
    else:
        subject = f"【催报】{title}（{period_label}）：请{unit}报送进展情况"
    msg = _new_message(cfg.sender, to, (), subject)
    signature = _display_name(msg)
    text = _reminder_text(unit, title, period_label, template is not None, problems, signature)
    msg.set_content(text, cte="base64")
    if template is not None:
        attach_file(msg, Path(template))
    return msg


def attach_file(msg: EmailMessage, path: Path, filename: str | None = None) -> None:
    """Attach a file, its name given in both the RFC 2231 and the RFC 2047 form."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MailError(f"找不到要附加的文件：{path}") from None
    except OSError as exc:
        raise MailError(f"无法读取要附加的文件 {path}：{exc.strerror or exc}") from None
    name = _CONTROL.sub("_", filename or path.name)
    maintype, subtype = _content_type(name).split("/", 1)
    msg.add_attachment(data, maintype, subtype, filename=name, params={"name": name})


def write_eml(msg: EmailMessage, path: Path) -> Path:
    """Write the message as an .eml file (CRLF line ends), atomically: temp file + os.replace."""
    path = Path(path)
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    temp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            temp = Path(handle.name)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except OSError as exc:
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise MailError(f"无法写入邮件文件 {path}：{exc.strerror or exc}") from None
    return path


def _new_message(sender: str, to, cc, subject: str) -> EmailMessage:
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["Subject"] = " ".join(subject.split())  # a line break in a header would be an injection
    msg["From"] = _addresses("发件人", [sender], "[mail] from")
    msg["To"] = _addresses("收件人", list(to), "[mail] to")
    if cc:
        msg["Cc"] = _addresses("抄送", list(cc), "[mail] cc")
    msg["Date"] = datetime.now().astimezone()
    # make_msgid() without a domain calls socket.getfqdn(), which can hang on a broken DNS.
    msg["Message-ID"] = make_msgid(idstring="consolidate", domain=msg["From"].addresses[0].domain)
    return msg


def _addresses(label: str, values: list[str], setting: str) -> str:
    if not values:
        raise MailError(f"没有{label}：请在配置文件 {setting} 中填写邮箱地址。")
    for value in values:
        one_line = "\n" not in value and "\r" not in value  # no header injection
        found = MAIL_POLICY.header_factory("To", value).addresses if one_line else ()
        if len(found) != 1 or not found[0].username or not found[0].domain:
            raise MailError(
                f"{label}地址“{value}”格式不对，应为 name@example.gov.cn 或 "
                "“督查室 <name@example.gov.cn>”。"
            )
    return ", ".join(values)


def _display_name(msg: EmailMessage) -> str:
    address: Address = msg["From"].addresses[0]
    return address.display_name


def _content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def _parameter_line(name: str, value, linesep: str) -> str | None:
    """A MIME header with a non-ASCII parameter on one line, or None to let Python fold it.

    Content-Type ``name`` gets the RFC 2047 form; other parameters (Content-Disposition
    ``filename``) the RFC 2231 form, unsplit: ``filename*=utf-8''...`` is read by more clients
    than the ``filename*0*=`` continuations Python writes.
    """
    kind = name.lower()
    if kind not in ("content-type", "content-disposition") or not hasattr(value, "params"):
        return None
    params = {key: str(param) for key, param in value.params.items()}
    if all(param.isascii() for param in params.values()):
        return None
    parts = [value.content_type if kind == "content-type" else value.content_disposition]
    for key, param in params.items():
        if param.isascii():
            parts.append(f'{key}="{_quoted(param)}"')
        elif kind == "content-type" and key == "name":
            parts.append(f'name="{_encoded_words(param, linesep)}"')
        else:
            parts.append(f"{key}*=utf-8''{quote(param, safe='')}")
    line = f"{name}: {'; '.join(parts)}"
    if kind == "content-disposition" and len(line) > _MAX_HEADER_LINE:
        return None  # too long for one line: Python's RFC 2231 continuations are correct here
    return line + linesep


def _encoded_words(text: str, linesep: str) -> str:
    """One RFC 2047 encoded word; only past the line limit several, folded between words."""
    chunks = [text] if len(text) <= _NAME_CHUNK else [
        text[start:start + _NAME_CHUNK] for start in range(0, len(text), _NAME_CHUNK)
    ]
    words = [f"=?utf-8?b?{base64.b64encode(chunk.encode()).decode('ascii')}?=" for chunk in chunks]
    return f"{linesep} ".join(words)


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


# ---------------------------------------------------------------------------------------------
# Sending


def password_from_env(cfg: MailConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The SMTP password from the variable named by ``cfg.password_env``; None without a login."""
    if not cfg.username:
        return None
    if not cfg.password_env:
        raise MailError(
            f"配置文件 [mail] 设置了 username = \"{cfg.username}\"，但没有 password_env；"
            "请写出保存密码的环境变量名，例如 password_env = \"CONSOLIDATE_SMTP_PASSWORD\"。"
        )
    password = environ.get(cfg.password_env, "")
    if not password:
        raise MailError(
            f"环境变量 {cfg.password_env} 未设置或为空：请先在其中设置发件邮箱 {cfg.username} "
            "的密码（有的邮箱要求使用授权码），再发送邮件。"
        )
    return password


def send_message(
    msg: EmailMessage,
    cfg: MailConfig,
    password: str | None,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Send through cfg's server; every step bounded by cfg.timeout; MailError on any failure."""
    if cfg.username and password is None:
        password_from_env(cfg, {})  # raises the message that names the variable
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    with _step("connect", cfg):
        smtp = _open(cfg, context)
    try:
        if cfg.security == "starttls":
            with _step("starttls", cfg):
                smtp.starttls(context=context)
        if cfg.username:
            with _step("login", cfg):
                smtp.login(cfg.username, password)
        with _step("send", cfg):
            refused = smtp.send_message(msg)
        _quit_quietly(smtp)
    finally:
        smtp.close()
    if refused:
        raise MailError(
            "邮件已发给其他收件人，但以下收件人被邮件服务器拒收："
            + "；".join(f"{rcpt}（{_reply(code, text)}）" for rcpt, (code, text) in refused.items())
        )


def _open(cfg: MailConfig, context: ssl.SSLContext) -> smtplib.SMTP:
    # The host goes to the constructor: SMTP_SSL checks the certificate against it.
    if cfg.security == "ssl":
        return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=context)
    return smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    # The message has been accepted: a server that hangs up rudely afterwards is no failure.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass


_CHECK_SETTINGS = "请检查 config.toml [mail] 的 host、port 和 security 设置，以及网络是否可达。"
_STAGES = {"connect": "连接", "starttls": "启用 STARTTLS 加密", "login": "登录", "send": "发送"}


@contextmanager
def _step(stage: str, cfg: MailConfig) -> Iterator[None]:
    try:
        yield
    except (OSError, UnicodeEncodeError) as exc:  # smtplib and ssl errors are OSErrors
        raise MailError(_describe_failure(stage, exc, cfg)) from exc


def _describe_failure(stage: str, exc: BaseException, cfg: MailConfig) -> str:
    where = f"{cfg.host}:{cfg.port}"
    if _is_timeout(exc):
        if stage == "connect":
            return f"无法连接邮件服务器 {where}：{cfg.timeout:g} 秒内没有响应。{_CHECK_SETTINGS}"
        return f"邮件服务器 {where} 在{_STAGES[stage]}时 {cfg.timeout:g} 秒内没有响应，请稍后再试。"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"邮件服务器 {where} 的证书无法验证（{exc.verify_message or exc}）。"
            "请确认 host 填写的是证书上的服务器名称。"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"与邮件服务器 {where} 建立加密连接失败（{exc.reason or exc}）。请确认 security 与端口"
            "相符：465 端口一般用 \"ssl\"，587 端口一般用 \"starttls\"。"
        )
    explain = {"connect": _connect_failure, "starttls": _starttls_failure,
               "login": _login_failure, "send": _send_failure}[stage]
    message = explain(exc, cfg, where)
    if message:
        return message
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"邮件服务器 {where} 在{_STAGES[stage]}时返回错误：{_reply(exc.smtp_code, exc.smtp_error)}"
    return f"邮件服务器 {where} 在{_STAGES[stage]}时出错：{exc}"


def _connect_failure(exc: BaseException, cfg: MailConfig, where: str) -> str:
    if isinstance(exc, ConnectionRefusedError):
        reason = "连接被拒绝"
    elif isinstance(exc, socket.gaierror):
        reason = f"找不到服务器 {cfg.host}（域名无法解析）"
    elif isinstance(exc, smtplib.SMTPResponseException):
        reason = f"服务器拒绝连接（{_reply(exc.smtp_code, exc.smtp_error)}）"
    else:
        reason = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    return f"无法连接邮件服务器 {where}：{reason}。{_CHECK_SETTINGS}"


def _starttls_failure(exc: BaseException, cfg: MailConfig, where: str) -> str | None:
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"邮件服务器 {where} 不支持 STARTTLS 加密；请把 security 改为 \"ssl\"（端口一般为 465）。"
    return None


def _login_failure(exc: BaseException, cfg: MailConfig, where: str) -> str | None:
    variable = cfg.password_env or "（未设置 password_env）"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return (
            f"邮件服务器拒绝登录，请检查用户名 {cfg.username} 和环境变量 {variable} 中的密码"
            f"（有的邮箱要求使用授权码）。服务器答复：{_reply(exc.smtp_code, exc.smtp_error)}"
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return (
            f"邮件服务器 {where} 不接受登录（AUTH）。有的服务器只在加密连接上允许登录，请把 security 设为"
            " \"starttls\" 或 \"ssl\"；如不需要登录，请删去 username。"
        )
    if isinstance(exc, UnicodeEncodeError):
        return f"用户名 {cfg.username} 或环境变量 {variable} 中的密码含有中文或全角字符，无法登录，请检查。"
    return None


def _send_failure(exc: BaseException, cfg: MailConfig, where: str) -> str | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "；".join(
            f"{rcpt}（{_reply(code, text)}）" for rcpt, (code, text) in exc.recipients.items()
        )
        return f"邮件服务器拒收全部收件人：{refused}。请检查收件人地址。"
    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 530:
        return (
            f"邮件服务器 {where} 要求先加密或登录才能发信（{_reply(exc.smtp_code, exc.smtp_error)}）；"
            "请把 security 设为 \"starttls\" 或 \"ssl\"，并填写 username 和 password_env。"
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return (
            f"邮件服务器拒绝发件人 {exc.sender}（{_reply(exc.smtp_code, exc.smtp_error)}）；"
            "发件人地址一般须与登录用户名一致。"
        )
    if isinstance(exc, smtplib.SMTPDataError):
        return f"邮件服务器拒收这封邮件（{_reply(exc.smtp_code, exc.smtp_error)}）；如提示邮件过大，请减小附件。"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"邮件地址含有中文字符，但邮件服务器 {where} 不支持（SMTPUTF8）；请改用英文地址。"
    return None


def _is_timeout(exc: BaseException) -> bool:
    # smtplib turns a read timeout into SMTPServerDisconnected("Connection unexpectedly closed").
    return isinstance(exc, TimeoutError) or (
        isinstance(exc, smtplib.SMTPServerDisconnected)
        and isinstance(exc.__context__, TimeoutError)
    )


def _reply(code, text) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {text}".strip()


# ---------------------------------------------------------------------------------------------
# Small helpers


def _title(summary: Mapping) -> str:
    return str(summary.get("title") or Path(str(summary.get("workbook") or "汇总表")).stem)


def _period_label(summary: Mapping) -> str:
    if summary.get("period_label"):
        return str(summary["period_label"])
    match = re.match(r"^\d{4}-(\d{2})$", str(summary.get("period", "")))
    return f"1-{int(match.group(1))}月" if match else ""


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _percent(value) -> str:
    number = _number(value)
    return "—" if number is None else f"{number * 100:.1f}%"


def _h(value) -> str:
    return html.escape(str(value), quote=True)
