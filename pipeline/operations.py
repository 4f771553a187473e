"""The nightly operation's mail: the workbook to the leaders, reminders (催报) to the units.

Both work from what the last run left behind (``state/last_run.json`` and the workbook it
names) and both remember what went out in the store's ``mails`` table, so that a retry after a
failure sends what is missing and nothing twice:

- the report is identified by the workbook's content (``workbook_fingerprint``): a night with
  nothing new writes the same workbook, which is not mailed again; a failed send records
  nothing, so the next ``run --mail`` or ``mail`` sends it;
- a reminder is recorded as ``remind:<unit>:<period>``; a unit gets at most one a day.

Senders hold ``state/.mail.lock`` while they check, send and record, so two commands started
at once cannot both send. Only MailError (could not send: exit 4) and ConfigError (nothing to
send, or the settings are wrong: exit 2) leave this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import smtplib
import sqlite3
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import Config, MailConfig
from .errors import ERROR, ConfigError, MailError
from .mail import build_reminder, build_report_message, password_from_env, send_message, write_eml
from .run import LAST_RUN
from .store import Store, exclusive
from .text import fold, split_names

REPORT_KIND = "report"
REMINDER_FOLDER = "reminders"  # under outbox/, for --dry-run
MAIL_LOCK = ".mail.lock"
DEFAULT_MAIL_LOCK_WAIT = 300.0  # seconds; a send is bounded by [mail] timeout per step
# Parts of an .xlsx that change on every write although the cells do not (the time of writing).
VOLATILE_PARTS = frozenset({"docProps/core.xml"})
# How send_message's MailError begins when the server took the message for some recipients.
PARTLY_REFUSED = "邮件已发给其他收件人"
_UNSAFE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


# ---------------------------------------------------------------------------------------------
# What the last run left


def load_last_run(config: Config) -> dict:
    """The summary of the last successful run (``state/last_run.json``); ConfigError without one."""
    path = config.paths.state / LAST_RUN
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"还没有可发送的汇总结果（找不到 {path}）：请先运行 consolidate run 生成汇总表。") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"无法读取上次汇总的结果 {path}（{exc}）：请重新运行 consolidate run。") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"上次汇总的结果 {path} 内容有误：请重新运行 consolidate run。")
    return summary


def latest_workbook(config: Config, summary: Mapping) -> Path:
    """The workbook the last run wrote; found in outbox/ by name if the folder was moved."""
    recorded = Path(str(summary.get("workbook") or ""))
    if recorded.name:
        for candidate in (recorded, config.paths.outbox / recorded.name):
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"上次汇总生成的汇总表 {recorded} 已不存在（可能被移动或删除）：请重新运行 consolidate run 生成汇总表后再发送。"
    )


def workbook_fingerprint(path: Path) -> str:
    """sha256 of the workbook's content, leaving out the time of writing stamped into it.

    Two runs with nothing new write the same cells but different bytes (docProps/core.xml holds
    the creation time), so the file's own sha256 would mail an unchanged report every night.
    A file that is not a zip archive is hashed whole.
    """
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(path) as book:
            for info in sorted(book.infolist(), key=lambda item: item.filename):
                if info.filename in VOLATILE_PARTS:
                    continue
                digest.update(f"{info.filename}\0{info.file_size}\0".encode())
                with book.open(info) as member:
                    for chunk in iter(lambda: member.read(1 << 20), b""):
                        digest.update(chunk)
        return digest.hexdigest()
    except zipfile.BadZipFile:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise ConfigError(f"无法读取汇总表 {path}：{exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------
# The report


def send_report(
    config: Config,
    *,
    force: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    ssl_context=None,
) -> dict:
    """Mail the latest workbook to [mail] to/cc, once per workbook content (unless ``force``).

    ``dry_run`` writes the message to outbox/<workbook stem>.eml instead. Returns a dict with
    "message" (Chinese, one line), "sent", "already_sent", "eml", "workbook", "recipients".
    """
    cfg = require_mail(config)
    summary = load_last_run(config)
    workbook = latest_workbook(config, summary)
    fingerprint = workbook_fingerprint(workbook)
    try:
        msg = build_report_message(cfg, summary, workbook)
    except MailError as exc:  # addresses or subject in config.toml, or the file vanished
        raise ConfigError(str(exc)) from None
    recipients = [*cfg.to, *cfg.cc]
    outcome = {"sent": False, "already_sent": False, "eml": None, "workbook": str(workbook),
               "recipients": recipients}  # fmt: skip

    if dry_run:
        eml = write_eml(msg, config.paths.outbox / f"{workbook.stem}.eml")
        notes = []
        previous = _last_mail(config, REPORT_KIND, fingerprint)
        if previous and not force:
            notes.append(f"这份汇总表已于 {previous['sent_at']} 发送过，正式发送时不会重复发送（除非加 --force）")
        notes += _password_note(cfg, environ)
        outcome.update(eml=str(eml), message=_sentence(
            f"未发送（--dry-run）：邮件已写入 {eml}，可用邮件程序打开检查", *notes))  # fmt: skip
        return outcome

    with mail_lock(config.paths.state), _store(config) as store:
        previous = store.last_mail(REPORT_KIND, fingerprint)
        if previous and not force:
            outcome.update(already_sent=True, message=(
                f"汇总表“{workbook.name}”已于 {previous['sent_at']} 发送给 {previous['recipients']}，"
                "内容没有变化，本次未重复发送。如需再次发送，请加 --force。"
            ))  # fmt: skip
            return outcome
        password = password_from_env(cfg, os.environ if environ is None else environ)
        try:
            send_message(msg, cfg, password, ssl_context=ssl_context)
        except MailError as exc:
            if str(exc).startswith(PARTLY_REFUSED):
                _record(store, fingerprint, REPORT_KIND, recipients)
                raise MailError(
                    f"{exc}。其他收件人已收到，已记为已发送、不会自动重发；更正地址后可用 consolidate mail --force 重发。"
                ) from exc
            raise MailError(
                f"{exc} 汇总表未发送，仍保留在 {workbook}；下次运行 consolidate run --mail 或 "
                "consolidate mail 时会重新发送。"
            ) from exc
        warning = _record(store, fingerprint, REPORT_KIND, recipients)
    cc = f"，抄送 {', '.join(cfg.cc)}" if cfg.cc else ""
    outcome.update(sent=True, message=_sentence(
        f"汇总表“{workbook.name}”已发送给 {', '.join(cfg.to)}{cc}", *warning))  # fmt: skip
    return outcome


def require_mail(config: Config) -> MailConfig:
    if config.mail is None:
        raise ConfigError(
            f"配置文件 {config.path} 中没有 [mail] 部分，无法发送邮件。请填写 host、port、security、"
            "from、to 等设置（见 README“邮件、催报与定时运行”一节）。"
        )
    return config.mail


# ---------------------------------------------------------------------------------------------
# Reminders (催报)


@dataclass
class ReminderTargets:
    """Who gets a reminder and why, worked out from the last run's summary."""

    problems: dict[str, list[dict]] = field(default_factory=dict)  # unit → its current 错误
    missing: list[str] = field(default_factory=list)  # no return and no problem to report
    unattributed: list[str] = field(default_factory=list)  # files with errors and no known unit

    @property
    def units(self) -> list[str]:
        return [*self.problems, *(unit for unit in self.missing if unit not in self.problems)]


def reminder_targets(
    summary: Mapping,
    files: list[dict],
    match_unit: Callable[[str], str | None] = lambda text: None,
) -> ReminderTargets:
    """Units with errors in their newest return, and units that returned nothing.

    ``files`` holds the period's received files (file, unit, mtime, status), one per content,
    as the store knows them. What counts is a unit's newest file ("newer" = later modification
    time, then later name, as in the run): when it was accepted whole, the errors of older files
    are history and the unit gets no mail; otherwise the errors of its newest accepted file and
    of everything received after it (all its files when none was accepted) are listed. A file
    whose unit was never identified (it could not be opened) is put to the unit its name names
    (``match_unit``), else listed as unattributed.
    """
    superseded = set(summary.get("superseded") or [])

    def unit_of(file: str, unit: str) -> str:
        return unit or match_unit(Path(file).stem) or ""

    received: dict[str, list[tuple[float, str, str]]] = {}
    for item in files:
        file = str(item.get("file") or "")
        unit = unit_of(file, str(item.get("unit") or ""))
        received.setdefault(unit, []).append((float(item.get("mtime") or 0.0), file, str(item.get("status") or "")))
    current: dict[str, set[str]] = {}
    for unit, items in received.items():
        newest = max(items)
        if newest[2] == "accepted":
            current[unit] = set()
            continue
        accepted = [mtime for mtime, _, status in items if status != "rejected"]
        since = max(accepted) if accepted else newest[0]
        current[unit] = {file for mtime, file, _ in items if mtime >= since}

    targets = ReminderTargets()
    for problem in summary.get("problems") or []:
        file = str(problem.get("file") or "")
        if problem.get("level") != ERROR or file in superseded:
            continue
        unit = unit_of(file, str(problem.get("unit") or ""))
        if not unit:
            if file not in targets.unattributed:
                targets.unattributed.append(file)
            continue
        if unit in current and file not in current[unit]:
            continue
        targets.problems.setdefault(unit, []).append(dict(problem, unit=unit))
    targets.missing = [str(unit) for unit in summary.get("missing_units") or [] if unit not in targets.problems]
    return targets


def unit_addresses(config: Config, tasks) -> dict[str, list[str]]:
    """unit → addresses: the task list's 联系邮箱, overridden by config.toml [units]."""
    addresses: dict[str, list[str]] = {}
    if tasks is not None and "email" in getattr(tasks, "columns", ()):
        for unit, cell in zip(tasks["unit"], tasks["email"], strict=True):
            for address in _split_addresses(cell):
                found = addresses.setdefault(str(unit), [])
                if address not in found:
                    found.append(address)
    for unit, emails in config.unit_emails.items():
        addresses[unit] = [a for value in emails for a in _split_addresses(value)]
    return addresses


def send_reminders(
    config: Config,
    *,
    force: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    ssl_context=None,
    today: str | None = None,
) -> dict:
    """催报: a reminder to each unit that has not returned, a correction request to each unit
    whose newest return has errors; at most one a unit a day (unless ``force``).

    ``dry_run`` writes outbox/reminders/<unit>.eml instead. Returns "message" (Chinese, several
    lines), "sent", "written", "already_sent", "no_address", "unattributed" (file names),
    "failed" ({unit: reason}), "template_note".
    """
    from .intake.normalize import TaskIndex
    from .tasks import read_task_list

    cfg = require_mail(config)
    summary = load_last_run(config)
    period = str(summary.get("period") or "")
    if period != config.report.period:
        raise ConfigError(
            f"上次汇总的是 {period} 期，而配置文件中本期为 {config.report.period}：请先运行 consolidate run，"
            "再按本期的结果催报。"
        )
    tasks = read_task_list(config.paths.tasks)
    with _store(config) as store:
        files = _period_files(store, period)
    targets = reminder_targets(summary, files, TaskIndex.from_tasks(tasks).match_unit)
    addresses = unit_addresses(config, tasks)
    workbook = Path(str(summary.get("workbook") or ""))
    reference = workbook_fingerprint(workbook) if workbook.name and workbook.is_file() else ""
    title = str(summary.get("title") or config.report.title)
    label = str(summary.get("period_label") or _period_label(period))
    today = today or time.strftime("%Y-%m-%d")
    outcome: dict = {"sent": [], "written": [], "written_units": [], "already_sent": [], "no_address": [],
                     "unattributed": targets.unattributed, "failed": {}, "warnings": [],
                     "template_note": None}  # fmt: skip
    writer, outcome["template_note"] = _template_writer()

    with _sending(config, dry_run) as store, tempfile.TemporaryDirectory(prefix="consolidate-") as scratch:
        password = None
        stopped = None
        for unit in targets.units:
            to = addresses.get(unit, [])
            if not to:
                outcome["no_address"].append(unit)
                continue
            kind = f"remind:{unit}:{period}"
            previous = store.last_mail(kind) if store is not None else _last_mail(config, kind)
            if previous and previous["sent_at"][:10] == today and not force:
                outcome["already_sent"].append(unit)
                continue
            if stopped:
                outcome["failed"][unit] = stopped
                continue
            template, note = _write_template(writer, config, unit, Path(scratch))
            if note:
                outcome["warnings"].append(note)
            try:
                msg = build_reminder(cfg, unit, to, title=title, period_label=label, template=template,
                                     problems=targets.problems.get(unit, []))  # fmt: skip
            except MailError as exc:
                outcome["failed"][unit] = str(exc)
                continue
            if dry_run:
                eml = write_eml(msg, config.paths.outbox / REMINDER_FOLDER / f"{_file_name(unit)}.eml")
                outcome["written"].append(str(eml))
                outcome["written_units"].append(unit)
                continue
            if password is None:
                password = password_from_env(cfg, os.environ if environ is None else environ) or ""
            try:
                send_message(msg, cfg, password or None, ssl_context=ssl_context)
            except MailError as exc:
                if str(exc).startswith(PARTLY_REFUSED):
                    outcome["warnings"].append(f"{unit}：{exc}")
                else:
                    outcome["failed"][unit] = str(exc)
                    if not isinstance(exc.__cause__, smtplib.SMTPRecipientsRefused):
                        stopped = "前面的催报发送失败，本单位未发送"  # the server, not this address
                    continue
            outcome["sent"].append(unit)
            outcome["warnings"] += _record(store, reference, kind, to)
    outcome["message"] = _reminder_message(outcome, targets, addresses, summary, dry_run, config)
    return outcome


def _reminder_message(outcome: dict, targets: ReminderTargets, addresses, summary, dry_run, config) -> str:
    finished = summary.get("finished_at") or "上次运行"
    lines = [f"依据 {finished} 的汇总结果（{summary.get('period_label') or summary.get('period', '')}）："]
    if not targets.units and not targets.unattributed:
        lines.append("各单位均已报送，报表中也没有被拒收的内容，无需催报。")

    def named(units) -> str:
        kind = {unit: "请更正" if unit in targets.problems else "催报" for unit in units}
        return "、".join(f"{unit}【{kind[unit]}】（{', '.join(addresses.get(unit, []))}）" for unit in units)

    if outcome["written_units"]:
        folder = config.paths.outbox / REMINDER_FOLDER
        lines.append(f"未发送（--dry-run）：{len(outcome['written_units'])} 封邮件已写入 {folder}："
                     f"{named(outcome['written_units'])}")  # fmt: skip
    if outcome["sent"]:
        lines.append(f"已发送 {len(outcome['sent'])} 封：{named(outcome['sent'])}")
    if outcome["already_sent"]:
        lines.append(
            f"今天已发送过、本次未重复发送：{'、'.join(outcome['already_sent'])}（如需再次发送，请加 --force）"
        )
    if outcome["no_address"]:
        lines.append(
            f"以下单位没有邮箱，未发送：{'、'.join(outcome['no_address'])}"
            "（请在任务清单“联系邮箱”列或 config.toml 的 [units] 中填写）"
        )
    if targets.unattributed:
        lines.append(f"以下报表有错误，但无法确定是哪个单位报送的，未发送：{'、'.join(targets.unattributed)}")
    for unit, reason in outcome["failed"].items():
        lines.append(f"{'未能生成' if dry_run else '发送失败'}：{unit}：{reason}")
    if outcome["failed"] and not dry_run:
        lines.append("发送失败的单位，下次运行 consolidate remind 时会重新发送。")
    if outcome["template_note"] and (outcome["sent"] or outcome["written_units"]):
        lines.append(outcome["template_note"])
    lines += outcome["warnings"]
    return "\n".join(lines)


def _template_writer():
    """The templates module's writer, or (None, a note) while it does not exist yet."""
    try:
        from .templates import write_unit_template
    except ImportError as exc:
        if getattr(exc, "name", None) == f"{__package__}.templates":
            return None, "注意：本版本还不能生成填报模板，催报邮件未附模板。"
        return None, f"注意：无法生成填报模板（{exc}），催报邮件未附模板。"
    return write_unit_template, None


def _write_template(writer, config: Config, unit: str, scratch: Path) -> tuple[Path | None, str | None]:
    if writer is None:
        return None, None
    folder = scratch / _file_name(unit)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(writer(config, unit, folder))
    except Exception as exc:  # a template problem must not stop the other reminders
        return None, f"注意：{unit}的填报模板生成失败（{exc}），该单位的催报邮件未附模板。"
    if not path.is_file():
        return None, f"注意：{unit}的填报模板没有生成（{path}），该单位的催报邮件未附模板。"
    return path, None


# ---------------------------------------------------------------------------------------------
# Small helpers


def mail_lock(state: Path, wait: float = DEFAULT_MAIL_LOCK_WAIT):
    """Only one sender at a time: the check 'already sent?' and the record stay together."""
    busy = MailError(f"另一个程序正在发送邮件（{state / MAIL_LOCK} 被占用超过 {wait:g} 秒），本次未发送，请稍后再试。")
    return exclusive(state / MAIL_LOCK, wait, busy)


@contextmanager
def _store(config: Config) -> Iterator[Store]:
    try:
        store = Store(config.paths.state)
    except (sqlite3.Error, OSError) as exc:
        raise MailError(f"无法打开历史记录 {config.paths.state}：{exc}") from None
    try:
        yield store
    except sqlite3.Error as exc:
        raise MailError(f"读写历史记录（发送记录）失败：{exc}") from None
    finally:
        store.close()


@contextmanager
def _sending(config: Config, dry_run: bool) -> Iterator[Store | None]:
    """The lock and the store while sending; nothing for a dry run."""
    if dry_run:
        yield None
        return
    with mail_lock(config.paths.state), _store(config) as store:
        yield store


def _last_mail(config: Config, kind: str, fingerprint: str | None = None) -> dict | None:
    if not (config.paths.state / "history.sqlite").exists():
        return None
    with _store(config) as store:
        return store.last_mail(kind, fingerprint)


def _period_files(store: Store, period: str) -> list[dict]:
    frame = store.period_files(period)
    return frame[["file", "unit", "mtime", "status"]].to_dict("records")


def _record(store: Store, fingerprint: str, kind: str, recipients: list[str]) -> list[str]:
    """Record a sent mail; a failure to record is a warning (the mail has gone)."""
    try:
        store.record_mail(fingerprint, kind, list(recipients))
    except sqlite3.Error as exc:
        return [f"注意：邮件已发出，但未能记入发送记录（{exc}），下次可能重复发送"]
    return []


def _password_note(cfg: MailConfig, environ) -> list[str]:
    try:
        password_from_env(cfg, os.environ if environ is None else environ)
    except MailError as exc:
        return [f"注意：正式发送前还需处理：{exc}"]
    return []


def _split_addresses(value) -> list[str]:
    text = fold(str(value or "")).strip()  # full-width ＠ and ， too
    if "<" in text:  # "办公室 <a@b>" keeps its space; only the list separators split it
        return [part.strip() for part in re.split(r"[、,;]+", text) if part.strip()]
    return split_names(text)


def _file_name(unit: str) -> str:
    return _UNSAFE_NAME.sub("_", unit).strip(" .") or "unit"


def _period_label(period: str) -> str:
    month = int(period[5:7]) if re.match(r"^\d{4}-\d{2}$", period) else 0
    return f"1-{month}月" if month > 1 else "1月"


def _sentence(first: str, *more: str) -> str:
    return "；".join([first, *more]) + "。"
