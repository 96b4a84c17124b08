"""The dashboards without Grafana: every panel drawn into one static HTML page.

Each panel is laid out on the dashboard's own 24-column grid with its title, description,
unit and thresholds: a stat shows its value coloured by the thresholds (or the panel's
"no value" text), a bar gauge and a time series become charts (time series over the
dashboard's time range, the thresholds as dashed lines), a PromQL table is merged by its key
labels as Grafana's ``merge`` transformation does, and a PostgreSQL table runs its SQL on the
store. A query that fails is shown in its panel and counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import jinja2

from mhst_tracker.dashboards import (
    Dashboard,
    DashboardError,
    Panel,
    first_sample_time,
    format_value,
    legend,
    query_prometheus,
    query_prometheus_range,
    substitute_promql,
    substitute_sql,
)
from mhst_tracker.render.charts import Bar, Point, bar_chart, line_chart
from mhst_tracker.render.html import STYLE

RANGE_POINTS: Final = 120
_RELATIVE: Final = re.compile(r"now-(\d+)([mhd])")
_SECONDS: Final = {"m": 60, "h": 3600, "d": 86400}
SqlRunner = Callable[[str], list[dict[str, Any]]]
"""Runs one SQL query on the store and returns its rows (column name -> value)."""

_PAGE: Final = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>{{ style }}</style></head><body>
<h1>{{ title }}</h1><p class="meta">{{ subtitle }}</p>
{% for board in boards %}
<section class="dashboard" id="{{ board.uid }}">
<h1>{{ board.title }}</h1><p class="meta">{{ board.description }}</p>
<div class="grid">
{% for panel in board.panels %}
{% if panel.kind == "row" %}
<div class="panel row" style="grid-column: 1 / span 24"><h2>{{ panel.title }}</h2></div>
{% else %}
<div class="panel" id="{{ board.uid }}-{{ panel.id }}"
     style="grid-column: span {{ panel.width }}">
<h3>{{ panel.title }}</h3><p class="description">{{ panel.description }}</p>
{% for error in panel.errors %}<p class="error">{{ error }}</p>{% endfor %}
{% if panel.kind == "stat" %}{% for value in panel.values %}
<div class="stat-value" style="color: {{ value.colour }}">{{ value.text }}</div>
<div class="unit">{{ value.name }}</div>{% endfor %}
{% elif panel.kind == "chart" %}<div class="chart">{{ panel.chart | safe }}</div>
{% elif panel.kind == "table" %}<table><thead><tr>
{%- for header in panel.headers %}<th>{{ header }}</th>{% endfor %}</tr></thead><tbody>
{%- for row in panel.rows %}<tr>{% for cell in row %}
<td{% if cell.colour %} style="background: {{ cell.colour }}; color: #fff"{% endif %}>
{{- cell.text }}</td>{% endfor %}</tr>
{%- else %}
<tr><td colspan="{{ panel.headers | length or 1 }}">{{ panel.empty }}</td></tr>
{%- endfor %}</tbody></table>
{% endif %}</div>
{% endif %}{% endfor %}
</div></section>
{% endfor %}
</body></html>
"""
)


@dataclass
class Cell:
    text: str
    colour: str | None = None


@dataclass
class Drawn:
    """One panel as the page shows it."""

    id: int
    kind: str
    title: str
    description: str = ""
    width: int = 24
    values: list[dict[str, str]] = field(default_factory=list)
    chart: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    empty: str = "No data"
    errors: list[str] = field(default_factory=list)


def colour_of(value: float, steps: Sequence[tuple[float | None, str]]) -> str | None:
    """The colour of the last threshold step ``value`` reaches."""
    colour = None
    for start, step_colour in steps:
        if start is None or value >= start:
            colour = step_colour
    return colour


def time_range(board: Dashboard, now: float) -> tuple[float, float]:
    """The dashboard's default time range (``now-7d`` to ``now``) in POSIX seconds."""
    match = _RELATIVE.fullmatch(str(board.data.get("time", {}).get("from", "now-6h")))
    span = int(match.group(1)) * _SECONDS[match.group(2)] if match else 6 * 3600
    return now - span, now


@dataclass
class PageBuilder:
    """Draws the panels of dashboards from a Prometheus (and a store for SQL panels)."""

    prometheus_url: str
    selection: Mapping[str, Sequence[str]]
    run_sql: SqlRunner | None = None
    now: float = field(default_factory=time.time)
    failures: int = 0
    _data_start: float | None = None

    def page(self, boards: Sequence[Dashboard]) -> str:
        drawn = [
            {
                "uid": board.uid,
                "title": board.title,
                "description": str(board.data.get("description", "")),
                "panels": [self.panel(board, panel) for panel in board.panels],
            }
            for board in boards
        ]
        moment = datetime.fromtimestamp(self.now, UTC).astimezone()
        return _PAGE.render(
            title="MHST dashboards",
            subtitle=f"Every panel as Grafana shows it, from {self.prometheus_url} at "
            f"{moment.strftime('%d %B %Y %H:%M:%S %Z')}.",
            style=STYLE,
            boards=drawn,
        )

    def panel(self, board: Dashboard, panel: Panel) -> Drawn:
        drawn = Drawn(panel.id, "row", panel.title)
        if panel.type == "row":
            return drawn
        drawn.description = panel.description
        drawn.width = int(panel.grid.get("w", 24))
        try:
            if panel.type == "stat":
                self._stat(board, panel, drawn)
            elif panel.type == "bargauge":
                self._bars(board, panel, drawn)
            elif panel.type == "timeseries":
                self._lines(board, panel, drawn)
            elif any(query.sql for query in panel.queries):
                self._sql_table(board, panel, drawn)
            else:
                self._prometheus_table(board, panel, drawn)
        except DashboardError as error:
            self.failures += 1
            drawn.errors.append(f"ERROR {error}")
        return drawn

    def _first_sample(self) -> float:
        """When Prometheus's data starts, so a short run's lines span the chart."""
        if self._data_start is None:
            self._data_start = first_sample_time(self.prometheus_url)
        return self._data_start

    def _instant(self, board: Dashboard, expr: str | None) -> list[Any]:
        assert expr is not None
        return query_prometheus(
            self.prometheus_url, substitute_promql(expr, board, self.selection), at=self.now
        )

    def _stat(self, board: Dashboard, panel: Panel, drawn: Drawn) -> None:
        drawn.kind = "stat"
        for query in panel.queries:
            samples = self._instant(board, query.expr)
            name = legend(query.legend, samples[0].labels) if samples else query.legend
            if not samples:
                drawn.values.append(_nothing(panel, name))
                continue
            value = samples[0].value
            colour = colour_of(value, panel.thresholds) or "#1d1d1d"
            drawn.values.append(
                {"text": format_value(value, panel.unit), "colour": colour, "name": name}
            )

    def _bars(self, board: Dashboard, panel: Panel, drawn: Drawn) -> None:
        drawn.kind = "chart"
        query = panel.queries[0]
        samples = self._instant(board, query.expr)
        percent = panel.unit == "percentunit"
        bars = [
            Bar(name, s.value, colour_of(s.value, panel.thresholds) or "#4c72b0")
            for name, s in sorted((legend(query.legend, s.labels), s) for s in samples)
        ]
        if not bars:
            drawn.kind = "stat"
            drawn.values.append(_nothing(panel))
            return
        drawn.chart = bar_chart(bars, percent=percent, width=max(160, drawn.width * 22))

    def _lines(self, board: Dashboard, panel: Panel, drawn: Drawn) -> None:
        drawn.kind = "chart"
        start, end = time_range(board, self.now)
        start = max(start, self._first_sample())
        step = max(1.0, (end - start) / RANGE_POINTS)
        points: list[Point] = []
        for query in panel.queries:
            assert query.expr is not None
            expr = substitute_promql(query.expr, board, self.selection)
            for series in query_prometheus_range(self.prometheus_url, expr, start, end, step):
                name = legend(query.legend, series.labels)
                points.extend(
                    Point(datetime.fromtimestamp(at, UTC).isoformat(), name, value)
                    for at, value in series.points
                )
        if not points:
            drawn.kind = "stat"
            drawn.values.append(_nothing(panel))
            return
        defaults = panel.data.get("fieldConfig", {}).get("defaults", {})
        drawn_lines = "thresholdsStyle" in defaults.get("custom", {})
        steps = [value for value, _ in panel.thresholds if value is not None]
        drawn.chart = line_chart(
            points,
            percent=panel.unit == "percentunit",
            target=max(steps) if steps and drawn_lines else None,
            width=max(200, drawn.width * 22),
            height=150,
        )

    def _prometheus_table(self, board: Dashboard, panel: Panel, drawn: Drawn) -> None:
        drawn.kind = "table"
        renames = panel.renames
        merged: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        key_labels: list[str] = []
        for query in panel.queries:
            for sample in self._instant(board, query.expr):
                key = tuple(sorted(sample.labels.items()))
                key_labels = sorted({*key_labels, *sample.labels})
                merged.setdefault(key, {})[query.ref_id] = sample.value
        headers = [renames.get(label, label) for label in key_labels]
        columns = [(q.ref_id, renames.get(f"Value #{q.ref_id}", q.ref_id)) for q in panel.queries]
        drawn.headers = headers + [header for _, header in columns]
        for key in sorted(merged):
            labels = dict(key)
            row = [Cell(labels.get(label, "")) for label in key_labels]
            for ref_id, header in columns:
                value = merged[key].get(ref_id)
                unit, steps = panel.column(header)
                if value is None:
                    row.append(Cell(""))
                else:
                    colour = colour_of(value, steps) if len(steps) > 1 else None
                    row.append(Cell(format_value(value, unit), colour))
            drawn.rows.append(row)

    def _sql_table(self, board: Dashboard, panel: Panel, drawn: Drawn) -> None:
        drawn.kind = "table"
        (query,) = panel.queries
        assert query.sql is not None
        if self.run_sql is None:
            drawn.empty = "Not shown: this panel reads the PostgreSQL store (MHST_DATABASE_URL)."
            return
        start, end = (datetime.fromtimestamp(t, UTC) for t in time_range(board, self.now))
        rows = self.run_sql(substitute_sql(query.sql, start, end, self.selection))
        if rows:
            drawn.headers = list(rows[0])
        for row in rows[:50]:
            drawn.rows.append([Cell("" if value is None else str(value)) for value in row.values()])


def _nothing(panel: Panel, name: str = "") -> dict[str, str]:
    """What a panel whose query returned no series shows: its "no value" text, or No data."""
    return {"text": panel.no_value or "No data", "colour": "#4d4d4d", "name": name}
