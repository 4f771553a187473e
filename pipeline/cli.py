"""The `consolidate` command: a thin layer that parses options, calls the library, and prints.

Exit codes (README): 0 every input accepted; 1 workbook written but some files or rows were
rejected; 2 usage or configuration error, nothing written; 3 another run holds the lock;
4 the mail could not be sent.
"""

from __future__ import annotations

import json
import sys

import click

from .config import DEFAULT_CONFIG
from .errors import ConfigError, ConsolidateError, LockedError, MailError

EXIT_OK, EXIT_REJECTED, EXIT_CONFIG, EXIT_LOCKED, EXIT_MAIL = 0, 1, 2, 3, 4

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="配置文件 config.toml 的路径。",
)


def _load(config_path: str):
    from .config import load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)


def _fail(message: str, code: int):
    click.echo(f"错误：{message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="consolidate")
def cli():
    """重点民生实事进度汇总：读取 inbox/ 中各单位报送的表格，校验、合并、计算，生成汇总表。

    \b
    示例：
      consolidate run                 # 按 ./config.toml 汇总本期报送
      consolidate run --json          # 同上，最后一行输出 JSON 摘要
      consolidate status              # 查看本期已报送、未报送的单位
    """


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="最后一行输出一个 JSON 对象（供脚本使用）。")
@click.option("--mail", "send_mail", is_flag=True, help="汇总后把汇总表发送给 [mail] 中的收件人。")
@click.option("--quiet", "-q", is_flag=True, help="只输出一行摘要（供 cron 定时运行记录日志）。")
def run(config_path: str, as_json: bool, send_mail: bool, quiet: bool):
    """汇总本期报送：读取 inbox/，写出 outbox/<标题>（1-M月）.xlsx。

    \b
    退出码：0 全部接收；1 已生成汇总表，但有文件或行被拒收；
            2 配置错误，未生成；3 另一次汇总正在运行；4 邮件发送失败。
    示例：
      consolidate run --config /data/民生实事/config.toml --json
    """
    from .run import run as run_pipeline

    config = _load(config_path)
    progress = _progress_bar() if sys.stderr.isatty() and not (as_json or quiet) else None
    try:
        result = run_pipeline(config, progress=progress)
    except LockedError as exc:
        _fail(str(exc), EXIT_LOCKED)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except OSError as exc:
        _fail(f"写入失败：{exc}。上一次的汇总表和历史记录保持不变。", EXIT_CONFIG)
    except Exception as exc:  # a bug of ours: say so plainly, keep the details in the log
        _fail(
            f"程序内部错误（{type(exc).__name__}: {exc}），本次未生成汇总表，上一次的结果保持不变。"
            f"详细信息已写入 {config.paths.state / 'logs'}，请联系技术支持。",
            EXIT_CONFIG,
        )
    if progress:
        click.echo("", err=True)
    exit_code = result.exit_code
    summary = dict(result.summary)
    if send_mail:
        sent = _send_report(config, force=False, dry_run=False, quiet=as_json)
        summary["mail"] = sent
        if sent.get("error"):
            exit_code = EXIT_MAIL
    if as_json:
        keys = ("workbook", "period", "accepted", "rejected", "partial", "superseded", "deferred", "skipped",
                "missing_units", "issues", "errors", "warnings", "lagging_count", "status_counts", "exit_code",
                "new_files", "unchanged", "mail")  # fmt: skip
        click.echo(json.dumps({k: summary[k] for k in keys if k in summary}, ensure_ascii=False))
    elif quiet:
        import time

        from .run import one_line_summary

        click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S')} 退出码 {exit_code}：{one_line_summary(result)}")
    else:
        _print_summary(result)
    sys.exit(exit_code)


def _print_summary(result) -> None:
    click.echo(f"本期（{result.period}）汇总完成：")
    click.echo(f"  接收 {len(result.accepted)} 份报送，拒收 {len(result.rejected)} 份，部分行被拒 {len(result.partial)} 份")
    if result.deferred:
        click.echo(f"  暂缓 {len(result.deferred)} 份（文件可能仍在复制中，下次运行再读）：{'、'.join(result.deferred)}")
    missing = "、".join(result.missing_units) if result.missing_units else "无"
    click.echo(f"  未报送单位 {len(result.missing_units)} 个：{missing}")
    click.echo(f"  滞后事项 {result.lagging} 项；问题清单 {len(result.issues)} 条")
    same = "（内容与上次相同，未重写）" if result.summary.get("unchanged") else ""
    click.echo(f"  汇总表：{result.workbook}{same}")


def _progress_bar():
    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        click.echo(f"\r读取报送文件 [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", err=True, nl=False)

    return show


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="输出 JSON。")
def status(config_path: str, as_json: bool):
    """查看本期状态：已报送的单位（文件与时间）、未报送的单位、上次运行结果。

    \b
    示例：
      consolidate status
    """
    from .status import period_status

    config = _load(config_path)
    try:
        info = period_status(config)
    except ConsolidateError as exc:
        _fail(str(exc), EXIT_CONFIG)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False))
        return
    click.echo(f"本期：{info['period']}")
    click.echo(f"已报送单位 {len(info['returned'])} 个：")
    for item in info["returned"]:
        click.echo(f"  {item['unit']}：{item['file']}（{item['received']}）")
    click.echo(f"未报送单位 {len(info['missing'])} 个：{'、'.join(info['missing']) or '无'}")
    last = info.get("last_run")
    if last:
        click.echo(f"上次运行：{last['finished_at']}，退出码 {last['exit_code']}，{last['line']}")
    else:
        click.echo("尚未运行过汇总。")


def _send_report(config, *, force: bool, dry_run: bool, quiet: bool) -> dict:
    from .operations import send_report

    try:
        outcome = send_report(config, force=force, dry_run=dry_run)
    except (MailError, ConfigError) as exc:
        click.echo(f"错误：{exc}", err=True)
        return {"error": str(exc)}
    if not quiet:
        click.echo(outcome["message"])
    return outcome


def _send_or_fail(send, config, *, force: bool, dry_run: bool) -> dict:
    """Call send(config, force=..., dry_run=...) for `mail` and `remind`; exit 2 on a ConfigError, 4 on a MailError.

    `run --mail` goes through _send_report instead: its workbook is already written, so either
    error is reported there and the run exits 4.
    """
    try:
        return send(config, force=force, dry_run=dry_run)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except MailError as exc:
        _fail(str(exc), EXIT_MAIL)


@cli.command()
@config_option
@click.option("--dry-run", is_flag=True, help="不发送，把邮件写成 outbox/<汇总表名>.eml 供检查。")
@click.option("--force", is_flag=True, help="这份汇总表已经发送过，也再发送一次。")
def mail(config_path: str, dry_run: bool, force: bool):
    """把最近一次汇总生成的汇总表发送给 config.toml [mail] 中的收件人。

    邮件正文是本期摘要（序时进度、滞后事项、未报送单位、报表问题），附件是汇总表。同一份汇总表（内容相同）只发送一次；发送失败时汇总表保留在 outbox/，再次运行本命令即可重发。密码从 [mail] password_env 指定的环境变量读取。

    \b
    退出码：0 已发送（或此前已发送过）；2 配置错误或还没有汇总结果；4 发送失败。
    示例：
      consolidate mail --dry-run      # 先生成 .eml 文件检查
      consolidate mail
    """
    from .operations import send_report

    outcome = _send_or_fail(send_report, _load(config_path), force=force, dry_run=dry_run)
    click.echo(outcome["message"])


@cli.command()
@config_option
@click.option("--dry-run", is_flag=True, help="不发送，把每封邮件写入 outbox/reminders/<单位>.eml 供检查。")
@click.option("--force", is_flag=True, help="今天已经催报过的单位，也再发送一次。")
def remind(config_path: str, dry_run: bool, force: bool):
    """催报：给未报送的单位发催报邮件（附本单位填报模板），给报表被拒收的单位发问题清单。

    依据最近一次汇总的结果（请先运行 consolidate run）。单位邮箱取自任务清单的“联系邮箱”列或 config.toml 的 [units]（两处都有时以 config.toml 为准）；没有邮箱的单位列出，不发送。每个单位每天最多发送一封。

    \b
    退出码：0 完成；2 配置错误或还没有汇总结果；4 有邮件发送失败（再次运行会补发）。
    示例：
      consolidate remind --dry-run
      consolidate remind
    """
    from .operations import send_reminders

    outcome = _send_or_fail(send_reminders, _load(config_path), force=force, dry_run=dry_run)
    click.echo(outcome["message"])
    if outcome["failed"] and not dry_run:
        _fail(f"{len(outcome['failed'])} 个单位的催报邮件发送失败，原因见上。", EXIT_MAIL)


@cli.command()
@config_option
@click.option("--unit", "units", multiple=True, help="只生成这个单位的模板（可写多次）；不写则每个单位一份。")
def templates(config_path: str, units: tuple[str, ...]):
    """生成各单位的填报模板：outbox/templates/<单位>_<期间>_填报模板.xlsx。

    模板中已填好本单位的指标编号、项目名称、指标任务、目标值、计量单位和上期累计数（锁定），单位只需填写浅黄色单元格（已完成、完成率、排名、进度阶段、完成情况、备注）和填报人、联系电话。模板内含隐藏的单位和期间信息，单位改了文件名也能识别。工作表保护未设密码。

    \b
    示例：
      consolidate templates                    # 每个单位一份
      consolidate templates --unit 区人社局    # 只生成区人社局的
    """
    from .templates import templates_for_config

    config = _load(config_path)
    try:
        written = templates_for_config(config, units)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    except OSError as exc:
        _fail(f"写入模板失败：{exc}", EXIT_CONFIG)
    click.echo(f"已生成 {len(written)} 份填报模板（{config.report.period}）：")
    for path in written:
        click.echo(f"  {path}")


def main():  # pragma: no cover - console entry
    cli()
