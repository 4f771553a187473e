"""Render a workbook the way a printer would: LibreOffice → PDF, poppler → PNG.

Used by the check that the workbook opens cleanly (tests) and by tools/render_summary.py (the
picture in docs/). Both programs are optional system tools; ``RenderError`` says which one is
missing and how to install it. The government fonts (方正小标宋简体, 仿宋_GB2312) are rarely
installed on Linux: a private fontconfig file maps them to Noto CJK (fonts-noto-cjk) so the
picture shows Chinese glyphs of the right kind instead of boxes, without touching the system.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = (
    "apt-get install -y --no-install-recommends libreoffice-calc poppler-utils fonts-noto-cjk fonts-crosextra-carlito"
)
# Font the workbook names → installed look-alikes, best first.
FONT_ALIASES = {
    "方正小标宋简体": ("Noto Serif CJK SC", "AR PL UMing CN", "WenQuanYi Zen Hei"),
    "仿宋_GB2312": ("Noto Serif CJK SC", "AR PL UMing CN", "WenQuanYi Zen Hei"),
    "仿宋": ("Noto Serif CJK SC", "AR PL UMing CN", "WenQuanYi Zen Hei"),
    "宋体": ("Noto Serif CJK SC", "AR PL UMing CN", "WenQuanYi Zen Hei"),
    "黑体": ("Noto Sans CJK SC", "WenQuanYi Zen Hei"),
    "Calibri": ("Carlito",),  # metric-compatible: column widths come out as in Excel
}


class RenderError(Exception):
    """LibreOffice or poppler is missing, or failed on this file; the message says which."""


def find_soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def fontconfig_file(folder: Path) -> Path:
    """A fontconfig file: the system's, plus the aliases above."""
    aliases = "\n".join(
        f'  <alias binding="same"><family>{name}</family><prefer>'
        + "".join(f"<family>{family}</family>" for family in families)
        + "</prefer></alias>"
        for name, families in FONT_ALIASES.items()
    )
    path = folder / "fonts.conf"
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        '  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n'
        f"{aliases}\n</fontconfig>\n",
        encoding="utf-8",
    )
    return path


def to_pdf(workbook: Path, outdir: Path, *, timeout: float = 180) -> Path:
    """Convert with headless LibreOffice (a private profile, so a running office is not disturbed)."""
    soffice = find_soffice()
    if soffice is None:
        raise RenderError(f"没有找到 LibreOffice（soffice）。安装：{INSTALL_HINT}")
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consolidate-lo-") as profile:
        env = dict(os.environ, FONTCONFIG_FILE=str(fontconfig_file(Path(profile))))
        command = [
            soffice, f"-env:UserInstallation={Path(profile).as_uri()}", "--headless", "--norestore",
            "--convert-to", "pdf", "--outdir", str(outdir), str(workbook),
        ]  # fmt: skip
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise RenderError(f"LibreOffice 转换超时（{timeout:g} 秒）：{workbook.name}") from None
    pdf = outdir / (workbook.stem + ".pdf")
    if done.returncode != 0 or not pdf.exists():
        raise RenderError(f"LibreOffice 无法转换 {workbook.name}：{(done.stderr or done.stdout).strip()[:500]}")
    return pdf


def pdf_pages(pdf: Path) -> int:
    """Pages of a PDF, by its page objects (no PDF library needed)."""
    data = pdf.read_bytes()
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", data))


def pdf_to_png(pdf: Path, png: Path, *, page: int = 1, width: int = 1600) -> Path:
    """One page of a PDF as a PNG ``width`` pixels wide (poppler's pdftoppm)."""
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        raise RenderError(f"没有找到 pdftoppm（poppler-utils）。安装：{INSTALL_HINT}")
    png.parent.mkdir(parents=True, exist_ok=True)
    stem = png.with_suffix("")
    command = [pdftoppm, "-png", "-f", str(page), "-l", str(page), "-singlefile",
               "-scale-to-x", str(width), "-scale-to-y", "-1", str(pdf), str(stem)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RenderError(f"pdftoppm 失败：{done.stderr.strip()[:500]}")
    written = stem.with_suffix(".png")
    if written != png:
        os.replace(written, png)
    return png
