"""Reading completed amounts, rates, ranks and stages back out of narratives (完成情况)."""

import pytest

from pipeline.intake.narrative import (
    STAGES,
    NarrativeFacts,
    extract_facts,
    parse_amount,
    parse_rank,
    split_for_indicators,
)

KAIGONG = "开工改造110个城镇老旧小区（我区实际开工改造228个城镇老旧小区）"

# narrative, target, measure, indicator -> completed, reported rate, rank, ranked among
NUMBERS = [
    (
        "已完成3500人，完成率43%，在12个有任务的县市区中排名第12。",
        8150,
        "人",
        None,
        3500,
        0.43,
        12,
        12,
    ),
    ("已完成9.5万人，完成率32.4。", 293100, "人", None, 95000, 0.324, None, None),
    (
        "已完成6.6万方，完成率66.11%，在11个有任务的县市区中排名第10。",
        108000,
        "方",
        None,
        66000,
        0.6611,
        10,
        11,
    ),
    (
        "已完成1.42万人，完成率105.2%，全市排名第7。",
        13500,
        "人次",
        None,
        14200,
        1.052,
        7,
        None,
    ),
    ("已完成新建基站20个，完成率57.14%", 35, "个", None, 20, 0.5714, None, None),
    (
        "已完成农村新增千兆光纤1638个，完成率55.53%",
        2950,
        "个",
        None,
        1638,
        0.5553,
        None,
        None,
    ),
    ("改造任务已完成4回，完成率27%", 15, "回", None, 4, 0.27, None, None),
    (
        "已完成 108 人，完成率 59.7%，在 10 个有任务的县市区中排名第 1。",
        181,
        "人",
        None,
        108,
        0.597,
        1,
        10,
    ),
    (
        "已完成９类，完成率１１．３％，在９个任务的县市区中排名第９。",
        80,
        "类",
        None,
        9,
        0.113,
        9,
        9,
    ),
    ("已开工23个，完成率21%", 110, "个", KAIGONG, 23, 0.21, None, None),
    (
        "已开工23个，完成率21%",
        110,
        "个",
        "完成5985户城镇住宅小区居民“一户一表”改造接收",
        None,
        0.21,
        None,
        None,
    ),
    ("已开工23个，完成率21%", 110, "个", None, None, 0.21, None, None),
    ("已全部完成，进度与其他县市区同步。", 700, "项", None, 700, None, None, None),
    ("新建任务已全部完成", 7, "回", None, 7, None, None, None),
    (
        "形象进度完成率59%，在3个有任务的县市区中排名第1。",
        1,
        "个",
        None,
        None,
        0.59,
        1,
        3,
    ),
    (
        "已完成9类，完成率11.3%，在9个任务的县市区中排名第9。",
        80,
        "类",
        None,
        9,
        0.113,
        9,
        9,
    ),
    ("已完成３５００人", 8150, "人", None, 3500, None, None, None),
    ("已完成3,500人", 8150, "人", None, 3500, None, None, None),
    ("已完成1615人次，完成率50.3%。", 1200, "人次", None, 1615, 0.503, None, None),
    ("已完成43台，完成率31%，全市排名第11。", 138, "台", None, 43, 0.31, 11, None),
    (
        "已完成改新建农村户用厕所10个，完成率10%，在12个有任务的县市区中排名第12。",
        100,
        "个",
        None,
        10,
        0.1,
        12,
        12,
    ),
    ("已完成9.5万人", 29.31, "万人", None, 9.5, None, None, None),
    ("已完成 20 户，完成率 28.5%", 70, "户", None, 20, 0.285, None, None),
    (
        "已完成20",
        70,
        "户",
        None,
        20,
        None,
        None,
        None,
    ),  # a bare number is taken in the task's unit
    ("累计完成1799人，完成率59.97%", 3000, "人次", None, 1799, 0.5997, None, None),
    ("计划完成100户，已完成80户", 100, "户", None, 80, None, None, None),
    ("已完成60岁以上老人体检3000人", 5000, "人", None, 3000, None, None, None),
]


@pytest.mark.parametrize(
    (
        "narrative",
        "target",
        "measure",
        "indicator",
        "completed",
        "rate",
        "rank",
        "rank_of",
    ),
    NUMBERS,
)
def test_extract_numbers(
    narrative, target, measure, indicator, completed, rate, rank, rank_of
):
    facts = extract_facts(
        narrative, target=target, measure=measure, indicator=indicator
    )
    assert facts.completed == (
        pytest.approx(completed) if completed is not None else None
    )
    assert facts.reported_rate == (pytest.approx(rate) if rate is not None else None)
    assert (facts.reported_rank, facts.reported_rank_of) == (rank, rank_of)
    assert facts.ambiguous is None


def test_extract_facts_returns_everything_for_a_full_sentence():
    facts = extract_facts(
        "已完成 6.6 万方，完成率 66.11%，在 11 个有任务的县市区中排名第 10。",
        target=108000,
        measure="方",
    )
    assert facts == NarrativeFacts(
        completed=66000.0,
        completed_fragment="已完成 6.6 万方",
        full=False,
        reported_rate=pytest.approx(0.6611),
        reported_rank=10,
        reported_rank_of=11,
        stage="推进中",
        ambiguous=None,
    )


@pytest.mark.parametrize(
    ("narrative", "target", "completed", "fragment"),
    [
        ("已全部完成，进度与其他县市区同步。", 700, 700, "已全部完成"),
        ("已全部完成，与全市进度同步。", None, None, None),
        ("已全部达标。", None, None, None),
        ("已全部达标。", 3, 3, "已全部达标"),
        ("新建任务已全部完成", 7, 7, "已全部完成"),
        ("已超额完成全年任务，共完成720人", 700, 720, "共完成720人"),
    ],
)
def test_full(narrative, target, completed, fragment):
    facts = extract_facts(narrative, target=target)
    assert facts.full is True
    assert facts.completed == completed
    assert facts.completed_fragment == fragment
    assert facts.stage == "已完成"
    assert facts.ambiguous is None


@pytest.mark.parametrize(
    "narrative",
    ["尚未全部完成", "力争年底前全面完成", "已完成全年任务的43%", "已基本完成"],
)
def test_not_full(narrative):
    assert extract_facts(narrative, target=10).full is False


@pytest.mark.parametrize(
    ("narrative", "stage"),
    [
        ("正在制定方案和评估工作。", "前期工作"),
        ("未开工。", "未开工"),
        ("改新建农村公共厕所暂未开工。", "未开工"),
        ("已基本完工，后续相关工作正在有序推进。", "基本完成"),
        ("项目一期已开工，预计10月完工", "推进中"),
        ("1个已完工，1个正在建设中，6个正在进行方案设计和预算编制。", "推进中"),
        (
            "鹰山小学已完工；外国语学校正在进行后期装修；青年路小学已开工；9所学校提质改造未开工。",
            "推进中",
        ),
        ("正在挂网招投标，预计6月份全面开工建设，12月底前基本建成。", "前期工作"),
        ("洛王街道社区卫生服务中心预计6月底开工，2024年12月完工。", "前期工作"),
        ("蔡家社区范围内已全面施工作业；郭镇乡范围预计6月底开工。", "推进中"),
        (
            "提质改造光荣院项目一期已完工，二期正在办理相关手续；提质改造郭镇敬老院未开工。",
            "推进中",
        ),
        ("烈士纪念馆布展项目已基本完工；实践基地建设已完成。", "基本完成"),
        ("建设已完成。", "已完成"),
        ("已全部达标。", "已完成"),
        ("已完成全年任务的43%", "推进中"),
        ("形象进度完成率59%，在3个有任务的县市区中排名第1。", "推进中"),
        ("3处已纳入市城管局城东南泵站改造中解决", None),
        ("", None),
    ],
)
def test_stage(narrative, stage):
    facts = extract_facts(narrative)
    assert facts.stage == stage
    assert facts.stage is None or facts.stage in STAGES


def test_sub_item_counts_are_not_completed():
    facts = extract_facts("1个已完工，1个正在建设中", target=8, measure="处")
    assert (facts.completed, facts.ambiguous, facts.stage) == (None, None, "推进中")
    facts = extract_facts(
        "市住建局委托代建项目14个，其中，1个已完工，11个已开工，1个正在招投标。"
    )
    assert (facts.completed, facts.ambiguous, facts.stage) == (None, None, "推进中")


@pytest.mark.parametrize(
    "narrative",
    [
        "洛王街道社区卫生服务中心预计6月底开工，2024年12月完工；区第二人民医院提质改造预计6月底开工，10月底竣工。",
        "已完成2024年度目标",
        "已完成1-5月目标任务",
        "已完成10月底前的工作",
        "6月12日，市专班将该项任务调整为3000户",
        "已完成第3批",
        "预计10月底完成",
        "尚未完成100户",
        "累计完成率59%",
    ],
)
def test_dates_plans_and_ordinals_are_not_completed(narrative):
    facts = extract_facts(narrative, target=100, measure="户")
    assert facts.completed is None
    assert facts.ambiguous is None


def test_date_next_to_a_completed_amount():
    narrative = (
        "已完成 1678 户。6 月 12 日，市打好重点民生保障仗专班将该项民生实事任务调整为"
        "全市推进城镇住宅小区居民“一户一表”改造接收 3000 户，各县市区具体任务暂未下达。"
    )
    facts = extract_facts(narrative, target=5985, measure="户")
    assert (facts.completed, facts.completed_fragment) == (1678, "已完成 1678 户")
    assert extract_facts("截至6月12日，已完成1678户", measure="户").completed == 1678


def test_two_completed_amounts_are_ambiguous():
    narrative = "已完成新建基站 20 个，完成率 57.14%；已完成农村新增千兆光纤 1638 个，完成率 55.53%。"
    facts = extract_facts(narrative, target=35, measure="个")
    assert facts.completed is None
    assert facts.completed_fragment is None
    assert (
        facts.reported_rate is None
    )  # two rates as well: neither is known to be this indicator's
    assert facts.ambiguous == (
        "完成情况中有多个完成数（20个、1638个），无法确定本指标的完成数，请在“已完成”栏填写数字"
    )


def test_unit_mismatch_is_ambiguous():
    facts = extract_facts("已完成20个", target=70, measure="户")
    assert facts.completed is None
    assert facts.ambiguous == (
        "完成情况中的“已完成20个”单位为“个”，与本指标计量单位“户”不一致，"
        "无法确定本指标的完成数，请在“已完成”栏填写数字"
    )


def test_amounts_in_other_units_are_ignored_when_one_matches():
    facts = extract_facts("已完成投资2000万元，已完成改造30户", target=70, measure="户")
    assert (facts.completed, facts.ambiguous) == (30, None)


def test_full_contradicted_by_a_smaller_amount_is_ambiguous():
    facts = extract_facts(
        "新建任务已全部完成；改造任务已完成4回，完成率27%", target=7, measure="回"
    )
    assert facts.completed is None
    assert facts.full is True
    assert "已全部完成" in facts.ambiguous and "已完成4回" in facts.ambiguous


def test_empty_narrative():
    assert extract_facts("") == NarrativeFacts(
        None, None, False, None, None, None, None, None
    )


def test_blank_cells_read_as_nan():
    nan = float("nan")
    assert extract_facts(nan, target=nan, measure=nan, indicator=nan) == extract_facts(
        ""
    )
    facts = extract_facts("已全部完成", target=nan, measure=nan)
    assert (facts.completed, facts.full) == (None, True)
    assert extract_facts("已完成20个", target=nan, measure=nan).completed == 20


# --- split_for_indicators ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("narrative", "indicators", "parts"),
    [
        (
            "已完成新建基站 20 个，完成率 57.14%；已完成农村新增千兆光纤 1638 个，完成率 55.53%。",
            ["推进乡村信息化网络建设，农村新增基站35个", "农村新增千兆光纤端口2950个"],
            [
                "已完成新建基站 20 个，完成率 57.14%",
                "已完成农村新增千兆光纤 1638 个，完成率 55.53%",
            ],
        ),
        (
            "新建任务已全部完成；改造任务已完成4回，完成率27%",
            ["新建10千伏线路7回", "改造老旧线路15回"],
            ["新建任务已全部完成", "改造任务已完成4回，完成率27%"],
        ),
        (
            "已完成改新建农村户用厕所10个，完成率10%，在12个有任务的县市区中排名第12；改新建农村公共厕所暂未开工。",
            ["改新建农村户用厕所100个", "改新建农村公共厕所2座"],
            [
                "已完成改新建农村户用厕所10个，完成率10%，在12个有任务的县市区中排名第12",
                "改新建农村公共厕所暂未开工",
            ],
        ),
        (  # the unit tells the clauses apart when the words do not
            "已完成108人，完成率59.7%；已完成20户，完成率28.5%。",
            ["康复救助残疾儿童181人", "完成70户困难残疾人家庭无障碍改造"],
            ["已完成108人，完成率59.7%", "已完成20户，完成率28.5%"],
        ),
        (  # a clause about neither continues the one before it
            "已完成新建基站20个。完成率57.14%；已完成农村新增千兆光纤1638个。",
            ["农村新增基站35个", "农村新增千兆光纤端口2950个"],
            ["已完成新建基站20个。完成率57.14%", "已完成农村新增千兆光纤1638个"],
        ),
        (  # only one indicator spoken of: the other gets nothing
            "已完成新建基站20个，完成率57.14%。",
            ["农村新增基站35个", "农村新增千兆光纤端口2950个"],
            ["已完成新建基站20个，完成率57.14%", ""],
        ),
    ],
)
def test_split_for_indicators(narrative, indicators, parts):
    assert split_for_indicators(narrative, indicators) == parts


@pytest.mark.parametrize(
    ("narrative", "indicators"),
    [
        (
            "已全部完成，进度与其他县市区同步。",
            ["上线服务事项700项", "其中“一网通办”事项达到50项"],
        ),
        (
            "已完成615人次，完成率50.3%。",
            ["开展补贴性职业技能培训1200人次", "其中创业培训300人次"],
        ),
    ],
)
def test_split_gives_the_whole_narrative_when_it_cannot_tell(narrative, indicators):
    assert split_for_indicators(narrative, indicators) == [narrative, narrative]


def test_split_then_extract_each_indicator():
    narrative = "已完成新建基站 20 个，完成率 57.14%；已完成农村新增千兆光纤 1638 个，完成率 55.53%。"
    indicators = [
        "推进乡村信息化网络建设，农村新增基站35个",
        "农村新增千兆光纤端口2950个",
    ]
    parts = split_for_indicators(narrative, indicators)
    base_station, fibre = (extract_facts(part, measure="个") for part in parts)
    assert (base_station.completed, base_station.reported_rate) == (
        20,
        pytest.approx(0.5714),
    )
    assert (fibre.completed, fibre.reported_rate) == (1638, pytest.approx(0.5553))


def test_split_trivial_cases():
    assert split_for_indicators("已完成3500人", ["城镇新增就业8150人"]) == [
        "已完成3500人"
    ]
    assert split_for_indicators("已完成3500人", []) == []
    assert split_for_indicators("", ["a", "b"]) == ["", ""]


# --- parse_rank and parse_amount --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12/12", (12, 12)),
        ("１２／１２", (12, 12)),
        ("7", (7, None)),
        (7, (7, None)),
        (7.0, (7, None)),
        ("第7名", (7, None)),
        ("第12名（共12个）", (12, 12)),
        ("在12个有任务的县市区中排名第12", (12, 12)),
        ("全市排名第7", (7, None)),
        ("", (None, None)),
        (None, (None, None)),
        (float("nan"), (None, None)),
        ("0", (None, None)),
        ("靠前", (None, None)),
    ],
)
def test_parse_rank(text, expected):
    assert parse_rank(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3500人", (3500.0, "人")),
        ("1.42万人", (14200.0, "人")),
        ("1.35万人次", (13500.0, "人次")),
        ("３５００", (3500.0, "")),
        ("3,500", (3500.0, "")),
        (" 108 人 ", (108.0, "人")),
        ("43%", (43.0, "%")),
        ("12/12", None),
        ("6月12日", None),
        ("已完成3500人", None),
        ("", None),
    ],
)
def test_parse_amount(text, expected):
    assert parse_amount(text) == expected


# -- the quick paths (memo, text already folded, few spans) answer as the plain ones -------------


@pytest.mark.parametrize(
    ("narrative", "fragment"),
    [
        ("已完成108人，完成率43%。", "已完成108人"),  # nothing to fold: read as it is
        ("已完成 108 人，完成率４３％。", "已完成 108 人"),  # spaces dropped, full-width folded
        ("已完成１０８人\u3000完成率43%", "已完成１０８人"),
    ],
)
def test_folding_maps_back_to_what_was_written(narrative, fragment):
    for _ in range(2):  # the second answer comes from the memo
        facts = extract_facts(narrative, target=250, measure="人")
        assert (facts.completed, facts.completed_fragment, facts.reported_rate) == (108, fragment, 0.43)


def test_a_long_narrative_is_read_like_a_short_one():
    short = "已完成108人。"
    long = short + "按计划推进。" * 100  # over the memo's length limit
    assert extract_facts(long, target=250, measure="人") == extract_facts(short, target=250, measure="人")


def test_masking_many_spans_as_a_few_at_a_time():
    from pipeline.intake.narrative import _mask

    text = "预计6月开工，" * 6
    spans = [(7 * i, 7 * i + 4) for i in range(6)]
    assert _mask(text, spans) == _mask(_mask(text, spans[:3]), spans[3:])
    assert _mask(text, spans).count("\x00") == 24 and len(_mask(text, spans)) == len(text)
