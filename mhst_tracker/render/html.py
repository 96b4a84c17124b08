"""Self-contained HTML pages: the monthly report and the static dashboard page.

Each page is one file with its styles and charts (inline SVG) inside: no script, font or
image is fetched, so it opens in any browser, offline, and prints to A4.
"""

from __future__ import annotations

from typing import Any, Final

import jinja2

from mhst_tracker.adapters.store.report import MonthlyReport, standard_wording
from mhst_tracker.rag import COLOURS, rag
from mhst_tracker.render.charts import Bar, Point, bar_chart, line_chart
from mhst_tracker.render.sections import Section, display, sections

STYLE: Final = """
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1d1d1d;
       margin: 0 auto; padding: 16px; max-width: 1100px; font-size: 13px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 22px 0 8px; border-bottom: 2px solid #005eb8; padding-bottom: 3px; }
h3 { font-size: 13px; margin: 0 0 6px; }
.meta { color: #4d4d4d; margin: 0 0 12px; }
.suppression { background: #f0f4f5; border-left: 4px solid #005eb8; padding: 6px 10px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 10px; page-break-inside: avoid; }
th, td { border: 1px solid #c8c8c8; padding: 3px 6px; text-align: right; }
th { background: #e8edee; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
td.rag-green { background: #2e8540; color: #fff; }
td.rag-amber { background: #e0a100; color: #1d1d1d; }
td.rag-red { background: #c4314b; color: #fff; }
.headline { display: flex; gap: 12px; flex-wrap: wrap; margin: 8px 0; }
.tile { border: 1px solid #c8c8c8; border-radius: 4px; padding: 8px 12px; min-width: 170px;
        page-break-inside: avoid; }
.tile .value { font-size: 30px; font-weight: 700; }
.tile .unit { font-size: 12px; color: #4d4d4d; }
.grid { display: grid; grid-template-columns: repeat(24, 1fr); gap: 8px; }
.panel { border: 1px solid #c8c8c8; border-radius: 4px; padding: 8px; overflow: hidden;
         page-break-inside: avoid; }
.panel .description { color: #4d4d4d; font-size: 11px; margin: 0 0 6px; }
.panel.row { border: none; padding: 0; }
.panel.row h2 { margin: 12px 0 0; }
.chart svg { max-width: 100%; height: auto; }
.error { color: #c4314b; font-weight: 600; }
.stat-value { font-size: 28px; font-weight: 700; }
section.dashboard { margin-bottom: 28px; }
ul.methods li { margin-bottom: 4px; }
@media print { body { padding: 0; max-width: none; } h2 { page-break-after: avoid; } }
"""

_ENVIRONMENT: Final = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)

_REPORT: Final = _ENVIRONMENT.from_string(
    """<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title><style>{{ style }}</style></head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ subtitle }}</p>
<p class="suppression" id="suppression">{{ suppression }}</p>
<div class="headline">
{% for tile in tiles %}
<div class="tile" id="{{ tile.id }}"
  {%- if tile.colour %} style="border-left: 8px solid {{ tile.colour }}"{% endif %}>
<h3>{{ tile.title }}</h3><div class="value">{{ tile.value }}</div>
<div class="unit">{{ tile.unit }}</div></div>
{% endfor %}</div>
{% for section in sections %}
<h2 id="{{ section.key }}">{{ section.title }}</h2>
{% if section.key in charts %}<div class="chart">{{ charts[section.key] | safe }}</div>{% endif %}
<table><thead><tr><th>{{ section.label }}</th>
{%- for header in section.headers %}<th>{{ header }}</th>{% endfor %}</tr></thead>
<tbody>
{%- for name, cells in section.rows %}
<tr><td>{{ name }}</td>
{%- for cell in cells %}{% set column = section.columns[loop.index0] %}
<td{% if column.endswith('_rag') and cell in rag_classes %} class="rag-{{ cell }}"{% endif %}>
{{- show(cell, column) }}</td>
{%- endfor %}</tr>
{%- else %}
<tr><td colspan="{{ section.columns | length + 1 }}">None in this month.</td></tr>
{%- endfor %}
</tbody></table>
{% endfor %}
<h2 id="methods">Methods</h2>
<ul class="methods">{% for line in methods %}<li>{{ line }}</li>{% endfor %}</ul>
</body></html>
"""
)


def _share_bars(section: Section) -> list[Bar]:
    """The share of each row of a section, coloured by its band (suppressed rows left out)."""
    index = section.columns.index("seen_within_standard_pct")
    bars = []
    for name, cells in section.rows:
        value = cells[index]
        if isinstance(value, int | float):
            share = value / 100
            band = rag(share)
            bars.append(Bar(name, share, COLOURS[band] if band else "#888888"))
    return bars


def _count_bars(section: Section, columns: list[str], row: int = 0) -> list[Bar]:
    """The counts of one row of a section (by default the first: all teams)."""
    if not section.rows:
        return []
    headers = dict(zip(section.columns, section.headers, strict=True))
    cells = dict(zip(section.columns, section.rows[row][1], strict=True))
    return [
        Bar(headers[column], float(value))
        for column in columns
        if isinstance(value := cells[column], int | float)
    ]


def report_charts(report: MonthlyReport, tables: list[Section]) -> dict[str, str]:
    """SVG charts by section key: share by team and school, trend, wait bands, breaches."""
    by_key = {section.key: section for section in tables}
    charts: dict[str, str] = {}
    for key in ("teams", "schools"):
        bars = _share_bars(by_key[key])
        if bars:
            charts[key] = bar_chart(bars, percent=True, target=report.target)
    points = [
        Point(
            str(row["period"]),
            "All teams" if row["group"] == "overall" else str(row["id"]),
            value / 100,
        )
        for row in report.trend
        if isinstance(value := row["seen_within_standard_pct"], int | float)
    ]
    if points:
        charts["trend"] = line_chart(
            points, percent=True, target=report.target, temporal=False, width=620
        )
    bands = [
        column
        for column in by_key["bands"].columns
        if column.startswith("waiting_") and column[8].isdigit()
    ]
    charts["bands"] = bar_chart(_count_bars(by_key["bands"], bands))
    breaches = [column for column in by_key["breaches"].columns if column.startswith("breaches_")]
    charts["breaches"] = bar_chart(_count_bars(by_key["breaches"], breaches))
    return charts


def report_html(report: MonthlyReport) -> str:
    """The monthly report as one self-contained HTML page."""
    tables = sections(report)
    standard = standard_wording(report.profile)
    (overall,) = report.rows_of("overall") or [{}]
    pct = overall.get("seen_within_standard_pct")
    band = overall.get("seen_within_standard_rag")
    tiles = [
        {
            "id": "headline",
            "title": f"Seen within {standard}",
            "value": display(pct, "seen_within_standard_pct"),
            "unit": f"of {display(overall.get('completed'), 'completed')} pathways seen; "
            f"target {report.target:.0%}",
            "colour": COLOURS.get(str(band)),
        },
        {
            "id": "waiting",
            "title": "Waiting at month end",
            "value": display(overall.get("waiting"), "waiting"),
            "unit": f"{display(overall.get('waiting_past_standard'), 'waiting')} over {standard}",
            "colour": None,
        },
        {
            "id": "received",
            "title": "Referrals received",
            "value": display(overall.get("received"), "received"),
            "unit": "in the month",
            "colour": None,
        },
    ]
    local = report.as_of.astimezone(report.profile.timezone)
    context: dict[str, Any] = {
        "title": f"Four-week waiting-time standard: {report.period.title}",
        "subtitle": f"Mental Health Support Teams, profile {report.profile.name}; figures as of "
        f"{local.strftime('%d %B %Y %H:%M %Z')}.",
        "style": STYLE,
        "suppression": report.suppression.describe(),
        "tiles": tiles,
        "sections": tables,
        "charts": report_charts(report, tables),
        "methods": report.methods(),
        "show": display,
        "rag_classes": ("green", "amber", "red"),
    }
    return _REPORT.render(context)
