"""The Grafana dashboards as data: their panels, queries, variables and structural checks.

The dashboards are Grafana JSON files in ``dashboards/``, built by
:mod:`mhst_tracker.grafana`. This module reads them, fills in their template variables the
way Grafana does (``$team`` and ``$__rate_interval`` in PromQL, ``${team:regex}`` and
``$__timeFilter(column)`` in SQL, constants such as ``$target``, datasource variables such
as ``${prometheus}`` by their default, the provisioned uid), checks their structure against
the provisioned datasources and the conventions every panel follows, and runs their PromQL
against a Prometheus, so the tests and ``mhst-tracker dashboard-check`` see what a person
would see in Grafana.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text

from mhst_tracker.adapters.store.database import create_engine, reachable
from mhst_tracker.failures import ServiceUnavailable

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DASHBOARD_DIR: Final = REPO_ROOT / "dashboards"
PROMETHEUS_TYPE: Final = "prometheus"
POSTGRES_TYPE: Final = "grafana-postgresql-datasource"
ALL: Final = ".*"
"""What a variable set to "All" stands for (its ``allValue``)."""
RATE_INTERVAL: Final = "1m"
"""What ``$__rate_interval`` stands for: four times the provisioned 15 s scrape interval."""
CLINICAL_METRICS: Final = (
    "mhst_referrals_",
    "mhst_pathways_",
    "mhst_pathway_wait_",
    "mhst_stage_breaches",
    "mhst_alerts_total",
)
SHARE_METRIC: Final = "mhst_pathways_seen_within_standard"
BREACH_METRICS: Final = ("mhst_stage_breaches", "mhst_referrals_waiting_past_standard")
_FIXED_RATE_WINDOW: Final = re.compile(r"\b(rate|irate)\([^()]*\[\d+[smhdw]\]\)")
_DATASOURCE_VARIABLE: Final = re.compile(r"^\$\{(\w+)\}$")

_SQL_REGEX_VARIABLE: Final = re.compile(r"\$\{(\w+):regex\}")
_TIME_FILTER: Final = re.compile(r"\$__timeFilter\((\w+)\)")
_IMPORT_VARIABLE: Final = re.compile(r"\$\{DS_[A-Z0-9_]+\}")


class DashboardError(Exception):
    """A dashboard file or a query against Prometheus failed."""


@dataclass(frozen=True, slots=True)
class Query:
    """One target of a panel: PromQL (``expr``) or SQL (``sql``)."""

    ref_id: str
    datasource_uid: str
    expr: str | None = None
    sql: str | None = None
    instant: bool = False
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Panel:
    """A panel (rows included, with no queries) and where it sits on the grid."""

    id: int
    title: str
    type: str
    grid: Mapping[str, Any]
    datasource_uid: str | None
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    """The panel's JSON, for what only a renderer needs (thresholds, overrides)."""

    @property
    def thresholds(self) -> list[tuple[float | None, str]]:
        """The panel's threshold steps: (from value, colour), the first from minus infinity."""
        return _steps(self.data.get("fieldConfig", {}).get("defaults", {}).get("thresholds"))

    @property
    def no_value(self) -> str | None:
        """What the panel shows when its query returns nothing (``None``: "No data")."""
        value = self.data.get("fieldConfig", {}).get("defaults", {}).get("noValue")
        return None if value is None else str(value)

    def column(self, name: str) -> tuple[str, list[tuple[float | None, str]]]:
        """The unit and thresholds of a table column, from the overrides matching it."""
        unit, steps = self.unit, self.thresholds
        for override in self.data.get("fieldConfig", {}).get("overrides", []):
            if override.get("matcher", {}).get("options") != name:
                continue
            for item in override.get("properties", []):
                if item.get("id") == "unit":
                    unit = str(item["value"])
                if item.get("id") == "thresholds":
                    steps = _steps(item["value"])
        return unit, steps

    @property
    def renames(self) -> dict[str, str]:
        """Field renames of the panel's ``organize`` transformation (``Value #A`` -> header)."""
        for transformation in self.data.get("transformations", []):
            if transformation.get("id") == "organize":
                return dict(transformation.get("options", {}).get("renameByName", {}))
        return {}


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One dashboard file."""

    path: Path
    data: Mapping[str, Any]
    panels: tuple[Panel, ...] = field(default=())

    @property
    def uid(self) -> str:
        return str(self.data["uid"])

    @property
    def title(self) -> str:
        return str(self.data["title"])

    @property
    def constants(self) -> dict[str, str]:
        """Constant template variables (such as ``target``) and their values."""
        return {
            variable["name"]: str(variable["query"])
            for variable in self.data.get("templating", {}).get("list", [])
            if variable.get("type") == "constant"
        }

    @property
    def datasource_variables(self) -> dict[str, str]:
        """Datasource variables by ``${name}``, with their default (a provisioned uid)."""
        return {
            f"${{{variable['name']}}}": str(variable.get("current", {}).get("value", ""))
            for variable in self.data.get("templating", {}).get("list", [])
            if variable.get("type") == "datasource"
        }

    @property
    def query_variables(self) -> tuple[str, ...]:
        """Names of the variables a person picks (team, school)."""
        return tuple(
            variable["name"]
            for variable in self.data.get("templating", {}).get("list", [])
            if variable.get("type") == "query"
        )


def load_dashboards(directory: Path = DASHBOARD_DIR) -> list[Dashboard]:
    """Every ``*.json`` dashboard in ``directory``, sorted by file name."""
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise DashboardError(f"no dashboards in {directory}")
    return [load_dashboard(path) for path in paths]


def load_dashboard(path: Path) -> Dashboard:
    """One dashboard file with its panels flattened (panels inside rows included)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DashboardError(f"{path}: {error}") from None
    board = Dashboard(path, data)
    panels = tuple(_panels(data.get("panels", []), board.datasource_variables))
    return Dashboard(path, data, panels)


def _steps(thresholds: Mapping[str, Any] | None) -> list[tuple[float | None, str]]:
    if not thresholds:
        return []
    return [(step.get("value"), str(step.get("color"))) for step in thresholds.get("steps", [])]


def _panels(
    raw_panels: Sequence[Mapping[str, Any]], variables: Mapping[str, str]
) -> Iterator[Panel]:
    def uid(reference: Mapping[str, Any]) -> str:
        value = str(reference.get("uid", ""))
        return variables.get(value, value)

    for raw in raw_panels:
        datasource = raw.get("datasource") or {}
        queries = tuple(
            Query(
                ref_id=str(target.get("refId", "")),
                datasource_uid=uid(target.get("datasource") or datasource),
                expr=target.get("expr"),
                sql=target.get("rawSql"),
                instant=bool(target.get("instant", False)),
                legend=str(target.get("legendFormat") or ""),
            )
            for target in raw.get("targets", [])
        )
        yield Panel(
            id=int(raw.get("id", -1)),
            title=str(raw.get("title", "")),
            type=str(raw.get("type", "")),
            grid=raw.get("gridPos", {}),
            datasource_uid=uid(datasource) if datasource else None,
            queries=queries,
            unit=str(raw.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")),
            description=str(raw.get("description") or ""),
            data=raw,
        )
        yield from _panels(raw.get("panels", []), variables)


def structural_problems(dashboard: Dashboard, datasources: Mapping[str, str]) -> list[str]:
    """What Grafana would reject or show wrongly; an empty list when the dashboard is sound.

    ``datasources`` maps the provisioned datasources' uids to their types.
    """
    problems: list[str] = []
    data = dashboard.data
    for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        if key not in data:
            problems.append(f"missing top-level {key!r}")
    if not isinstance(data.get("schemaVersion"), int) or data["schemaVersion"] < 36:
        problems.append("schemaVersion must be an integer of at least 36")
    if _IMPORT_VARIABLE.search(dashboard.path.read_text(encoding="utf-8")):
        problems.append("uses ${DS_...} import variables: provision the copy without them")
    for name, default in dashboard.datasource_variables.items():
        if default not in datasources:
            problems.append(f"datasource variable {name} defaults to {default!r}, not provisioned")
    seen: set[int] = set()
    for panel in dashboard.panels:
        where = f"panel {panel.id} {panel.title!r}"
        if panel.id in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(panel.id)
        grid = panel.grid
        if not all(isinstance(grid.get(key), int) for key in ("x", "y", "w", "h")):
            problems.append(f"{where}: gridPos needs integer x, y, w, h")
        elif not (grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24):
            problems.append(f"{where}: gridPos outside the 24-column grid")
        elif grid["h"] < 1 or grid["y"] < 0:
            problems.append(f"{where}: gridPos height or row invalid")
        if panel.type == "row":
            continue
        if not panel.queries:
            problems.append(f"{where}: no queries")
        for query in panel.queries:
            kind = datasources.get(query.datasource_uid)
            if kind is None:
                problems.append(f"{where}: datasource uid {query.datasource_uid!r} not provisioned")
            elif kind == PROMETHEUS_TYPE and not query.expr:
                problems.append(f"{where}: Prometheus target {query.ref_id} has no expr")
            elif kind == POSTGRES_TYPE and not query.sql:
                problems.append(f"{where}: PostgreSQL target {query.ref_id} has no rawSql")
    problems.extend(_overlaps(dashboard.panels))
    return problems


def convention_problems(dashboard: Dashboard) -> list[str]:
    """Where the dashboard breaks the conventions its panels follow (see
    :mod:`mhst_tracker.grafana`); an empty list when it keeps them all."""
    problems: list[str] = []
    clinical = dashboard.uid != "mhst-operations"
    if clinical and set(dashboard.query_variables) != {"team", "school"}:
        problems.append(f"variables {dashboard.query_variables}, not team and school")
    for panel in dashboard.panels:
        if panel.type == "row":
            continue
        where = f"panel {panel.id} {panel.title!r}"
        if not panel.description:
            problems.append(f"{where}: no description")
        if "unit" not in panel.data.get("fieldConfig", {}).get("defaults", {}):
            problems.append(f"{where}: no unit")
        references = [panel.data.get("datasource") or {}] + [
            target.get("datasource") or {} for target in panel.data.get("targets", [])
        ]
        if not all(_DATASOURCE_VARIABLE.match(str(ref.get("uid", ""))) for ref in references):
            problems.append(f"{where}: datasource not a template variable")
        for query in panel.queries:
            expr = query.expr or ""
            if _FIXED_RATE_WINDOW.search(expr):
                problems.append(f"{where}: a fixed rate window instead of $__rate_interval")
            filtered = 'team=~"$team"' in expr and 'school=~"$school"' in expr
            if clinical and any(metric in expr for metric in CLINICAL_METRICS) and not filtered:
                problems.append(f"{where}: {query.ref_id} not filtered by $team and $school")
        for name, steps in _figures_shown(panel):
            colours = {colour for _, colour in steps}
            if len(colours) < 3:
                problems.append(f"{where}: {name} without red/amber/green thresholds")
    return problems


def _figures_shown(panel: Panel) -> Iterator[tuple[str, list[tuple[float | None, str]]]]:
    """The share and breach figures a panel shows, with the thresholds that colour them."""
    if panel.type == "table" and panel.renames:
        for query in panel.queries:
            expr = query.expr or ""
            if SHARE_METRIC in expr or any(metric in expr for metric in BREACH_METRICS):
                header = panel.renames.get(f"Value #{query.ref_id}", query.ref_id)
                yield header, panel.column(header)[1]
        return
    for query in panel.queries:
        expr = query.expr or ""
        if SHARE_METRIC in expr or any(metric in expr for metric in BREACH_METRICS):
            yield query.ref_id, panel.thresholds
            return


def _overlaps(panels: Sequence[Panel]) -> Iterator[str]:
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        grid = panel.grid
        if not all(isinstance(grid.get(key), int) for key in ("x", "y", "w", "h")):
            continue
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel.id)
                if other != panel.id:
                    yield f"panel {panel.id} overlaps panel {other}"
                    return


def _regex_value(values: Sequence[str] | None) -> str:
    if not values:
        return ALL
    return "|".join(re.escape(value) for value in values)


def substitute_promql(
    expr: str, dashboard: Dashboard, selection: Mapping[str, Sequence[str]] | None = None
) -> str:
    """``expr`` with the dashboard's variables filled in (unselected variables mean All)."""
    selection = selection or {}
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name, value in dashboard.constants.items():
        expr = expr.replace(f"${name}", value)
    for name in dashboard.query_variables:
        expr = expr.replace(f"${name}", _regex_value(selection.get(name)))
    return expr


def substitute_sql(
    sql: str,
    start: datetime,
    end: datetime,
    selection: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """``sql`` with ``${name:regex}`` and ``$__timeFilter(column)`` filled in as Grafana does."""
    selection = selection or {}
    sql = _SQL_REGEX_VARIABLE.sub(
        lambda match: _regex_value(selection.get(match.group(1))).replace("'", "''"), sql
    )
    return _TIME_FILTER.sub(
        lambda match: f"{match.group(1)} BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'",
        sql,
    )


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant query's answer: its labels and value."""

    labels: Mapping[str, str]
    value: float


def _api(url: str, endpoint: str, params: Mapping[str, str], expr: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer; ``DashboardError`` on failure."""
    address = f"{url.rstrip('/')}/api/v1/{endpoint}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(address, timeout=15) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.load(error)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ServiceUnavailable(
            f"cannot reach Prometheus at {url} (MHST_PROMETHEUS_URL): {reason}; "
            "check that it is running"
        ) from None
    if body.get("status") != "success":
        raise DashboardError(f"query failed: {body.get('error')}: {expr}")
    return body["data"]


def query_prometheus(url: str, expr: str, at: float | None = None) -> list[Sample]:
    """Run an instant query against the Prometheus at ``url``; ``DashboardError`` on failure."""
    params = {"query": expr}
    if at is not None:
        params["time"] = str(at)
    data = _api(url, "query", params, expr)
    if data["resultType"] == "scalar":
        return [Sample({}, float(data["result"][1]))]
    return [
        Sample(
            {key: value for key, value in item["metric"].items() if key != "__name__"},
            float(item["value"][1]),
        )
        for item in data["result"]
    ]


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and (POSIX time, value) points."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


def query_prometheus_range(
    url: str, expr: str, start: float, end: float, step: float
) -> list[Series]:
    """Run a range query against the Prometheus at ``url``; ``DashboardError`` on failure."""
    params = {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
    data = _api(url, "query_range", params, expr)
    return [
        Series(
            {key: value for key, value in item["metric"].items() if key != "__name__"},
            tuple((float(time), float(value)) for time, value in item["values"]),
        )
        for item in data["result"]
    ]


def legend(template: str, labels: Mapping[str, str]) -> str:
    """A series' name from a Grafana legend format (``{{team}} {{stage}}``)."""
    if template and template != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items())) or "value"


def format_value(value: float, unit: str) -> str:
    """A value the way a panel with Grafana unit ``unit`` shows it."""
    if math.isnan(value):
        return "no value (NaN)"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        return f"{value:.3g} s"
    if unit == "d":
        return f"{value:.1f} days"
    if unit == "ops":
        return f"{value:.3g}/s"
    if unit == "dateTimeAsIso":
        return datetime.fromtimestamp(value).isoformat(timespec="seconds")
    return f"{value:g}"


def first_sample_time(url: str) -> float:
    """POSIX time of the oldest sample Prometheus holds in memory (its head block); 0 if it
    cannot say."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/status/tsdb", timeout=15) as reply:
            body = json.load(reply)
        return float(body["data"]["headStats"]["minTime"]) / 1000
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


async def run_sql(database_url: str, sql: str) -> list[dict[str, Any]]:
    """The rows of one SQL panel's query (variables filled in) on the store at the URL."""
    engine = create_engine(database_url)
    try:
        async with reachable(database_url), engine.connect() as connection:
            result = await connection.execute(text(sql.replace(":", r"\:")))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()
