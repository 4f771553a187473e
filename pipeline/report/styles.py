"""Cell formats of the consolidated workbook, created once per workbook.

Government print style: the title in the configured title font (方正小标宋简体 by default), the body
in the body font (仿宋_GB2312), thin black borders, wrapped text. Statuses are a traffic light.
"""

from __future__ import annotations

# Traffic light: 已完成 blue, 正常 green, 滞后 yellow, 严重滞后 red, 未报送 grey (font, fill).
STATUS_COLOURS = {
    "已完成": ("#1F4E79", "#BDD7EE"),
    "正常": ("#375623", "#C6EFCE"),
    "滞后": ("#7F6000", "#FFEB9C"),
    "严重滞后": ("#9C0006", "#FFC7CE"),
    "未报送": ("#404040", "#D9D9D9"),
}
LEGEND_STATUSES = ("已完成", "正常", "滞后", "严重滞后", "未报送")
# Stages of 节点 items share the light's meaning.
STAGE_COLOURS = {"基本完成": "正常", "推进中": "正常", "前期工作": "正常", "未开工": "滞后"}

INTEGER_FORMAT = "#,##0"
DECIMAL_FORMAT = "#,##0.0#"  # not "#,##0.##": Excel shows 700 as "700." with that one
PERCENT_FORMAT = "0.00%"
POINTS_FORMAT = '0.0"个百分点"'


def status_light(status: str) -> str:
    """The traffic-light status a status or 节点 stage is coloured as."""
    return STAGE_COLOURS.get(status, status)


class Styles:
    def __init__(self, book, title_font: str, body_font: str, size: int = 11):
        self.body_font = body_font
        base = {"font_name": body_font, "font_size": size, "valign": "vcenter", "border": 1}
        self.title = book.add_format({"font_name": title_font, "font_size": 20, "align": "center", "valign": "vcenter"})
        self.subtitle = book.add_format(
            {"font_name": body_font, "font_size": 14, "align": "center", "valign": "vcenter"}
        )
        self.heading = book.add_format({"font_name": body_font, "font_size": 12, "bold": True, "valign": "vcenter"})
        self.note = book.add_format({"font_name": body_font, "font_size": 10, "text_wrap": True, "valign": "top"})
        self.legend_label = book.add_format(
            {"font_name": body_font, "font_size": 10, "valign": "vcenter", "align": "left", "text_wrap": True}
        )
        self.legend_key = book.add_format(
            {"font_name": body_font, "font_size": 10, "valign": "vcenter", "align": "right", "bold": True}
        )
        self.header = book.add_format(
            {**base, "bold": True, "align": "center", "text_wrap": True, "bg_color": "#F2F2F2"}
        )
        self.band = book.add_format({**base, "bold": True, "align": "left", "bg_color": "#E7E6E6"})
        self.text = book.add_format({**base, "text_wrap": True, "align": "left"})
        self.center = book.add_format({**base, "text_wrap": True, "align": "center"})
        self.integer = book.add_format({**base, "align": "right", "num_format": INTEGER_FORMAT})
        self.decimal = book.add_format({**base, "align": "right", "num_format": DECIMAL_FORMAT})
        self.number = self.integer  # counts
        self.percent = book.add_format({**base, "align": "right", "num_format": PERCENT_FORMAT})
        self.points = book.add_format({**base, "align": "right", "num_format": POINTS_FORMAT})
        self.plain_integer = book.add_format({"num_format": INTEGER_FORMAT})
        self.plain_decimal = book.add_format({"num_format": DECIMAL_FORMAT})
        self.plain_percent = book.add_format({"num_format": PERCENT_FORMAT})
        self.error = book.add_format({**base, "align": "center", "font_color": "#9C0006", "bg_color": "#FFC7CE"})
        self.warning = book.add_format({**base, "align": "center", "font_color": "#7F6000", "bg_color": "#FFEB9C"})
        # 问题清单 alternates a light band per unit, so a unit's issues read as one block.
        self.text_alt = book.add_format({**base, "text_wrap": True, "align": "left", "bg_color": "#F7F9FC"})
        self._status = {}
        self._status_plain = {}
        self._legend = {}
        for status, (font, fill) in STATUS_COLOURS.items():
            self._status[status] = book.add_format(
                {**base, "align": "center", "font_color": font, "bg_color": fill, "bold": True, "text_wrap": True}
            )
            self._status_plain[status] = book.add_format({"font_color": font, "bg_color": fill})
            self._legend[status] = book.add_format(
                {**base, "font_size": 9, "align": "center", "font_color": font, "bg_color": fill, "bold": True}
            )

    def status(self, status: str):
        return self._status.get(status_light(status), self.center)

    def status_plain(self, status: str):
        return self._status_plain.get(status_light(status))

    def legend(self, status: str):
        return self._legend[status]

    def value(self, value: float):
        """A bordered number cell: integers without decimals, others with one or two."""
        return self.integer if float(value).is_integer() else self.decimal

    def plain_value(self, value: float):
        return self.plain_integer if float(value).is_integer() else self.plain_decimal
