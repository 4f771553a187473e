"""Fixture factories: a workspace (config, task list, inbox) and returns built in tmp_path;
real SMTP servers on 127.0.0.1 (helpers in smtp_server.py)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import ssl
import threading
import time
from pathlib import Path

import openpyxl
import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner

from pipeline.cli import cli

from .smtp_server import Inbox, free_port, write_certificate

ROOT = Path(__file__).resolve().parent.parent

TASK_HEADER = ["指标编号", "序号", "级别", "项目名称", "指标任务", "目标值", "计量单位", "指标类型", "牵头领导", "牵头责任单位", "填报单位"]
TEMPLATE_HEADER = ["指标编号", "指标任务", "目标值", "已完成", "完成率", "排名", "完成情况", "备注"]

# A small district task list: three units, one milestone task.
SMALL_TASKS = [
    ["1-1", 1, "省级", "促进就业", "城镇新增就业8150人", 8150, "人", "数量", "亓磊", "区人社局", ""],
    ["1-2", 1, "省级", "促进就业", "职业技能培训1200人次", 1200, "人次", "数量", "亓磊", "区人社局", ""],
    ["2-1", 2, "省级", "残疾人关爱", "康复救助残疾儿童181人", 181, "人", "数量", "张哲君", "区残联", ""],
    ["3-1", 3, "区级", "图书馆改造", "实施区图书馆数字化改造", None, "", "节点", "邓建华", "区文旅广体局", ""],
]


class Workspace:
    """A coordinator's folder: config.toml, the task list, inbox/, outbox/, state/."""

    def __init__(self, root: Path, tasks: list[list], period: str = "2023-05", extra_config: str = ""):
        self.root = root
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        self.state = root / "state"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.write_tasks(tasks)
        self.write_config(period, extra_config)

    def write_tasks(self, tasks: list[list]) -> None:
        with open(self.root / "tasks.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(TASK_HEADER)
            writer.writerows(["" if v is None else v for v in row] for row in tasks)

    def write_config(self, period: str, extra: str = "") -> None:
        (self.root / "config.toml").write_text(
            f'[report]\ntitle = "测试汇总表"\nperiod = "{period}"\n\n'
            '[paths]\ninbox = "inbox"\noutbox = "outbox"\ntasks = "tasks.csv"\nstate = "state"\n\n'
            f"[limits]\nsettle_seconds = 0\n{extra}\n",
            encoding="utf-8",
        )

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    def workbook(self) -> Path:
        """The newest consolidated workbook in outbox/."""
        books = sorted((p for p in self.outbox.glob("*.xlsx") if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
        assert books, "no workbook in outbox"
        return books[-1]

    def sheet_rows(self, sheet: str) -> list[tuple]:
        book = openpyxl.load_workbook(self.workbook(), read_only=True)
        try:
            return [tuple(row) for row in book[sheet].iter_rows(values_only=True)]
        finally:
            book.close()

    def detail(self) -> list[dict]:
        """明细 as a list of dicts keyed by its header."""
        rows = self.sheet_rows("明细")
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]

    def issues(self) -> list[dict]:
        rows = self.sheet_rows("问题清单")
        return [dict(zip(rows[0], row, strict=True)) for row in rows[1:] if row[0] != "本期未发现问题。"]


def make_return(
    path: Path,
    rows: list[list],
    *,
    header: list[str] = TEMPLATE_HEADER,
    title_rows: list[list] | None = None,
    sheet: str = "Sheet1",
    notes: list[str] = (),
    mtime: float | None = None,
) -> Path:
    """A returned workbook: optional rows above the header, the header, the data, notes below."""
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = sheet
    for row in title_rows or []:
        ws.append(row)
    ws.append(header)
    for row in rows:
        ws.append(row)
    ws.append([])
    for note in notes:
        ws.append([note])
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws", SMALL_TASKS)


def invoke(config, *args):
    """``consolidate <args> --config <config>`` through click's CliRunner; a crash fails the test."""
    result = CliRunner().invoke(cli, [*args, "--config", str(config)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def last_json(output: str) -> dict:
    """The JSON object ``run --json`` prints on its last line."""
    return json.loads(output.strip().splitlines()[-1])


def copy_example(target: Path) -> Path:
    """Copy the shipped example (config.toml, tasks.xlsx, inbox/) into the folder ``target``,
    its returns dated an hour ago (settled, as a night's run finds them)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config.toml", target / "config.toml")
    shutil.copy(ROOT / "tasks.xlsx", target / "tasks.xlsx")
    shutil.copytree(ROOT / "inbox", target / "inbox")
    old = time.time() - 3600
    for path in (target / "inbox").iterdir():
        os.utime(path, (old, old))
    return target


@pytest.fixture
def example(tmp_path) -> Path:
    """A copy of the shipped example in tmp_path."""
    return copy_example(tmp_path / "example")


# ---------------------------------------------------------------------------------------------
# SMTP servers on 127.0.0.1


@pytest.fixture
def smtp_server():
    """Start aiosmtpd servers: start(port=None, **controller_kwargs) → (inbox, port).

    Without a port, a free one is taken. Every server is stopped afterwards.
    """
    started: list[Controller] = []

    def start(port: int | None = None, **kwargs) -> tuple[Inbox, int]:
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port(), **kwargs)
        controller.start()
        started.append(controller)
        return inbox, controller.port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        write_certificate(cert, key)
    except ImportError:
        pytest.skip("需要 openssl 命令或 cryptography 包来生成测试用的自签名证书，两者都没有")
    return cert, key


@pytest.fixture
def server_tls(certificate) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def client_tls(certificate) -> ssl.SSLContext:
    """Verifies the server for real (hostname included), trusting only the test certificate."""
    return ssl.create_default_context(cafile=str(certificate[0]))


@pytest.fixture
def silent_server():
    """A port where a server accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.05)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=2)
    for connection in accepted:
        connection.close()
    listener.close()
