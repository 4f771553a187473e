"""Facts that a unit states only in its narrative (完成情况).

Units often write their progress as prose: "已完成3500人，完成率43%，在12个有任务的县市区中排名第12".
These pure functions read the completed amount, the reported rate and rank, and (for milestone
tasks) the stage back out of it. When the prose does not pin one completed amount down, they say
why in ``ambiguous`` instead of guessing, so the caller can ask the unit to fill in 已完成.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple

__all__ = [
    "STAGES",
    "NarrativeFacts",
    "extract_facts",
    "parse_amount",
    "parse_rank",
    "split_for_indicators",
]

STAGES = ("未开工", "前期工作", "推进中", "基本完成", "已完成")


@dataclass(frozen=True)
class NarrativeFacts:
    """What one narrative says about one indicator."""

    completed: float | None  # in the task's unit of measure (万 expanded)
    completed_fragment: str | None  # the text it was read from, as the unit wrote it
    full: bool  # the whole task is done ("已全部完成", "已全部达标")
    reported_rate: float | None  # a fraction: "完成率43%" -> 0.43
    reported_rank: int | None
    reported_rank_of: int | None  # how many were ranked, when stated
    stage: str | None  # one of STAGES, or None
    ambiguous: str | None  # why no completed amount was taken (Chinese), or None


# --- folding ------------------------------------------------------------------------------------

# Full-width ASCII (０-９ ％ ． ／ （）) folds to half-width. The full-width comma stays as it is, so
# a thousands separator ("3,500") is never confused with a clause break ("3500人，完成率").
_FOLD_TABLE = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F) if code != 0xFF0C}
_FOLD_TABLE[0x3000] = 0x20


@dataclass(frozen=True)
class _Folded:
    """Text with full-width folded and whitespace dropped, mapped back to the original."""

    original: str
    text: str
    positions: Sequence[int]  # original index of each character of ``text``

    def original_span(self, start: int, end: int) -> str:
        """The original text behind ``text[start:end]``, spaces included."""
        return self.original[self.positions[start] : self.positions[end - 1] + 1]


# Characters that _fold changes or drops: when a text has none (most narratives), it is its own fold.
_FOLDED_AWAY = re.compile(r"[\s\uff01-\uff0b\uff0d-\uff5e]")


def _fold(text: str) -> _Folded:
    """Fold full-width characters and drop whitespace ("已完成 108 人" reads as "已完成108人")."""
    if _FOLDED_AWAY.search(text) is None:
        # A range maps each position to itself without building a tuple of every index.
        return _Folded(text, text, range(len(text)))
    kept = [
        (index, char)
        for index, char in enumerate(text.translate(_FOLD_TABLE))
        if not char.isspace()
    ]
    return _Folded(
        text, "".join(char for _, char in kept), tuple(index for index, _ in kept)
    )


# --- amounts ------------------------------------------------------------------------------------

_MULTIPLIERS = {"万": Decimal(10_000), "亿": Decimal(100_000_000)}

# Atomic groups: "2024年" must not shrink to "202" to escape the date check below.
_NUMBER = r"(?<![\d.\-~第])(?P<number>(?>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?>\.\d+)?)"
_MULTIPLIER = r"(?P<multiplier>[万亿])?"

_KNOWN_UNITS = [
    "人次", "户次", "个次", "场次", "批次", "件次", "台次", "辆次", "车次", "架次",
    "平方公里", "平方米", "立方米", "平米", "公里", "千米", "公顷", "千瓦", "兆瓦",
    "km", "m2", "m3", "㎡", "㎥",
]  # fmt: skip
# A single Chinese character after a number is its unit ("4回", "9类"), unless it is a function word.
_UNIT = (
    "(?P<unit>"
    + "|".join(sorted(_KNOWN_UNITS, key=len, reverse=True))
    + "|(?![在和与及或至到的了是为以于已未正并且等其共约近超余多万亿])[\u4e00-\u9fff])?"
)
# Dates, ages, percentages and ranges ("6月12日", "2024年", "60岁", "43%", "1-5月") are never amounts.
_NOT_AN_AMOUNT = r"(?![年月日号时周天岁%‰]|季度|小时|[-~至到—]\d)"
_NARRATIVE_AMOUNT = rf"{_NUMBER}{_MULTIPLIER}{_NOT_AN_AMOUNT}(?:余|多)?{_UNIT}"

_CELL_AMOUNT = re.compile(
    rf"(?:约|近|超过?|共计?|累计)?{_NUMBER}{_MULTIPLIER}(?:余|多)?(?P<suffix>\D{{0,6}})"
)
_ANY_AMOUNT = re.compile(_NARRATIVE_AMOUNT)


def _decimal_amount(match: re.Match) -> Decimal:
    """The number of an amount match, 万/亿 expanded, exactly (1.42万 is 14200, not 14199.999...)."""
    value = Decimal(match["number"].replace(",", ""))
    if match["multiplier"]:
        value *= _MULTIPLIERS[match["multiplier"]]
    return value


def parse_amount(text: str) -> tuple[float, str] | None:
    """Parse a cell typed as text: "3500人" -> (3500.0, "人"); "1.42万人" -> (14200.0, "人");
    "３５００" and "3,500" -> (3500.0, "").

    The unit suffix is returned as written (万 and 亿 are expanded, not returned); None when the
    text is not a single amount ("12/12", "6月12日", prose).
    """
    match = _CELL_AMOUNT.fullmatch(_fold(text).text)
    if match is None:
        return None
    value = _finite(_decimal_amount(match))
    return (value, match["suffix"]) if value is not None else None


def _finite(value: Decimal) -> float | None:
    """``value`` as a float; None for one too large for a float (hundreds of digits typed)."""
    number = float(value)
    return number if math.isfinite(number) else None


def _small_int(digits: str) -> int | None:
    """A rank or a count of ranked units; None for more digits than any (a pasted digit run,
    which int() refuses past 4,300 digits)."""
    return int(digits) if len(digits) <= 9 else None


# --- unit of measure ----------------------------------------------------------------------------

_UNIT_SYNONYMS = {
    unit: group[0]
    for group in (
        ("方", "立方米", "立方", "m3", "㎥"),
        ("平方米", "平米", "m2", "㎡"),
        ("公里", "千米", "km"),
        ("人", "名"),
    )
    for unit in group
}
_BRACKETED = re.compile(r"\(.*?\)|\[.*?\]|【.*?】")


def _same_unit(a: str, b: str) -> bool:
    """True for the same unit under another name, and for a count and its 次 ("人" and "人次")."""
    a, b = _UNIT_SYNONYMS.get(a, a), _UNIT_SYNONYMS.get(b, b)
    return a == b or a == b + "次" or b == a + "次"


@lru_cache(maxsize=4096)
def _measure_scale(measure: str) -> tuple[Decimal, str]:
    """"万人" -> (10000, "人"): a task list has a few dozen measures, each met on thousands of rows."""
    base = _BRACKETED.sub("", _fold(measure).text)
    if len(base) > 1 and base[0] in _MULTIPLIERS:
        return _MULTIPLIERS[base[0]], base[1:]
    return Decimal(1), base


def _in_measure(count: _Count, measure: str | None) -> Decimal | None:
    """The count expressed in the task's measure ("万人" divides by 10000); None if the units differ."""
    if not measure:
        return count.value
    scale, base = _measure_scale(measure)
    if not base:
        return count.value
    if not count.unit:
        # "已完成9.5" against "万人" already speaks in 万; "已完成95000" or "9.5万" does not.
        return (
            count.value / scale if count.scaled or count.value >= scale else count.value
        )
    if not _same_unit(count.unit, base):
        return None
    return count.value / scale


# --- completion statements ----------------------------------------------------------------------

_BREAKS = "，,。；;：:、！!？?()“”\"'\x00"
# Words between the verb and the number ("已完成新建基站20个"); dates and ages may sit among them.
_GAP = rf"(?:[^\d{_BREAKS}率%]|\d+(?:\.\d+)?(?:周岁|岁|年度|年|月份|月|日|号)){{0,20}}?"
_COMPLETION = re.compile(
    r"(?:(?:已经?|累计|共计?|实际|现已|目前已)(?:完成|完工|竣工|建成)|(?<![未没需要将应能可待])完成)了?(?!率):?"
    rf"(?P<gap>{_GAP}){_NARRATIVE_AMOUNT}"
)
# "已开工23个" is the completed amount only of an indicator about starting work ("开工改造110个").
_START = re.compile(
    rf"(?:已经?|累计|共计?)(?:开工|动工|开建)(?:建设|改造)?了?:?(?P<gap>{_GAP}){_NARRATIVE_AMOUNT}"
)
_ABOUT_STARTING = re.compile(r"开工|动工|开建")


class _Count(NamedTuple):
    """One "已完成N单位" statement (a named tuple: made for every amount read, so cheap to build)."""

    value: Decimal
    unit: str
    scaled: bool  # the number carried 万 or 亿
    amount_text: str  # "20个", for messages
    start: int  # span in the folded text
    end: int


def _counts(pattern: re.Pattern, text: str) -> list[_Count]:
    """Every completion statement of ``pattern`` in folded ``text``."""
    return [
        _Count(
            value=_decimal_amount(match),
            unit=match["unit"] or "",
            scaled=bool(match["multiplier"]),
            amount_text=text[match.start("number") : match.end()],
            start=match.start(),
            end=match.end(),
        )
        for match in pattern.finditer(text)
    ]


_FULL = re.compile(
    r"(?:(?:已经?|均已|都已)?(?:全部|全面|圆满|超额|提前)+(?:完成|达标|完工|竣工|建成)"
    r"|(?:均|都)已(?:完成|达标|完工|竣工|建成)"
    r"|已完成(?:全部|全年|年度)(?:目标)?任务)(?![的\d率])"
)
_NEGATIONS = ("未", "没", "不", "无", "待")


# Every _FULL statement contains one of these words; most narratives have none, and looking for
# them is much cheaper than trying _FULL at every position.
_FULL_HINT = re.compile("全部|全面|圆满|超额|提前|均已|都已|全年|年度")


def _find_full(text: str) -> re.Match | None:
    """The first "已全部完成"-like statement that is not negated ("尚未全部完成")."""
    if _FULL_HINT.search(text) is None:
        return None
    for match in _FULL.finditer(text):
        before = text[max(0, match.start() - 3) : match.start()]
        if not any(word in before for word in _NEGATIONS):
            return match
    return None


# --- rate and rank ------------------------------------------------------------------------------

_RATE = re.compile(
    r"(?P<lead>完成率|完成进度|形象进度|总体进度|工程进度|任务的)(?:为|达到?|是|约|:)*"
    r"(?P<number>\d+(?:\.\d+)?)(?P<percent>%)?"
)
_RANK_AMONG = re.compile(
    rf"(?P<of>\d+)个[^\d{_BREAKS}]{{0,20}}?排(?:名|位|在)?(?:为|是|:)?第?(?P<rank>\d+)"
)
_RANK_PLAIN = re.compile(
    r"排(?:名|位|在)?(?:为|是|:)?第(?P<rank>\d+)|排名(?:为|是|:)?(?P<bare>\d+)(?:/(?P<of>\d+))?"
)
_RANK_CELL = re.compile(
    r"第?(?P<rank>\d+)(?:\.0+)?(?:名|位)?(?:(?:/|\(共|共)(?P<of>\d+)(?:\.0+)?(?:个|名|家)?\)?)?[。.]?"
)


@lru_cache(maxsize=4096)
def _percent(number: str) -> Decimal:
    """"22.7" -> Decimal("0.227"): the same few hundred rates recur in every return."""
    return Decimal(number) / 100


def _reported_rate(text: str) -> float | None:
    """The rate the unit wrote, as a fraction; "完成率32.4" without % still means 32.4%."""
    rates = set()
    for match in _RATE.finditer(text):
        if match["lead"] == "任务的" and not match["percent"]:
            continue  # "任务的3个" is not a rate
        rates.add(_percent(match["number"]))
    return (
        _finite(rates.pop()) if len(rates) == 1 else None
    )  # two different rates: not ours to pick


def _ranks_in(text: str) -> tuple[int | None, int | None]:
    """The one rank stated in prose; (None, None) when there is none or they disagree."""
    if "排" not in text:
        return None, None  # both patterns need 排 (排名, 排位, 排在, 排第)
    found = {(_small_int(m["rank"]), _small_int(m["of"])) for m in _RANK_AMONG.finditer(text)}
    if not found:
        found = {
            (_small_int(m["rank"] or m["bare"]), _small_int(m["of"]) if m["of"] else None)
            for m in _RANK_PLAIN.finditer(text)
        }
    if len(found) != 1:
        return None, None
    rank, of = found.pop()
    return (rank, of) if rank is not None and rank >= 1 else (None, None)


def parse_rank(text) -> tuple[int | None, int | None]:
    """'12/12' -> (12, 12); '7' -> (7, None); '第7名' -> (7, None); '在12个有任务的县市区中排名第12' -> (12, 12).

    Takes a cell value as read (str, int, float or None); (None, None) when no rank is stated.
    """
    if text is None or isinstance(text, bool):
        return None, None
    if isinstance(text, (int, float)):
        if isinstance(text, float) and (math.isnan(text) or not text.is_integer()):
            return None, None
        return (int(text), None) if text >= 1 else (None, None)
    folded = _fold(str(text)).text
    match = _RANK_CELL.fullmatch(folded)
    if match is not None:
        rank = _small_int(match["rank"])
        return (
            (rank, _small_int(match["of"]) if match["of"] else None)
            if rank is not None and rank >= 1
            else (None, None)
        )
    return _ranks_in(folded)


# --- stage --------------------------------------------------------------------------------------

# Plans ("预计10月完工", "力争年底前全面完成") are not progress: they are masked before anything is read.
_FUTURE = re.compile(
    r"(?:预计|计划|力争|争取|拟|将于|将在|确保|预期|准备)(?:(?![，,](?:目前|现|已|截至|截止))[^。；;！!？?])*"
)
_PLANNED_START = re.compile(r"开工|动工|启动|开建|招标|招投标|挂网|实施")
_PLANNED_END = re.compile(r"完工|竣工|建成|完成|投用|投入使用|开放|交付")

_STAGE_SIGNALS = (
    (
        "basic",
        re.compile(
            r"基本(?:完工|完成|建成|竣工|达标)|主体(?:工程)?已?(?:完工|完成|竣工)"
        ),
    ),
    # "建设已完成。" is done; "已完成1-5月目标任务" or "已完成全年任务的43%" is not.
    (
        "done",
        re.compile(
            rf"(?<!基本)已经?(?:全部|全面)?(?:完成|完工|竣工|建成|投入使用|投用|交付|验收|达标)(?![^{_BREAKS}]*\d)"
        ),
    ),
    (
        "progress",
        re.compile(
            r"已经?(?:全面)?(?:开工|动工|施工|进场|拆除)|全面施工|正在(?:施工|建设|推进|实施|装修|安装|改造)"
            r"|有序推进|加快推进|稳步推进|推进中|施工中|建设中|在建|装修"
        ),
    ),
    (
        "prep",
        re.compile(
            r"方案|设计|评估|招投标|招标|挂网|立项|可研|选址|前期|规划|预算|征地|报批|手续|申报|收集资料"
            r"|调研|摸底|审批|谋划|筹备|比选|论证"
        ),
    ),
    ("not_started", re.compile(r"未(?:开工|启动|动工|实施|开始|建设)")),
)


def _mask(text: str, spans) -> str:
    """Blank out spans (same length, so positions still map to the original)."""
    if len(spans) <= 4:  # the usual none, one or two: slicing beats exploding the text into a list
        for start, end in spans:
            text = text[:start] + "\x00" * (end - start) + text[end:]
        return text
    chars = list(text)  # many spans: one pass, not a copy of the text per span
    for start, end in spans:
        chars[start:end] = "\x00" * (end - start)
    return "".join(chars)


def _infer_stage(
    text: str,
    *,
    planned: set[str],
    full: bool,
    completed: Decimal | None,
    target: float | None,
    any_count: bool,
    rate: float | None,
) -> str | None:
    """Stage of a milestone task from the words used; numbers decide only when words do not."""
    if full or (completed is not None and target and completed >= Decimal(str(target))):
        return "已完成"
    signals = set(planned)
    signals.update(name for name, pattern in _STAGE_SIGNALS if pattern.search(text))
    if completed is not None and target and completed > 0:
        signals.add("progress")  # below target: some done, not all
    if "basic" in signals and "not_started" not in signals:
        return "基本完成"
    if signals == {"done"}:
        return "已完成"
    if signals & {"done", "progress", "basic"}:
        return "推进中"  # some parts done or under way, others not
    if "prep" in signals:
        return "前期工作"
    if "not_started" in signals:
        return "未开工"
    if any_count:
        return "推进中"
    if rate is not None and rate > 0:
        return "已完成" if rate >= 1 else "推进中"
    return None


# --- extraction ---------------------------------------------------------------------------------


def _plain(value: Decimal | float) -> str:
    """8150.0 -> "8150", 10.8 -> "10.8": numbers as a user would write them."""
    return format(Decimal(str(value)).normalize(), "f")


def _choose_completed(
    counts: list[_Count],
    full: re.Match | None,
    folded: _Folded,
    target: float | None,
    measure: str | None,
) -> tuple[Decimal | None, str | None, str | None]:
    """(completed, fragment, ambiguous) from the statements found."""
    compatible = [
        (count, value)
        for count in counts
        if (value := _in_measure(count, measure)) is not None
    ]
    # Distinct values in order; one statement (the usual case) needs no hashing of Decimals.
    values = [value for _, value in compatible]
    if len(values) > 1:
        values = list(dict.fromkeys(values))
    if len(values) > 1:
        amounts = "、".join(dict.fromkeys(count.amount_text for count, _ in compatible))
        return (
            None,
            None,
            f"完成情况中有多个完成数（{amounts}），无法确定本指标的完成数，请在“已完成”栏填写数字",
        )
    if values:
        count, value = compatible[0]
        fragment = folded.original_span(count.start, count.end)
        if full is not None and target is not None and value < Decimal(str(target)):
            return (
                None,
                None,
                (
                    f"完成情况既写“{folded.original_span(full.start(), full.end())}”，又写“{fragment}”（目标值{_plain(target)}），"
                    "无法确定本指标的完成数，请在“已完成”栏填写数字"
                ),
            )
        return value, fragment, None
    if full is not None:
        completed = Decimal(str(target)) if target is not None else None
        return completed, folded.original_span(full.start(), full.end()), None
    if counts:
        count = counts[0]
        return (
            None,
            None,
            (
                f"完成情况中的“{folded.original_span(count.start, count.end)}”单位为“{count.unit}”，"
                f"与本指标计量单位“{measure}”不一致，无法确定本指标的完成数，请在“已完成”栏填写数字"
            ),
        )
    return None, None, None


def extract_facts(
    narrative: str,
    *,
    target: float | None = None,
    measure: str | None = None,
    indicator: str | None = None,
) -> NarrativeFacts:
    """Read completed amount, reported rate and rank, and stage from one indicator's narrative.

    ``target`` turns "已全部完成" into a number; ``measure`` rejects amounts in another unit and
    expands 万; ``indicator`` lets "已开工23个" count for an indicator about starting work.
    """
    # Values come straight from DataFrame cells, where a blank is NaN.
    narrative = narrative if isinstance(narrative, str) else ""
    measure = measure if isinstance(measure, str) else None
    indicator = indicator if isinstance(indicator, str) else None
    if target is not None and math.isnan(target):
        target = None
    if len(narrative) > _MEMO_CHARS:
        return _extract_facts(narrative, target, measure, indicator)
    return _extract_facts_memo(narrative, target, measure, indicator)


def _extract_facts(
    narrative: str, target: float | None, measure: str | None, indicator: str | None
) -> NarrativeFacts:
    folded = _fold(narrative)
    futures = [match.span() for match in _FUTURE.finditer(folded.text)]
    planned = set()
    for start, end in futures:
        plan = folded.text[start:end]
        if _PLANNED_START.search(plan):
            planned.add("prep")
        elif _PLANNED_END.search(plan):
            planned.add("progress")
    text = _mask(folded.text, futures)

    completions = _counts(_COMPLETION, text)
    starts = (
        _counts(_START, text) if indicator and _ABOUT_STARTING.search(indicator) else []
    )
    counts = starts or completions
    full = _find_full(text)
    completed, fragment, ambiguous = _choose_completed(
        counts, full, folded, target, measure
    )
    rate = _reported_rate(text)
    rank, rank_of = _ranks_in(text)
    stage = _infer_stage(
        _mask(text, [(count.start, count.end) for count in completions]),
        planned=planned,
        full=full is not None,
        completed=completed,
        target=target,
        any_count=any(count.value > 0 for count in counts),
        rate=rate,
    )
    completed_value = _finite(completed) if completed is not None else None
    return NarrativeFacts(
        completed=completed_value,
        completed_fragment=fragment if completed_value is not None else None,
        full=full is not None,
        reported_rate=rate,
        reported_rank=rank,
        reported_rank_of=rank_of,
        stage=stage,
        ambiguous=ambiguous,
    )


# Narratives repeat across returns ("已完成87项，完成率22.7%。" from many units), and a province run
# extracts ~70k of them: read each distinct one once. The facts are frozen, so sharing is safe;
# typed, so that a target of 1 and of 1.0 are kept apart as the uncached code would. Only short
# narratives (nearly all of them) are kept, so that the cache stays ~20 MB at most whatever is sent.
_MEMO_CHARS = 200
_extract_facts_memo = lru_cache(maxsize=1 << 15, typed=True)(_extract_facts)


# --- one narrative, several indicators ----------------------------------------------------------

_CLAUSE = re.compile(r"[^；;。！!？?]+[；;。！!？?]*|[；;。！!？?]+")
_CLAUSE_END = "；;。！!？?，, \t\r\n\u3000"
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Words every narrative uses; sharing them says nothing about which indicator a clause is about.
_BOILERPLATE = "已完成 完成率 有任务的县市区中排名第 全市排名 全省排名 形象进度 累计 目前 截至 其中 同步 全部 达标 正在 已经"


def _bigrams(text: str) -> set[str]:
    """Chinese character pairs, the cheapest fair measure of "speaks of the same thing"."""
    return {
        run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)
    }


_STOP_BIGRAMS = _bigrams(_BOILERPLATE)


def _indicator_units(text: str) -> set[str]:
    """Units of the amounts in an indicator text ("康复救助残疾儿童181人" -> {"人"})."""
    return {
        _UNIT_SYNONYMS.get(match["unit"], match["unit"])
        for match in _ANY_AMOUNT.finditer(text)
        if match["unit"]
    }


def _states_numbers(text: str) -> bool:
    """Whether a clause states a completed amount, a rate or a rank."""
    return bool(
        _COMPLETION.search(text)
        or _START.search(text)
        or _RATE.search(text)
        or _ranks_in(text)[0]
    )


def split_for_indicators(narrative: str, indicators: list[str]) -> list[str]:
    """One narrative that covers several indicators (the reference table puts 9-1 and 9-2, or 1-1 and 1-2,
    on one row): return, for each indicator, the part of the narrative that speaks of it ('' when none).

    Clauses (split on ；;。) go to the indicator sharing most distinctive character pairs, or the
    unit of their amount; a clause about none continues the one before it. When a clause stating
    numbers cannot be placed, every indicator gets the whole narrative, so extraction flags it.
    """
    narrative = narrative if isinstance(narrative, str) else ""
    if len(indicators) <= 1:
        return [narrative] * len(indicators)
    clauses = [
        match.span()
        for match in _CLAUSE.finditer(narrative)
        if match.group().strip(_CLAUSE_END)
    ]
    folded_indicators = [
        _fold(indicator if isinstance(indicator, str) else "").text
        for indicator in indicators
    ]
    pairs = [_bigrams(text) - _STOP_BIGRAMS for text in folded_indicators]
    units = [_indicator_units(text) for text in folded_indicators]
    common_pairs = set.intersection(*pairs)
    common_units = set.intersection(*units)

    owned: list[list[int]] = [[] for _ in indicators]
    placed_any = False
    previous: int | None = None
    for number, (start, end) in enumerate(clauses):
        clause = _fold(narrative[start:end]).text
        clause_pairs = _bigrams(clause) - common_pairs
        clause_units = {
            _UNIT_SYNONYMS.get(count.unit, count.unit)
            for count in _counts(_COMPLETION, clause) + _counts(_START, clause)
        } - common_units
        scores = [
            len(clause_pairs & own) + len(clause_units & unit)
            for own, unit in zip(pairs, units, strict=False)
        ]
        best = max(scores)
        winners = [index for index, score in enumerate(scores) if score == best]
        if best > 0 and len(winners) == 1:
            previous = winners[0]
            owned[previous].append(number)
            placed_any = True
        elif best == 0 and previous is not None:
            owned[previous].append(
                number
            )  # "完成率57%" after "已完成基站20个。" belongs with it
        elif _states_numbers(clause):
            return [narrative] * len(indicators)
        else:
            for index in winners:  # shared context, e.g. "均与全市进度同步"
                owned[index].append(number)
    if not placed_any:
        return [narrative] * len(indicators)
    return [
        "".join(
            narrative[clauses[number][0] : clauses[number][1]] for number in numbers
        )
        .strip()
        .rstrip(_CLAUSE_END)
        for numbers in owned
    ]
