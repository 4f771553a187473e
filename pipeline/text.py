"""Pure text helpers: folding what people type into what the pipeline compares.

Returned sheets are typed by hand in WPS and Excel: full-width digits and brackets, line breaks
inside headers, numbers with units and 万, percentages as "43%" or 43 or 0.43.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache

# What people type into a number cell to mean "nothing to report".
NOT_REPORTED = frozenset({"", "-", "--", "—", "——", "－", "/", "\\", "无", "暂无", "空", "n/a", "na", "/ "})

_BRACKETED = re.compile(r"[(\[【{<][^()\[\]【】{}<>]*[)\]】}>]")
_PUNCT = re.compile(r"[\s,，、。.;；:：!！?？\"'“”‘’`·•()\[\]{}<>【】《》「」『』…_\-—~～/\\|]+")
_NUMBER = re.compile(
    r"^(?P<sign>[-+])?(?P<num>\d+(?:\.\d+)?|\.\d+)\s*(?P<wan>[万亿])?\s*(?P<pct>%)?\s*(?P<suffix>[^\d]*)$"
)
_SUFFIX_OK = re.compile(r"^[\u4e00-\u9fff\w./·²³]{0,6}$")


def _without_spaces(text: str) -> str:
    r"""Every whitespace character dropped, as re.sub(r"\s+", "", text) would (str.split() splits on
    the same characters, str.isspace(), and is several times faster on Chinese text)."""
    return "".join(text.split())


# NFKC maps the full-width forms (１２３，：（）％) and the ideographic space to their ASCII twins.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def fold(text: str) -> str:
    """Full-width → half-width and compatibility forms → plain (NFKC): "３５００（人）" → "3500(人)"."""
    if unicodedata.is_normalized("NFKC", text):
        return text
    # Chinese text is mostly not NFKC only because of its full-width punctuation ("，" "：" "（）"),
    # and normalizing a sentence costs ~4 µs. Each full-width form decomposes to exactly its ASCII
    # twin, so ``plain`` has the same NFKC as ``text``; when ``plain`` is already NFKC, it is that.
    plain = text.translate(_FULL_WIDTH)
    if unicodedata.is_normalized("NFKC", plain):
        return plain
    return unicodedata.normalize("NFKC", text)


# The keys below are taken of the same few texts over and over (every return repeats the task
# list's unit names, codes and headers), so short texts are folded once per process. Long texts
# rarely repeat and are not kept: the cache stays small whatever a hostile file holds.
_MEMO_CHARS = 200
_MEMO_SIZE = 1 << 14


def header_key(text) -> str:
    """A header cell as compared against the aliases: folded, no whitespace, no bracketed suffix."""
    if text is None:
        return ""
    text = str(text)
    return _header_key_memo(text) if len(text) <= _MEMO_CHARS else _header_key(text)


def _header_key(text: str) -> str:
    folded = fold(text)
    folded = _without_spaces(folded)
    without = _BRACKETED.sub("", folded)
    return (without or folded).lower()


_header_key_memo = lru_cache(maxsize=_MEMO_SIZE)(_header_key)


def text_key(text) -> str:
    """Indicator text as compared against the task list: folded, no spaces or punctuation."""
    if text is None:
        return ""
    text = str(text)
    return _text_key_memo(text) if len(text) <= _MEMO_CHARS else _text_key(text)


def _text_key(text: str) -> str:
    return _PUNCT.sub("", fold(text)).lower()


_text_key_memo = lru_cache(maxsize=_MEMO_SIZE)(_text_key)


def clean_text(value) -> str:
    """A text cell as the unit wrote it, for display: only surrounding whitespace removed."""
    if type(value) is str:  # most cells: skip the checks below
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return format_number(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return str(value).strip()


def format_number(value: float) -> str:
    """15.0 → "15", 0.5 → "0.5": numbers as a person would write them (NaN → "", ±∞ as "∞",
    "-∞": no spreadsheet stores one, but a crafted file's "1e999" reads as one)."""
    if value != value:
        return ""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


@dataclass(frozen=True)
class ParsedNumber:
    """The result of reading one cell as a number."""

    value: float | None  # None: not reported (blank, "—", "无")
    ok: bool  # False: something was written that is not a number
    percent: bool = False  # written with a % sign
    suffix: str = ""  # trailing unit word ("人", "万人" → "人")


_BLANK = ParsedNumber(None, True)


def parse_number(value) -> ParsedNumber:
    """Read what people type as a number: 3500, "3,500", "３５００", "3500人", "1.42万", "43%".

    Blanks and the usual "nothing" marks ("—", "/", "无") are not reported. Anything else that
    does not read as one number (text, "见附件", "约3500", "3500-4000") is not ok.
    """
    if value is None:
        return _BLANK
    if type(value) is float and not math.isinf(value):  # most number cells
        return _BLANK if math.isnan(value) else ParsedNumber(value, True)
    if isinstance(value, bool):
        return ParsedNumber(None, False)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return ParsedNumber(None, True)
        if isinstance(value, float) and math.isinf(value):
            return ParsedNumber(None, False)
        return ParsedNumber(float(value), True)
    if isinstance(value, (date, datetime)):
        return ParsedNumber(None, False)
    text = str(value)
    return _parse_text_memo(text) if len(text) <= _MEMO_CHARS else _parse_text(text)


def _parse_text(text: str) -> ParsedNumber:
    text = _without_spaces(fold(text))
    if text.lower() in NOT_REPORTED:
        return ParsedNumber(None, True)
    text = text.replace(",", "")
    match = _NUMBER.match(text)
    if not match:
        return ParsedNumber(None, False)
    suffix = match.group("suffix")
    if suffix and not _SUFFIX_OK.match(suffix):
        return ParsedNumber(None, False)
    number = float(match.group("num"))
    if match.group("sign") == "-":
        number = -number
    wan = match.group("wan")
    if wan == "万":
        number *= 10_000
    elif wan == "亿":
        number *= 100_000_000
    pct = bool(match.group("pct")) or suffix.startswith("%")
    if pct:
        number /= 100
    if not math.isfinite(number):
        return ParsedNumber(None, False)  # 400 digits read as infinity: not a figure anyone reports
    return ParsedNumber(number, True, pct, suffix)


# Frozen results, so one instance can serve every cell that typed the same text.
_parse_text_memo = lru_cache(maxsize=_MEMO_SIZE)(_parse_text)


# A bare rate above this can only be a percentage (no indicator is done thrice over).
PERCENT_ABOVE = 3


def parse_rate(value, *, percent_format: bool = False) -> ParsedNumber:
    """A completion rate as a fraction: "43%", 43 and 0.43 all mean 0.43.

    A cell formatted as % stores the fraction; a bare number above 3 can only be a percentage
    (no indicator is done thrice over), while 0.43 or 1.052 are fractions already.
    """
    parsed = parse_number(value)
    if parsed.value is None or not parsed.ok or parsed.percent or percent_format:
        return parsed
    if abs(parsed.value) > PERCENT_ABOVE:
        return ParsedNumber(parsed.value / 100, True, True, parsed.suffix)
    return parsed


MAX_CELL_CHARS = 32_767  # Excel's limit for one cell
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def sanitize(text: str, limit: int = MAX_CELL_CHARS) -> tuple[str, list[str]]:
    """Text safe to write into a workbook cell, and what had to change (for a warning).

    Control characters cannot be stored in .xlsx XML and a cell holds at most 32,767
    characters; everything else is kept exactly as written.
    """
    if type(text) is str and len(text) <= limit and _CONTROL.search(text) is None:
        return text, []  # the usual case, without building a copy to compare
    problems = []
    cleaned = _CONTROL.sub("", text)
    if cleaned != text:
        problems.append("含有不可见的控制字符，已删除")
    if len(cleaned) > limit:
        problems.append(f"超过 {limit} 个字符，已截断")
        cleaned = cleaned[:limit]
    return cleaned, problems


def shorten(text: str, limit: int = 40) -> str:
    """A cell's text quoted inside a message: long input must not make a long message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_names(text: str) -> list[str]:
    """ "区民政局、区残联" → ["区民政局", "区残联"]: the separators people use between names."""
    parts = re.split(r"[、，,;；\s]+", fold(str(text or "")).strip())
    return [part for part in parts if part]
