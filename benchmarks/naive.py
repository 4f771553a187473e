"""The baseline: what a coordinator's analyst writes in an afternoon with pandas.

Reads every return with ``pandas.read_excel(header=2)`` (the template's header is on row 3),
takes the unit from the file name, stacks them, recomputes
完成率, ranks each indicator's units, and writes one sheet with ``DataFrame.to_excel``. No checks,
no history, no provenance, no formatting: the floor that ``consolidate run`` is compared with.

The engine is named: openpyxl is pandas 3.1's default for .xlsx (it warns that the default
will become calamine), so the baseline stays what an analyst gets today when pandas changes.
``--engine calamine`` gives the faster baseline the analyst will get then.

    python benchmarks/naive.py benchmarks/work/returns-300/inbox /tmp/naive.xlsx [--engine calamine]
"""

import glob
import os
import sys

import pandas as pd


def main(inbox: str, output: str, engine: str = "openpyxl") -> None:
    frames = []
    for path in sorted(glob.glob(os.path.join(inbox, "*.xlsx"))):
        frame = pd.read_excel(path, header=2, engine=engine)
        frame["填报单位"] = os.path.splitext(os.path.basename(path))[0]
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table = table[table["指标编号"].notna() & ~table["指标编号"].astype(str).str.startswith("填报人")]
    table["已完成"] = pd.to_numeric(table["已完成"], errors="coerce")
    table["目标值"] = pd.to_numeric(table["目标值"], errors="coerce")
    table["完成率"] = table["已完成"] / table["目标值"]
    table["排名"] = table.groupby("指标编号")["完成率"].rank(method="min", ascending=False)
    table = table.sort_values(["指标编号", "排名"], kind="stable")
    table.to_excel(output, sheet_name="汇总", index=False)
    print(f"{len(frames)} files, {len(table)} rows -> {output}")


if __name__ == "__main__":
    engine = sys.argv[sys.argv.index("--engine") + 1] if "--engine" in sys.argv else "openpyxl"
    main(sys.argv[1], sys.argv[2], engine)
