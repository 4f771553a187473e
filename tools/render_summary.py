"""Render page 1 of the shipped example's 汇总表 to a PNG (docs/汇总表示例.png).

Runs the example (config.toml, tasks.xlsx, inbox/ of the repository) in a temporary folder, so
the repository's outbox/ and state/ are not touched, converts the workbook to PDF with headless
LibreOffice and renders one page with poppler's pdftoppm:

    python tools/render_summary.py                      # → docs/汇总表示例.png
    python tools/render_summary.py --page 2 --out /tmp/第2页.png

Needs (Debian/Ubuntu): apt-get install -y --no-install-recommends libreoffice-calc poppler-utils
fonts-noto-cjk fonts-crosextra-carlito. Without a CJK font the Chinese shows as boxes; without
Carlito (metric-compatible with Calibri, the workbook's default font) the columns come out wider
than in Excel. 方正小标宋简体 and 仿宋_GB2312 are drawn with Noto Serif CJK SC as look-alikes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config  # noqa: E402
from pipeline.report.render import RenderError, pdf_pages, pdf_to_png, to_pdf  # noqa: E402
from pipeline.run import run  # noqa: E402

MAX_BYTES = 300_000


def render_example(out: Path, page: int = 1, width: int = 1400) -> Path:
    with tempfile.TemporaryDirectory(prefix="consolidate-example-") as scratch:
        folder = Path(scratch)
        shutil.copy(ROOT / "config.toml", folder / "config.toml")
        shutil.copy(ROOT / "tasks.xlsx", folder / "tasks.xlsx")
        shutil.copytree(ROOT / "inbox", folder / "inbox")
        result = run(load_config(folder / "config.toml"))
        pdf = to_pdf(result.workbook, folder / "pdf")
        if page > pdf_pages(pdf):
            raise RenderError(f"PDF 只有 {pdf_pages(pdf)} 页")
        return pdf_to_png(pdf, out, page=page, width=width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "汇总表示例.png")
    parser.add_argument("--page", type=int, default=1)
    parser.add_argument("--width", type=int, default=1400, help="PNG width in pixels")
    args = parser.parse_args(argv)
    try:
        png = render_example(args.out, args.page, args.width)
    except RenderError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    size = png.stat().st_size
    sys.stdout.write(f"{png} ({size // 1024} KB)\n")
    if size > MAX_BYTES:
        sys.stderr.write(f"注意：图片超过 {MAX_BYTES // 1000} KB，请用 --width 调小。\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
