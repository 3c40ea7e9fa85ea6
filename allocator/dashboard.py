"""The Dashboard sheet's charts: native Excel charts over the report's own sheets.

A board looks at a picture: money by jurisdiction against its contribution share (juste
retour at a glance), inclusion shares against their rule targets, money per inhabitant by
region, money by fund and period. Each chart reads its numbers from the sheet that holds them
(Jurisdictions, Dashboard, Regions, Funds), so the picture and the table never disagree. The
charts sit in a 2 x 2 grid under the key figures; the Dashboard prints on one portrait page,
so no page break cuts a chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from openpyxl.chart import BarChart, Reference, Series
from openpyxl.chart.data_source import StrRef
from openpyxl.chart.series import SeriesLabel
from openpyxl.chart.text import RichText, Text
from openpyxl.chart.title import Title
from openpyxl.drawing.spreadsheet_drawing import AnchorMarker, TwoCellAnchor
from openpyxl.drawing.text import CharacterProperties, Paragraph, ParagraphProperties, RegularTextRun

# Grid under the figures: two charts across (the left in column A, the right in B:C), two down.
CHART_ROWS = 19
MIN_WIDTHS = {1: 44.0, 2: 30.0, 3: 12.0}  # characters: A holds one chart, B:C the other


@dataclass
class _Sheet:
    """Stands in for a sheet in a chart reference (only its title is used)."""

    title: str


@dataclass
class ChartData:
    """Where each chart's numbers are: sheet rows (1-based, data rows only) and columns."""

    jurisdictions: int  # data rows of the Jurisdictions sheet
    contributions: bool  # the round has contributions (joint funds)
    inclusion_rows: tuple[int, int] | None  # Dashboard rows of the share rules, first..last
    regions: int
    funds: int
    periods: int
    juris_cols: dict[str, int]
    region_cols: dict[str, int]
    fund_cols: dict[str, int]
    currency: str


def _ref(sheet: str, col: int, first: int, last: int) -> Reference:
    return Reference(_Sheet(sheet), min_col=col, min_row=first, max_row=last)


def _bar(title: str, y_title: str, y_format: str, horizontal: bool = False) -> BarChart:
    chart = BarChart()
    chart.type = "bar" if horizontal else "col"
    chart.grouping = "clustered"
    chart.title = _title(title)
    chart.y_axis.title = y_title
    chart.y_axis.numFmt = y_format
    chart.y_axis.majorGridlines = None
    chart.legend.position = "b"
    # openpyxl >= 3.1 hides axes unless told (delete=True by default in some readers).
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    return chart


def _title(text: str) -> Title:
    """A chart title in 12 pt bold (the default is too large for a quarter page)."""
    props = CharacterProperties(sz=1200, b=True)
    para = Paragraph(pPr=ParagraphProperties(defRPr=props), r=[RegularTextRun(rPr=props, t=text)])
    return Title(tx=Text(rich=RichText(p=[para])), overlay=False)


def _series(chart: BarChart, values: Reference, title: str) -> None:
    s = Series(values, title=title)
    chart.series.append(s)


def charts(data: ChartData) -> list[Any]:
    """The dashboard's charts, in grid order (left to right, top to bottom)."""
    out = []
    n = data.jurisdictions
    if n:
        c = _bar("Joint money and contributions by jurisdiction", "share", "0%")
        if data.contributions:
            _series(c, _ref("Jurisdictions", data.juris_cols["joint_share"], 2, n + 1),
                    "share of the joint money received")
            _series(c, _ref("Jurisdictions", data.juris_cols["contribution_share"], 2, n + 1),
                    "share of the contributions paid")
        else:
            _series(c, _ref("Jurisdictions", data.juris_cols["share"], 2, n + 1),
                    "share of all money")
        c.set_categories(_ref("Jurisdictions", 1, 2, n + 1))
        out.append(c)
    if data.inclusion_rows:
        first, last = data.inclusion_rows
        c = _bar("Inclusion shares against their targets", "share", "0%", horizontal=True)
        _series(c, _ref("Dashboard", 2, first, last), "achieved")
        _series(c, _ref("Dashboard", 3, first, last), "rule target")
        c.set_categories(_ref("Dashboard", 1, first, last))
        out.append(c)
    if data.regions:
        c = _bar("Money per inhabitant by region", data.currency, "#,##0.00", horizontal=True)
        _series(c, _ref("Regions", data.region_cols["per_capita"], 2, data.regions + 1),
                f"{data.currency} per inhabitant".strip())
        c.set_categories(_ref("Regions", data.region_cols["region"], 2, data.regions + 1))
        c.legend = None
        out.append(c)
    if data.funds and data.periods:
        c = _bar("Money allocated by fund and period", data.currency, "#,##0")
        c.grouping = "stacked"
        c.overlap = 100
        t = data.periods
        for k in range(data.funds):
            first = 2 + k * t
            s = Series(_ref("Funds", data.fund_cols["allocated"], first, first + t - 1),
                       title_from_data=False)
            # The series is named by its fund_id cell.
            s.tx = SeriesLabel(strRef=StrRef(f"'Funds'!$A${first}"))
            c.series.append(s)
        c.set_categories(_ref("Funds", data.fund_cols["period"], 2, 1 + t))
        out.append(c)
    return out


def print_area(figure_rows: int, count: int) -> str:
    """The Dashboard's printed area: the figures and every chart, on one page."""
    return f"A1:C{_first_chart_row(figure_rows) + ((count + 1) // 2) * (CHART_ROWS + 1) + 1}"


def _first_chart_row(figure_rows: int) -> int:
    """0-based row of the first chart's top: one blank row under the figures."""
    return figure_rows + 2


def add_charts(ws: Any, data: ChartData, figure_rows: int) -> Sequence[Any]:
    """The charts in a 2 x 2 grid under the figures. Each fills its grid cell (anchored at two
    corners: whatever a reader takes a column's width to be, a chart keeps to its cell and
    never overlaps another)."""
    made = charts(data)
    top = _first_chart_row(figure_rows)
    for i, chart in enumerate(made):
        row = top + (i // 2) * (CHART_ROWS + 1)
        first, last = (0, 1) if i % 2 == 0 else (1, 3)
        chart.anchor = TwoCellAnchor(_from=AnchorMarker(col=first, row=row),
                                     to=AnchorMarker(col=last, row=row + CHART_ROWS))
        ws.add_chart(chart)
    return made
