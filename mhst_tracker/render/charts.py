"""Charts as inline SVG, drawn with Vega-Altair and rendered by vl-convert (no browser).

Two kinds serve the report and the static dashboard page alike: bars (one value per label,
each bar coloured, optionally a target rule) and lines (series over time or months, with a
dashed target line at the standard). Values are plain numbers; ``percent`` charts take
ratios (0 to 1) and label the axis in percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import altair as alt
import vl_convert

FONT: Final = "DejaVu Sans, Helvetica, Arial, sans-serif"
NEUTRAL: Final = "#4c72b0"
TARGET_COLOUR: Final = "#555555"


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its label, value and colour."""

    label: str
    value: float
    colour: str = NEUTRAL


@dataclass(frozen=True, slots=True)
class Point:
    """One point of a line: its x (an ISO date-time or a month ``YYYY-MM``), series, value."""

    x: str
    series: str
    value: float


def _axis_format(percent: bool) -> dict[str, Any]:
    return {"format": ".0%"} if percent else {"format": "~s"}


def _svg(chart: alt.TopLevelMixin) -> str:
    spec = chart.configure(font=FONT).configure_view(stroke=None).to_dict()
    svg: str = vl_convert.vegalite_to_svg(spec)
    return svg


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str = "",
    percent: bool = False,
    target: float | None = None,
    width: int = 420,
) -> str:
    """Horizontal bars, in the given order; a dashed rule at ``target`` when given."""
    data = alt.InlineData(
        values=[
            {"label": bar.label, "value": bar.value, "colour": bar.colour, "order": index}
            for index, bar in enumerate(bars)
        ]
    )
    scale = alt.Scale(domain=[0, 1]) if percent else alt.Scale(zero=True)
    base = alt.Chart(data).encode(
        y=alt.Y("label:N", sort=alt.EncodingSortField("order"), title=None),
    )
    bars_layer = base.mark_bar().encode(
        x=alt.X("value:Q", title=None, scale=scale, axis=alt.Axis(**_axis_format(percent))),
        color=alt.Color("colour:N", scale=None, legend=None),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("value:Q")],
    )
    text = base.mark_text(align="left", dx=3).encode(
        x=alt.X("value:Q"),
        text=alt.Text("value:Q", format=".1%" if percent else ",.4~g"),
    )
    layers: list[alt.Chart] = [bars_layer, text]
    if target is not None:
        rule = alt.Chart(alt.InlineData(values=[{"target": target}])).mark_rule(
            color=TARGET_COLOUR, strokeDash=[4, 3]
        )
        layers.append(rule.encode(x="target:Q"))
    height = max(40, 22 * len(bars))
    chart = alt.layer(*layers).properties(width=width, height=height, title=title)
    return _svg(chart)


def line_chart(
    points: Sequence[Point],
    *,
    title: str = "",
    percent: bool = False,
    target: float | None = None,
    temporal: bool = True,
    width: int = 420,
    height: int = 180,
) -> str:
    """One line per series; a dashed target line across the chart when ``target`` is given."""
    values = [{"x": point.x, "series": point.series, "value": point.value} for point in points]
    x_type = "x:T" if temporal else "x:O"
    scale = alt.Scale(domain=[0, 1]) if percent else alt.Scale(zero=True)
    lines = (
        alt.Chart(alt.InlineData(values=values))
        .mark_line(point=not temporal)
        .encode(
            x=alt.X(
                x_type,
                title=None,
                axis=alt.Axis(labelAngle=0, format="%d %b %H:%M")
                if temporal
                else alt.Axis(labelAngle=0),
            ),
            y=alt.Y("value:Q", title=None, scale=scale, axis=alt.Axis(**_axis_format(percent))),
            color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        )
    )
    layers: list[alt.Chart] = [lines]
    if target is not None:
        rule = alt.Chart(alt.InlineData(values=[{"target": target, "series": "target"}])).mark_rule(
            color=TARGET_COLOUR, strokeDash=[4, 3]
        )
        layers.append(rule.encode(y="target:Q"))
    chart = alt.layer(*layers).properties(width=width, height=height, title=title)
    return _svg(chart)
