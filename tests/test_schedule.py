"""The nightly schedule as shipped in deploy/: the crontab line runs, the systemd units parse.

The crontab line is read from deploy/crontab.example (the README shows the same line) and run as
cron would run it: through ``sh -c``, with almost no environment (no LANG, a bare PATH), after
putting this workspace and this interpreter in place of the two example paths.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, SMALL_TASKS, Workspace, make_return
from .test_operations import GOOD_ROWS, LEADER, attachments, mail_section

DEPLOY = ROOT / "deploy"
EXAMPLE_DIR = "/data/民生实事"  # the workspace in the examples
EXAMPLE_BIN = "/data/民生实事/.venv/bin/consolidate"  # the command's full path in the examples
COMMAND = "run --mail --quiet"
CRON_ENV = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}  # what cron gives a job, give or take


def cron_line() -> tuple[list[str], str]:
    """The one active line of deploy/crontab.example: (the 5 schedule fields, the command)."""
    lines = (DEPLOY / "crontab.example").read_text(encoding="utf-8").splitlines()
    active = [
        line for line in lines
        if line.strip() and not line.lstrip().startswith("#") and not re.match(r"^\s*[A-Za-z_]\w*\s*=", line)
    ]  # fmt: skip
    assert len(active) == 1, active
    *schedule, command = active[0].split(None, 5)
    return schedule, command


def localize(text: str, workspace: Path) -> str:
    """The example paths replaced: this interpreter for the command, the workspace for the folder."""
    program = f"{shlex.quote(sys.executable)} -m pipeline"
    return text.replace(EXAMPLE_BIN, program).replace(EXAMPLE_DIR, shlex.quote(str(workspace)))


def run_as_cron(command: str, home: Path) -> subprocess.CompletedProcess:
    env = {**CRON_ENV, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=120)


def test_crontab_line_runs_the_night_in_a_workspace(tmp_path, smtp_server):
    schedule, command = cron_line()
    assert schedule == ["30", "1", "*", "*", "*"]
    assert command.startswith(f"cd {EXAMPLE_DIR} && {EXAMPLE_BIN} {COMMAND} ")
    inbox, port = smtp_server()
    ws = Workspace(
        tmp_path / "民生 实事", SMALL_TASKS, extra_config="[run]\nlog_keep = 1\n\n" + mail_section(port, cc=())
    )
    make_return(ws.inbox / "区人社局.xlsx", GOOD_ROWS)
    line = localize(command, ws.root)

    first = run_as_cron(line, tmp_path)
    assert first.returncode == 0, (first.stdout + first.stderr).decode()
    assert first.stdout == first.stderr == b""  # everything went to the log
    workbook = ws.workbook()
    cron_log = (ws.root / "cron.log").read_text(encoding="utf-8")
    mail_line, summary_line = cron_log.splitlines()
    assert mail_line == f"汇总表“{workbook.name}”已发送给 {LEADER}。"
    assert re.match(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} 退出码 0：2023-05：接收 1 份，拒收 0 份", summary_line)
    assert summary_line.endswith(f"汇总表 {workbook}")
    assert "读取报送文件" not in cron_log and "\r" not in cron_log  # no progress bar without a terminal
    [log] = (ws.state / "logs").glob("run-*.log")
    assert "2023-05：接收 1 份" in log.read_text(encoding="utf-8")
    [message] = inbox.messages
    assert attachments(message.content)[0].get_payload(decode=True) == workbook.read_bytes()

    second = run_as_cron(line, tmp_path)  # the next night, nothing new
    assert second.returncode == 0, (second.stdout + second.stderr).decode()
    assert len(inbox.messages) == 1
    lines = (ws.root / "cron.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and "未重复发送" in lines[2]
    assert len(list((ws.state / "logs").glob("run-*.log"))) == 1  # [run] log_keep = 1


def unit_file(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text(encoding="utf-8"))
    return parser


def test_systemd_units_say_what_the_readme_says():
    service, timer = unit_file("consolidate.service"), unit_file("consolidate.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert service["Service"]["WorkingDirectory"] == EXAMPLE_DIR
    assert service["Service"]["ExecStart"] == f"{EXAMPLE_BIN} {COMMAND}"  # the crontab line's command
    assert service["Service"]["User"] not in ("", "root")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 01:30:00"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "consolidate.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze 不可用（非 systemd 系统）")
def test_systemd_units_verify(tmp_path):
    for name in ("consolidate.service", "consolidate.timer"):
        text = (DEPLOY / name).read_text(encoding="utf-8")
        (tmp_path / name).write_text(localize(text, tmp_path), encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "consolidate.service"),
         str(tmp_path / "consolidate.timer")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    complaints = [line for line in result.stderr.splitlines() if "consolidate." in line or "ignoring" in line]
    assert result.returncode == 0 and complaints == [], result.stderr
