"""The history: an SQLite file and an archive of every received file, under ``state/``.

Every received file is archived by content hash before it is parsed, so nothing that arrives
is ever lost; what parsing it produced (unit, period, accepted rows, issues) is recorded once
per hash, so a file seen before is not processed again. The master table of a period is built
from here, not from the inbox: a unit that returned last night and not tonight keeps its values.
All writes of a run happen in one transaction (see run.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from schemas import RETURN_COLUMNS

from .errors import ConsolidateError, Issue, LockedError

DB_NAME = "history.sqlite"
LOCK_NAME = ".run.lock"
INTAKE_PREFIX = ".intake-"
ROW_COLUMNS = [c for c in RETURN_COLUMNS if c != "file"]
# A received file up to this size is read whole: hashed and copied from one buffer.
IN_MEMORY_BYTES = 16 << 20

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    archive TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    -- one received file: its bytes (sha256) under its name; the unit may come from the name,
    -- so the same bytes under another name are another return
    sha256 TEXT NOT NULL REFERENCES files(sha256),
    name TEXT NOT NULL,
    mtime REAL NOT NULL,
    parser_version INTEGER NOT NULL,
    unit TEXT NOT NULL,
    period TEXT NOT NULL,
    status TEXT NOT NULL,          -- accepted, partial, rejected
    sheet TEXT NOT NULL,
    notes TEXT NOT NULL,           -- JSON list, for the log
    processed_at TEXT NOT NULL,
    PRIMARY KEY (sha256, name)
);
CREATE TABLE IF NOT EXISTS rows (
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    {", ".join(f'"{c}"' for c in ROW_COLUMNS)},
    FOREIGN KEY (sha256, name) REFERENCES results(sha256, name)
);
CREATE INDEX IF NOT EXISTS rows_by_period ON rows(period, unit);
-- record_result deletes by return, and deleting from results checks both foreign keys: without
-- these, every file recorded scans every row stored (quadratic: 11 s for 3,000 returns).
CREATE INDEX IF NOT EXISTS rows_by_return ON rows(sha256, name);
CREATE TABLE IF NOT EXISTS issues (
    sha256 TEXT NOT NULL,
    name TEXT NOT NULL,
    unit TEXT NOT NULL, location TEXT NOT NULL, level TEXT NOT NULL, code TEXT NOT NULL, message TEXT NOT NULL,
    FOREIGN KEY (sha256, name) REFERENCES results(sha256, name)
);
CREATE INDEX IF NOT EXISTS issues_by_return ON issues(sha256, name);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    period TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mails (
    workbook_sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    recipients TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
"""


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` as the whole of ``path`` (one write, no Python file object)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


@contextmanager
def exclusive(path: Path, wait: float, busy: ConsolidateError):
    """Hold an exclusive lock on ``path``; raise ``busy`` when another process keeps it past ``wait`` s."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")
    except OSError as exc:
        raise type(busy)(f"无法打开锁文件 {path}：{exc.strerror or exc}") from None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy from None
                time.sleep(0.2)
        yield
    finally:
        handle.close()


def run_lock(state: Path, wait: float = 0.0):
    """Hold the state lock for the duration of a run; LockedError if another run holds it."""
    busy = LockedError(
        "另一次汇总正在运行（state 目录已被锁定），本次未执行。请稍后再试，"
        "或在 config.toml 的 [run] 中设置 lock_wait（秒）让后来的运行等待。"
    )
    return exclusive(state / LOCK_NAME, wait, busy)


class Store:
    """The SQLite history; one connection per command."""

    def __init__(self, state: Path):
        self.state = state
        self.archive_dir = state / "archive"
        self._archive_ready = False
        state.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(state / DB_NAME, isolation_level=None, timeout=30)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self):
        """One transaction: everything a run records lands together or not at all."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- the archive -----------------------------------------------------------------------

    def take_in(self, source: Path, number: int) -> tuple[str, int, Path | None]:
        """Copy a received file into the archive's intake, hashing the bytes as they are copied.

        Returns (sha256, size, temporary path): the hash is of exactly the bytes archived, even
        if the sender's copy changes meanwhile. ``publish`` then makes the copies durable. The
        temporary path is None when the archive already holds these bytes under this suffix
        (a night with nothing new then writes nothing).
        """
        if not self._archive_ready:
            self.archive_dir.mkdir(parents=True, exist_ok=True)
            self._archive_ready = True
        temp = self.archive_dir / f"{INTAKE_PREFIX}{os.getpid()}-{number}.tmp"
        with open(source, "rb", buffering=0) as src:
            if os.fstat(src.fileno()).st_size <= IN_MEMORY_BYTES:
                # Returns are small: read whole (to the end, should it have grown), then the hash
                # and the copy come from that one buffer.
                data = src.readall()
                sha256 = hashlib.sha256(data).hexdigest()
                if self.archive_path(sha256, source.suffix).exists():
                    return sha256, len(data), None
                _write_new(temp, data)
                return sha256, len(data), temp
            digest, size = hashlib.sha256(), 0  # a large file: streamed, never held whole
            with open(temp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
        return digest.hexdigest(), size, temp

    def archive_path(self, sha256: str, suffix: str) -> Path:
        """Where the archive keeps these bytes: content-addressed, under the received suffix."""
        return self.archive_dir / sha256[:2] / f"{sha256}{suffix.lower()}"

    def publish(self, taken: list[tuple[str, Path | None, str]]) -> list[Path]:
        """Move intake copies (sha256, temporary path, suffix) to their content-addressed names.

        One sync for the whole batch rather than an fsync per file (3,000 fsyncs cost seconds);
        a crash before the renames leaves only intake files, swept at the next start. Bytes the
        archive already held (no temporary path) need neither.
        """
        if any(temp is not None for _, temp, _ in taken):
            os.sync()
        paths, folders = [], set()
        for sha256, temp, suffix in taken:
            target = self.archive_path(sha256, suffix)
            paths.append(target)
            if temp is None:
                continue  # already archived
            if target.exists():
                temp.unlink(missing_ok=True)  # the same bytes came twice in this batch
                continue
            if target.parent not in folders:
                target.parent.mkdir(parents=True, exist_ok=True)
                folders.add(target.parent)
            os.replace(temp, target)
        return paths

    def sweep_intake(self) -> int:
        """Remove intake copies left by a killed run; their sources are still in the inbox."""
        count = 0
        for stray in self.archive_dir.glob(f"{INTAKE_PREFIX}*"):
            stray.unlink(missing_ok=True)
            count += 1
        return count

    # -- what was processed ----------------------------------------------------------------

    def known_results(self, parser_version: int) -> set[tuple[str, str]]:
        """(sha256, name) of the returns already processed by this parser version."""
        rows = self.conn.execute("SELECT sha256, name FROM results WHERE parser_version = ?", (parser_version,))
        return set(rows)

    def record_file(self, sha256: str, size: int, archive: Path) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO files(sha256, size, archive, received_at) VALUES (?, ?, ?, ?)",
            (sha256, size, str(archive.relative_to(self.state)), now_text()),
        )

    def record_result(
        self, sha256: str, name: str, mtime: float, version: int, ret, rows: list[tuple], issues: list[Issue]
    ) -> None:
        """Replace what is known of one received file with this parse's result.

        ``rows`` are the file's accepted rows as ``row_records`` gives them.
        """
        if ret.rejected or not rows:
            status = "rejected"
        else:
            status = "partial" if any(i.level == "错误" for i in issues) else "accepted"
        key = (sha256, name)
        for table in ("rows", "issues", "results"):
            self.conn.execute(f"DELETE FROM {table} WHERE sha256 = ? AND name = ?", key)
        self.conn.execute(
            "INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, mtime, version, ret.unit, ret.period, status, ret.sheet,
             json.dumps(ret.notes, ensure_ascii=False), now_text()),
        )  # fmt: skip
        if rows:
            placeholders = ", ".join("?" * (len(ROW_COLUMNS) + 2))
            self.conn.executemany(f"INSERT INTO rows VALUES ({placeholders})", ((*key, *record) for record in rows))
        self.conn.executemany(
            "INSERT INTO issues VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((*key, i.unit, i.location, i.level, i.code, i.message) for i in issues),
        )

    @staticmethod
    def row_records(accepted: pd.DataFrame) -> dict[str, list[tuple]]:
        """Accepted rows by file, as tuples in ROW_COLUMNS order with NaN as None: converted once
        per run, not once per file (each per-file pandas call costs a millisecond)."""
        values = accepted[ROW_COLUMNS].astype(object).where(accepted[ROW_COLUMNS].notna(), None)
        grouped: dict[str, list[tuple]] = defaultdict(list)
        for file, record in zip(accepted["file"], values.itertuples(index=False, name=None), strict=True):
            grouped[file].append(record)
        return grouped

    # -- what a period holds ---------------------------------------------------------------

    def period_files(self, period: str) -> pd.DataFrame:
        """Returns of a period: sha256, file (name), mtime, unit, status, sheet, notes, received."""
        query = """
            SELECT r.sha256, r.name AS file, r.mtime, r.unit, r.status, r.sheet, r.notes, f.received_at AS received
            FROM results r JOIN files f ON f.sha256 = r.sha256
            WHERE r.period = ?
            ORDER BY r.mtime, r.name
        """
        return pd.read_sql_query(query, self.conn, params=(period,))

    def period_rows(self, period: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Accepted rows of a period, with the file (sha256 and name) they came from.

        ``columns`` (of ROW_COLUMNS, in that order) narrows what is fetched: turning each stored
        value into a Python object is most of the cost, about a second for 70k rows of them all.
        """
        wanted = ROW_COLUMNS if columns is None else [c for c in ROW_COLUMNS if c in set(columns)]
        cols = ", ".join(f'"{c}"' for c in wanted)
        query = f"SELECT sha256, name AS file, {cols} FROM rows WHERE period = ?"
        frame = pd.read_sql_query(query, self.conn, params=(period,))
        for column in ("completed", "target_reported", "reported_rate", "reported_rank", "reported_rank_of"):
            if column in frame:
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        return frame

    def period_issues(self, period: str) -> list[tuple[str, Issue]]:
        """(sha256, issue) for every issue recorded for the period's files."""
        query = """
            SELECT i.sha256, i.name, i.unit, i.location, i.level, i.code, i.message
            FROM issues i JOIN results r ON r.sha256 = i.sha256 AND r.name = i.name
            WHERE r.period = ?
            ORDER BY r.mtime, r.name
        """
        return [(row[0], Issue(*row[1:])) for row in self.conn.execute(query, (period,))]

    # -- runs ------------------------------------------------------------------------------

    def record_run(self, started: str, period: str, exit_code: int, summary: dict) -> None:
        self.conn.execute(
            "INSERT INTO runs(started_at, finished_at, period, exit_code, summary) VALUES (?, ?, ?, ?, ?)",
            (started, now_text(), period, exit_code, json.dumps(summary, ensure_ascii=False)),
        )

    def last_run(self) -> dict | None:
        row = self.conn.execute(
            "SELECT started_at, finished_at, period, exit_code, summary FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {"started_at": row[0], "finished_at": row[1], "period": row[2], "exit_code": row[3],
                "summary": json.loads(row[4])}  # fmt: skip

    # -- mail ------------------------------------------------------------------------------

    def last_mail(self, kind: str, workbook_sha256: str | None = None) -> dict | None:
        """The latest mail of this kind (for this workbook when given): recipients and sent_at."""
        query = "SELECT workbook_sha256, recipients, sent_at FROM mails WHERE kind = ?"
        params: tuple = (kind,)
        if workbook_sha256 is not None:
            query += " AND workbook_sha256 = ?"
            params += (workbook_sha256,)
        row = self.conn.execute(query + " ORDER BY rowid DESC LIMIT 1", params).fetchone()
        if row is None:
            return None
        return {"workbook_sha256": row[0], "recipients": row[1], "sent_at": row[2]}

    def record_mail(self, workbook_sha256: str, kind: str, recipients: list[str]) -> None:
        self.conn.execute(
            "INSERT INTO mails VALUES (?, ?, ?, ?)", (workbook_sha256, kind, ", ".join(recipients), now_text())
        )
