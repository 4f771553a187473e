"""content_digest: equal for equal contents, different as soon as anything the workbook shows changes."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from pipeline.errors import ERROR, WARNING, Issue
from pipeline.report.workbook import WorkbookInput, content_digest


def _contents(issues: list[Issue]) -> WorkbookInput:
    master = pd.DataFrame({"code": ["1-1"], "unit": ["甲区"], "completed": [12.5]})
    tasks = pd.DataFrame({"code": ["1-1"], "unit": ["甲区"], "target": [100]})
    return WorkbookInput("汇总表", "2023-05", master, issues, [], tasks)


ISSUES = [
    Issue("甲区.xlsx", "甲区", "Sheet1!E7", ERROR, "not-a-number", "“已完成”应为数字"),
    Issue("乙区.xlsx", "乙区", "", WARNING, "rate-mismatch", "完成率与已完成数不符"),
]


def test_equal_contents_give_equal_digests():
    assert content_digest(_contents(list(ISSUES))) == content_digest(_contents(list(ISSUES)))


@pytest.mark.parametrize("name", [item.name for item in dataclasses.fields(Issue)])
def test_any_change_to_an_issue_changes_the_digest(name):
    changed = dataclasses.replace(ISSUES[1], **{name: getattr(ISSUES[1], name) + "x"})
    assert content_digest(_contents([ISSUES[0], changed])) != content_digest(_contents(list(ISSUES)))


def test_an_issue_more_or_less_changes_the_digest():
    digests = {content_digest(_contents(ISSUES[:count])) for count in range(len(ISSUES) + 1)}
    assert len(digests) == len(ISSUES) + 1
