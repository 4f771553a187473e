"""config.toml → frozen dataclasses, read once per command.

Every path is resolved against the folder that holds the config file. Defaults are the named
constants below; an unknown key is an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

DEFAULT_CONFIG = "config.toml"
DEFAULT_SEVERE_LAG_POINTS = 20.0
DEFAULT_RATE_TOLERANCE_POINTS = 0.5
DEFAULT_TITLE_FONT = "方正小标宋简体"
DEFAULT_BODY_FONT = "仿宋_GB2312"
DEFAULT_MAIL_SUBJECT = "{title}（{period_label}）"
DEFAULT_SMTP_TIMEOUT = 30.0
DEFAULT_MAX_PART_MB = 100
DEFAULT_MAX_TOTAL_MB = 300
DEFAULT_MAX_RATIO = 100
DEFAULT_MAX_ROWS = 100_000
DEFAULT_PARSE_TIMEOUT = 60.0
DEFAULT_WORKER_MEMORY_MB = 1024
DEFAULT_SETTLE_SECONDS = 60.0
DEFAULT_LOCK_WAIT = 0.0
DEFAULT_LOG_KEEP = 30


def _usable_cpus() -> int:
    """The CPUs this process may run on (its taskset or cpuset, not the machine's count; a
    container's CPU quota is not seen)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# Two parse workers where two CPUs are usable: each worker inspects, parses and normalizes its
# files, and the parent only collects. Measured at 3,000 returns on the 2-core box (see
# benchmarks/README.md): as fast as one worker with the parent normalizing when the second core
# is idle, faster when it is busy, and one worker alone is ~2 s slower. On one CPU a second
# worker would only compete with the first and double the pool's worst-case memory.
DEFAULT_WORKERS = min(2, _usable_cpus())

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class ReportConfig:
    title: str
    period: str  # "YYYY-MM"
    severe_lag_points: float = DEFAULT_SEVERE_LAG_POINTS
    rate_tolerance_points: float = DEFAULT_RATE_TOLERANCE_POINTS
    title_font: str = DEFAULT_TITLE_FONT
    body_font: str = DEFAULT_BODY_FONT
    footnote: str = ""  # 汇总表's note under the table; built from the levels when empty

    @property
    def year(self) -> int:
        return int(self.period[:4])

    @property
    def month(self) -> int:
        return int(self.period[5:7])


@dataclass(frozen=True)
class PathsConfig:
    root: Path
    inbox: Path
    outbox: Path
    tasks: Path
    state: Path


@dataclass(frozen=True)
class MailConfig:
    host: str
    port: int
    security: str  # "ssl", "starttls" or "none"
    sender: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    username: str = ""
    password_env: str = ""
    subject: str = DEFAULT_MAIL_SUBJECT
    timeout: float = DEFAULT_SMTP_TIMEOUT


@dataclass(frozen=True)
class LimitsConfig:
    """Defences against hostile or broken files (see pipeline.intake.safety)."""

    max_part_mb: float = DEFAULT_MAX_PART_MB
    max_total_mb: float = DEFAULT_MAX_TOTAL_MB
    max_ratio: float = DEFAULT_MAX_RATIO
    max_rows: int = DEFAULT_MAX_ROWS
    parse_timeout: float = DEFAULT_PARSE_TIMEOUT
    worker_memory_mb: int = DEFAULT_WORKER_MEMORY_MB
    workers: int = DEFAULT_WORKERS
    settle_seconds: float = DEFAULT_SETTLE_SECONDS


@dataclass(frozen=True)
class RunConfig:
    lock_wait: float = DEFAULT_LOCK_WAIT
    log_keep: int = DEFAULT_LOG_KEEP


@dataclass(frozen=True)
class Config:
    path: Path
    report: ReportConfig
    paths: PathsConfig
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    run: RunConfig = field(default_factory=RunConfig)
    mail: MailConfig | None = None
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unit_emails: dict[str, tuple[str, ...]] = field(default_factory=dict)


def load_config(path: str | Path) -> Config:
    """Read and check config.toml; raise ConfigError with a Chinese message on any problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"找不到配置文件 {path}，请用 --config 指定 config.toml 的位置。") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"无法读取配置文件 {path}：{exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"配置文件 {path} 格式有误：{exc}") from None
    return parse_config(raw, path.resolve())


def parse_config(raw: dict, path: Path) -> Config:
    _only_keys(raw, {"report", "paths", "mail", "limits", "run", "aliases", "units"}, "")
    root = path.parent
    report = _report(_table(raw, "report", required=True))
    paths = _paths(_table(raw, "paths"), root)
    limits = _build(LimitsConfig, _table(raw, "limits"), "limits")
    run = _build(RunConfig, _table(raw, "run"), "run")
    mail = _mail(raw["mail"]) if "mail" in raw else None
    aliases = {
        str(key): tuple(_str_list(value, f"aliases.{key}"))
        for key, value in _table(raw, "aliases").items()
    }
    unit_emails = {}
    for unit, value in _table(raw, "units").items():
        emails = value.get("email") if isinstance(value, dict) else value
        unit_emails[str(unit)] = tuple(_str_list(emails, f"units.{unit}"))
    return Config(path, report, paths, limits, run, mail, aliases, unit_emails)


def _report(table: dict) -> ReportConfig:
    for key in ("title", "period"):
        if not isinstance(table.get(key), str) or not table[key].strip():
            raise ConfigError(f"配置文件 [report] 缺少 {key}，例如 period = \"2023-05\"。")
    match = _PERIOD.match(table["period"].strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ConfigError(
            f"配置文件 [report] period = \"{table['period']}\" 格式不对，应为 \"YYYY-MM\"，例如 \"2023-05\"。"
        )
    return _build(ReportConfig, {**table, "period": table["period"].strip()}, "report")


def _paths(table: dict, root: Path) -> PathsConfig:
    _only_keys(table, {"inbox", "outbox", "tasks", "state"}, "paths")
    defaults = {"inbox": "inbox", "outbox": "outbox", "tasks": "tasks.xlsx", "state": "state"}
    resolved = {}
    for key, default in defaults.items():
        value = table.get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"配置文件 [paths] {key} 应为文字路径。")
        resolved[key] = (root / value).resolve()
    return PathsConfig(root=root, **resolved)


def _mail(table: dict) -> MailConfig:
    if not isinstance(table, dict):
        raise ConfigError("配置文件 [mail] 应为一个表。")
    values = dict(table)
    if "from" in values:
        values["sender"] = values.pop("from")
    for key in ("host", "sender", "to"):
        if key not in values:
            name = "from" if key == "sender" else key
            raise ConfigError(f"配置文件 [mail] 缺少 {name}。")
    values["to"] = tuple(_str_list(values["to"], "mail.to"))
    values["cc"] = tuple(_str_list(values.get("cc", []), "mail.cc"))
    values.setdefault("security", "ssl")
    values.setdefault("port", {"ssl": 465, "starttls": 587}.get(values["security"], 25))
    if values["security"] not in ("ssl", "starttls", "none"):
        raise ConfigError('配置文件 [mail] security 只能是 "ssl"、"starttls" 或 "none"。')
    if "password" in values:
        raise ConfigError(
            "配置文件 [mail] 不能写密码；请把密码放在环境变量中，并用 password_env 写出变量名。"
        )
    return _build(MailConfig, values, "mail")


def _build(cls, table: dict, section: str):
    known = set(cls.__dataclass_fields__)
    _only_keys(table, known, section)
    try:
        values = {}
        for key, value in table.items():
            expected = cls.__dataclass_fields__[key].type
            if expected in ("float", "int") and not isinstance(value, (int, float)):
                raise TypeError(key)
            values[key] = value
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"配置文件 [{section}] 的取值有误：{exc}") from None


def _table(raw: dict, key: str, required: bool = False) -> dict:
    if key not in raw:
        if required:
            raise ConfigError(f"配置文件缺少 [{key}] 部分。")
        return {}
    if not isinstance(raw[key], dict):
        raise ConfigError(f"配置文件 [{key}] 应为一个表。")
    return raw[key]


def _only_keys(table: dict, known: set[str], section: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        where = f"[{section}] 中" if section else "中"
        raise ConfigError(
            f"配置文件{where}有不认识的设置：{'、'.join(unknown)}（可用：{'、'.join(sorted(known))}）。"
        )


def _str_list(value, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise ConfigError(f"配置文件 {name} 应为文字或文字列表。")
