"""Cell formats of the consolidated workbook, created once per workbook."""

from __future__ import annotations

# Traffic light: 已完成 blue, 正常 green, 滞后 yellow, 严重滞后 red, 未报送 grey (font, fill).
STATUS_COLOURS = {
    "已完成": ("#1F4E79", "#BDD7EE"),
    "正常": ("#375623", "#C6EFCE"),
    "滞后": ("#7F6000", "#FFEB9C"),
    "严重滞后": ("#9C0006", "#FFC7CE"),
    "未报送": ("#404040", "#D9D9D9"),
}
# Stages of 节点 items share the light's meaning.
STAGE_COLOURS = {"基本完成": "正常", "推进中": "正常", "前期工作": "正常", "未开工": "滞后"}


class Styles:
    def __init__(self, book, title_font: str, body_font: str):
        base = {"font_name": body_font, "font_size": 11, "valign": "vcenter", "border": 1}
        self.title = book.add_format(
            {"font_name": title_font, "font_size": 20, "bold": True, "align": "center", "valign": "vcenter"}
        )
        self.subtitle = book.add_format({"font_name": body_font, "font_size": 14, "align": "center"})
        self.note = book.add_format({"font_name": body_font, "font_size": 10, "text_wrap": True, "valign": "top"})
        self.header = book.add_format({**base, "bold": True, "align": "center", "text_wrap": True, "bg_color": "#F2F2F2"})
        self.band = book.add_format({**base, "bold": True, "align": "left", "bg_color": "#E7E6E6"})
        self.text = book.add_format({**base, "text_wrap": True, "align": "left"})
        self.center = book.add_format({**base, "text_wrap": True, "align": "center"})
        self.number = book.add_format({**base, "align": "right", "num_format": "#,##0.##"})
        self.percent = book.add_format({**base, "align": "right", "num_format": "0.00%"})
        self.plain_number = book.add_format({"num_format": "#,##0.##"})
        self.plain_percent = book.add_format({"num_format": "0.00%"})
        self.error = book.add_format({**base, "align": "center", "font_color": "#9C0006", "bg_color": "#FFC7CE"})
        self.warning = book.add_format({**base, "align": "center", "font_color": "#7F6000", "bg_color": "#FFEB9C"})
        self._status = {}
        self._status_plain = {}
        for status, (font, fill) in STATUS_COLOURS.items():
            self._status[status] = book.add_format(
                {**base, "align": "center", "font_color": font, "bg_color": fill, "bold": True}
            )
            self._status_plain[status] = book.add_format({"font_color": font, "bg_color": fill})

    def status(self, status: str):
        return self._status.get(STAGE_COLOURS.get(status, status), self.center)

    def status_plain(self, status: str):
        return self._status_plain.get(STAGE_COLOURS.get(status, status))
