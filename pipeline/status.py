"""What the store holds for the current period (the `status` command)."""

from __future__ import annotations

from .config import Config
from .store import Store
from .tasks import read_task_list, task_units


def period_status(config: Config) -> dict:
    period = config.report.period
    tasks = read_task_list(config.paths.tasks)
    units = task_units(tasks)
    returned = []
    last_run = None
    if (config.paths.state / "history.sqlite").exists():
        store = Store(config.paths.state)
        try:
            files = store.period_files(period)
            accepted = files[files["status"] != "rejected"].sort_values(["mtime", "file"])
            latest = accepted.groupby("unit", sort=False).tail(1)
            for item in latest.itertuples(index=False):
                if item.unit in units:
                    returned.append({"unit": item.unit, "file": item.file, "received": item.received})
            last = store.last_run()
        finally:
            store.close()
        if last:
            summary = last["summary"]
            last_run = {
                "finished_at": last["finished_at"],
                "exit_code": last["exit_code"],
                "line": f"问题 {summary.get('issues', 0)} 条，滞后 {summary.get('lagging_count', 0)} 项",
                "workbook": summary.get("workbook", ""),
            }
    done = {item["unit"] for item in returned}
    returned.sort(key=lambda item: units.index(item["unit"]))
    return {
        "period": period,
        "returned": returned,
        "missing": [unit for unit in units if unit not in done],
        "last_run": last_run,
    }
