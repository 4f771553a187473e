"""The run's log: one file per run under state/logs/, the oldest removed beyond ``keep``."""

from __future__ import annotations

import os
import time
from pathlib import Path


class RunLog:
    def __init__(self, folder: Path, keep: int = 30):
        self.folder = folder
        self.keep = keep
        self.lines: list[str] = []
        self.started = time.time()

    def line(self, text: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {text}")

    def close(self, failed: bool = False) -> Path | None:
        """Write the log file (atomically) and drop the oldest beyond ``keep``."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
            path = self.folder / f"run-{stamp}-{os.getpid()}{'-failed' if failed else ''}.log"
            temp = path.with_name(f".{path.name}.tmp")
            temp.write_text("\n".join(self.lines) + "\n", encoding="utf-8")
            os.replace(temp, path)
            logs = sorted(self.folder.glob("run-*.log"))
            for old in logs[: max(len(logs) - self.keep, 0)]:
                old.unlink(missing_ok=True)
            return path
        except OSError:
            return None  # a full disk must not turn a finished run into a failed one
