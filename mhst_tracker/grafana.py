"""The three Grafana dashboards, built from code with grafana-foundation-sdk.

``python -m mhst_tracker.grafana`` writes ``dashboards/*.json`` (provisioned as they are) and
``deploy/grafana/import/*.json`` (the same with ``__inputs``, for Dashboards > Import in a
Grafana that has its own datasources). The JSON is never edited by hand: a test fails when it
differs from what this module builds.

Conventions every panel follows: its datasource is a template variable (``${prometheus}``,
``${store}``) whose default is the provisioned uid; every field has a unit; the four-week
share and breach counts carry the red/amber/green thresholds of :mod:`mhst_tracker.rag`
(trends of the share draw them as dashed lines, the target among them); rates use
``$__rate_interval``; counts where nothing means zero show 0, not "No data"; every panel has
a description; clinical panels filter by ``$team`` and ``$school``.

**Adding a panel**: in the dashboard's function below, call the :class:`Board` method of its
kind where it should appear (``board.stat``, ``board.timeseries``, ``board.bargauge``,
``board.table`` for PromQL columns, ``board.sql_table`` for the store), with a title, a
description, its queries (:class:`Q`), a unit and, for a share or a breach count,
``SHARE`` or ``BREACHES`` thresholds; ``width`` and ``height`` are in Grafana's grid units
(24 columns) and panels flow left to right, a new line when a row is full. Then run
``python -m mhst_tracker.grafana`` and commit the JSON. The end-to-end test runs every query
on a real Prometheus and fails on one that returns nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import prometheus as prometheus_models

from mhst_tracker.rag import AMBER_FROM, COLOURS, TARGET_SHARE

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DASHBOARD_DIR: Final = REPO_ROOT / "dashboards"
IMPORT_DIR: Final = REPO_ROOT / "deploy" / "grafana" / "import"
PROMETHEUS_UID: Final = "mhst-prometheus"
POSTGRES_UID: Final = "mhst-postgres"
PROMETHEUS_TYPE: Final = "prometheus"
POSTGRES_TYPE: Final = "grafana-postgresql-datasource"
SCHEMA_VERSION: Final = 39

PERCENT: Final = "percentunit"
COUNT: Final = "none"
DAYS: Final = "d"
SECONDS: Final = "s"
PER_SECOND: Final = "ops"
DATE_TIME: Final = "dateTimeAsIso"

BREACH_AMBER_FROM: Final = 1
BREACH_RED_FROM: Final = 10
"""A breach count is green at 0, amber from 1, red from 10."""

Steps = tuple[tuple[float | None, str], ...]
SHARE: Final[Steps] = (
    (None, COLOURS["red"]),
    (AMBER_FROM, COLOURS["amber"]),
    (TARGET_SHARE, COLOURS["green"]),
)
BREACHES: Final[Steps] = (
    (None, COLOURS["green"]),
    (BREACH_AMBER_FROM, COLOURS["amber"]),
    (BREACH_RED_FROM, COLOURS["red"]),
)
ZERO_IS_GOOD: Final[Steps] = ((None, COLOURS["green"]), (1, COLOURS["amber"]))
AT_LEAST_ONE: Final[Steps] = ((None, COLOURS["red"]), (1, COLOURS["green"]))
NEUTRAL: Final[Steps] = ((None, "#4c72b0"),)
WITHDRAWN_SHARE: Final[Steps] = (
    (None, COLOURS["green"]),
    (0.05, COLOURS["amber"]),
    (0.2, COLOURS["red"]),
)
"""The share of breaches withdrawn: green below 5%, amber from 5%, red from 20%."""
WITHDRAWN_SHARE_1D: Final = (
    'sum(increase(mhst_alerts_total{kind="breach_withdrawn"}[1d]))'
    ' / (sum(increase(mhst_alerts_total{kind="breach"}[1d])) > 0)'
)
"""Breaches withdrawn in the last day as a share of those raised (no series: none raised)."""

PROMETHEUS: Final = models.DataSourceRef(type_val=PROMETHEUS_TYPE, uid="${prometheus}")
STORE: Final = models.DataSourceRef(type_val=POSTGRES_TYPE, uid="${store}")
TEAM_SCHOOL: Final = 'team=~"$team", school=~"$school"'
"""The clinical filter (a series without a school matches All)."""


@dataclass(frozen=True, slots=True)
class Q:
    """A PromQL target: its expression and legend (``{{label}}``)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a PromQL table: one instant query, its header, unit and thresholds."""

    expr: str
    header: str
    unit: str
    steps: Steps | None = None


class _SqlQuery(variants.Dataquery):
    """A raw SQL target of the PostgreSQL datasource (no builder exists for it)."""

    def __init__(self, ref_id: str, sql: str) -> None:
        self.ref_id = ref_id
        self.sql = sql

    def to_json(self) -> dict[str, Any]:
        return {
            "datasource": {"type": POSTGRES_TYPE, "uid": "${store}"},
            "editorMode": "code",
            "format": "table",
            "rawQuery": True,
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class _SqlBuilder(cogbuilder.Builder[variants.Dataquery]):
    def __init__(self, query: _SqlQuery) -> None:
        self.query = query

    def build(self) -> variants.Dataquery:
        return self.query


def _thresholds(steps: Steps) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=colour) for value, colour in steps])
    )


def _prometheus(query: Q, ref_id: str, instant: bool) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref_id).datasource(PROMETHEUS)
    target = target.legend_format(query.legend or "__auto")
    return target.instant() if instant else target.range()


def _reduce() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


@dataclass
class Board:
    """One dashboard being built; panels flow left to right on Grafana's 24-column grid."""

    uid: str
    title: str
    description: str
    tags: Sequence[str]
    time_from: str
    variables: Sequence[str]
    """Which of ``team``, ``school`` and ``target`` it has (datasources always)."""
    panels: list[Any] = field(default_factory=list)

    # --- kinds of panel ---------------------------------------------------------------

    def row(self, title: str) -> None:
        """A row header: the panels after it sit under ``title``."""
        self.panels.append(builders.Row(title))

    def stat(
        self,
        title: str,
        description: str,
        queries: Sequence[Q],
        unit: str,
        steps: Steps = NEUTRAL,
        *,
        width: int,
        height: int = 5,
        zero_when_empty: bool = False,
    ) -> None:
        """A single figure (with a sparkline); ``zero_when_empty`` shows 0 for no series."""
        panel = (
            stat.Panel()
            .color_mode(common.BigValueColorMode.VALUE)
            .graph_mode(common.BigValueGraphMode.AREA)
            .text_mode(common.BigValueTextMode.AUTO)
            .reduce_options(_reduce())
        )
        self._add(panel, title, description, queries, unit, steps, width, height, True)
        if zero_when_empty:
            panel.no_value("0")

    def bargauge(
        self,
        title: str,
        description: str,
        query: Q,
        unit: str,
        steps: Steps = NEUTRAL,
        *,
        width: int,
        height: int = 8,
        maximum: float | None = None,
    ) -> None:
        """One bar per series, coloured by ``steps``; empty means 0."""
        panel = (
            bargauge.Panel()
            .orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(_reduce())
            .min(0)
            .no_value("0")
        )
        if maximum is not None:
            panel.max(maximum)
        self._add(panel, title, description, [query], unit, steps, width, height, True)

    def timeseries(
        self,
        title: str,
        description: str,
        queries: Sequence[Q],
        unit: str,
        steps: Steps | None = None,
        *,
        width: int,
        height: int = 8,
        zero_when_empty: bool = False,
    ) -> None:
        """Lines over the dashboard's time range; ``steps`` draws dashed threshold lines (for
        the share: the target at the standard, and the amber line)."""
        panel = (
            timeseries.Panel()
            .fill_opacity(10)
            .legend(
                common_builders.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
        )
        if steps is not None:
            panel.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphTresholdsStyleMode.DASHED
                )
            )
        if unit == PERCENT:
            panel.min(0).max(1)
        if zero_when_empty:
            panel.no_value("0")
        self._add(panel, title, description, queries, unit, steps or NEUTRAL, width, height, False)

    def table(
        self,
        title: str,
        description: str,
        key: Sequence[str],
        columns: Sequence[Column],
        *,
        width: int,
        height: int = 9,
    ) -> None:
        """One row per value of the ``key`` labels, one column per instant query."""
        panel = table.Panel().show_header(True).cell_height(common.TableCellHeight.SM)
        panel.with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
        rename = {f"Value #{_ref(index)}": column.header for index, column in enumerate(columns)}
        rename.update({label: label.capitalize() for label in key})
        panel.with_transformation(
            models.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": rename},
            )
        )
        for column in columns:
            properties = [models.DynamicConfigValue(id_val="unit", value=column.unit)]
            if column.steps is not None:
                properties.append(
                    models.DynamicConfigValue(
                        id_val="thresholds",
                        value={
                            "mode": "absolute",
                            "steps": [{"value": v, "color": c} for v, c in column.steps],
                        },
                    )
                )
                properties.append(
                    models.DynamicConfigValue(
                        id_val="custom.cellOptions", value={"type": "color-background"}
                    )
                )
            panel.override_by_name(column.header, properties)
        queries = [Q(column.expr) for column in columns]
        for target in (_prometheus(q, _ref(i), True) for i, q in enumerate(queries)):
            target.format(prometheus_models.PromQueryFormat.TABLE)
            panel.with_target(target)
        panel.title(title).description(description).datasource(PROMETHEUS).unit(COUNT)
        self.panels.append(panel.height(height).span(width))

    def sql_table(
        self,
        title: str,
        description: str,
        sql: str,
        units: dict[str, str],
        *,
        width: int = 24,
        height: int = 10,
    ) -> None:
        """Rows from the store (PostgreSQL); ``units`` by column name (others: text)."""
        panel = table.Panel().show_header(True).cell_height(common.TableCellHeight.SM)
        for name, unit in units.items():
            panel.override_by_name(name, [models.DynamicConfigValue(id_val="unit", value=unit)])
        panel.title(title).description(description).datasource(STORE).unit("string")
        panel.with_target(_SqlBuilder(_SqlQuery("A", sql)))
        self.panels.append(panel.height(height).span(width))

    def _add(
        self,
        panel: Any,
        title: str,
        description: str,
        queries: Sequence[Q],
        unit: str,
        steps: Steps,
        width: int,
        height: int,
        instant: bool,
    ) -> None:
        panel.title(title).description(description).datasource(PROMETHEUS).unit(unit)
        panel.thresholds(_thresholds(steps))
        for index, query in enumerate(queries):
            panel.with_target(_prometheus(query, _ref(index), instant))
        self.panels.append(panel.height(height).span(width))

    # --- the whole dashboard ----------------------------------------------------------

    def build(self) -> dict[str, Any]:
        """The dashboard's JSON, as provisioned."""
        dashboard = (
            builders.Dashboard(self.title)
            .uid(self.uid)
            .description(self.description)
            .tags(list(self.tags))
            .timezone("Europe/London")
            .time(self.time_from, "now")
            .refresh("1m")
            .tooltip(models.DashboardCursorSync.CROSSHAIR)
            .editable()
        )
        for variable in self._variables():
            dashboard.with_variable(variable)
        for panel in self.panels:
            if isinstance(panel, builders.Row):
                dashboard.with_row(panel)
            else:
                dashboard.with_panel(panel)
        data: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
        data["schemaVersion"] = SCHEMA_VERSION
        data.pop("style", None)
        for number, panel_data in enumerate(data["panels"], start=1):
            panel_data["id"] = number
            if panel_data.get("options") is None:
                panel_data.pop("options", None)
        for variable_data in data["templating"]["list"]:
            variable_data.pop("id", None)
        return data

    def _variables(self) -> list[Any]:
        variables: list[Any] = [
            builders.DatasourceVariable("prometheus")
            .label("Prometheus")
            .type(PROMETHEUS_TYPE)
            .current(
                models.VariableOption(selected=True, text=PROMETHEUS_UID, value=PROMETHEUS_UID)
            )
        ]
        if any(isinstance(panel, table.Panel) and _uses_store(panel) for panel in self.panels):
            variables.append(
                builders.DatasourceVariable("store")
                .label("Store (PostgreSQL)")
                .type(POSTGRES_TYPE)
                .current(
                    models.VariableOption(selected=True, text=POSTGRES_UID, value=POSTGRES_UID)
                )
            )
        if "team" in self.variables:
            variables.append(_pick("team", "Team", "label_values(mhst_referrals_waiting, team)"))
        if "school" in self.variables:
            variables.append(
                _pick(
                    "school",
                    "School (URN)",
                    'label_values(mhst_referrals_waiting{team=~"$team"}, school)',
                )
            )
        if "target" in self.variables:
            variables.append(
                builders.ConstantVariable("target")
                .label("Target share seen within four weeks")
                .value(str(TARGET_SHARE))
                .description(
                    "The commissioned target for the share of completed pathways seen within "
                    "four weeks."
                )
            )
        return variables


def _uses_store(panel: Any) -> bool:
    targets = panel.build().targets or []
    return any(isinstance(target, _SqlQuery) for target in targets)


def _pick(name: str, label: str, query: str) -> builders.QueryVariable:
    return (
        builders.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def _ref(index: int) -> str:
    return chr(ord("A") + index)


def _share(by: str = "") -> str:
    """The share seen within the standard, overall or ``sum by (by)``."""
    group = f"sum by ({by}) " if by else "sum"
    return (
        f"{group}(mhst_pathways_seen_within_standard{{{TEAM_SCHOOL}}}) / "
        f"{group}(mhst_pathways_completed{{{TEAM_SCHOOL}}})"
    )


def _sum(metric: str, by: str = "", extra: str = "") -> str:
    group = f"sum by ({by}) " if by else "sum"
    selector = f"{extra}, {TEAM_SCHOOL}" if extra else TEAM_SCHOOL
    return f"{group}({metric}{{{selector}}})"


def _quantile(q: float, by: str = "") -> str:
    keys = f"{by}, le" if by else "le"
    return (
        f"histogram_quantile({q}, sum by ({keys}) "
        f"(mhst_pathway_wait_seconds_bucket{{{TEAM_SCHOOL}}})) / 86400"
    )


SHARE_DESCRIPTION: Final = (
    "Completed pathways (intervention started) whose intervention started within 28 days of "
    "receipt, as a share of all completed pathways. Green at or above the 90% target, amber "
    "from 80%, red below."
)


def service_manager() -> Board:
    """Who is waiting, for how long, who is about to breach, for one or more teams."""
    board = Board(
        "mhst-service-manager",
        "MHST: service manager",
        "Who is waiting, for how long, who is about to breach: the four-week standard for one "
        "or more teams.",
        ("mhst", "service-manager"),
        "now-7d",
        ("team", "school", "target"),
    )
    board.row("Now")
    board.stat(
        "Seen within four weeks",
        f"{SHARE_DESCRIPTION} The second figure is the target.",
        [Q(_share(), "seen within four weeks"), Q("vector($target)", "target")],
        PERCENT,
        SHARE,
        width=6,
    )
    board.stat(
        "Waiting",
        "Open referrals whose intervention has not started.",
        [Q(f"{_sum('mhst_referrals_waiting')} or vector(0)", "waiting")],
        COUNT,
        width=4,
        zero_when_empty=True,
    )
    board.stat(
        "Waiting past the standard",
        "Waiting referrals whose intervention due date (28 days) has passed: breaches now.",
        [Q(f"{_sum('mhst_referrals_waiting_past_standard')} or vector(0)", "past standard")],
        COUNT,
        BREACHES,
        width=5,
        zero_when_empty=True,
    )
    board.stat(
        "At risk now",
        "Waiting referrals with a stage past its warning day, not yet breached.",
        [Q(f"{_sum('mhst_referrals_at_risk')} or vector(0)", "at risk")],
        COUNT,
        ZERO_IS_GOOD,
        width=4,
        zero_when_empty=True,
    )
    board.stat(
        "Completed pathways",
        "Referrals whose intervention has started (the denominator of the share).",
        [Q(f"{_sum('mhst_pathways_completed')} or vector(0)", "completed")],
        COUNT,
        width=5,
        zero_when_empty=True,
    )
    board.bargauge(
        "Waiting by band (days waited)",
        "Waiting referrals by days waited since receipt.",
        Q(_sum("mhst_referrals_waiting", "band"), "{{band}}"),
        COUNT,
        width=8,
    )
    board.bargauge(
        "Breached stages (current referrals)",
        "Referrals whose stage is breached (waiting, seen late or closed after the due date).",
        Q(_sum("mhst_stage_breaches", "stage"), "{{stage}}"),
        COUNT,
        BREACHES,
        width=8,
    )
    board.timeseries(
        "Breach alerts per stage per week",
        "Breach alerts raised in the seven days before each moment, by stage.",
        [
            Q(
                f'sum by (stage) (increase(mhst_alerts_total{{kind="breach", {TEAM_SCHOOL}}}[1w]))',
                "{{stage}}",
            )
        ],
        COUNT,
        BREACHES,
        width=8,
    )
    board.row("Teams and schools")
    columns = [
        Column(_share("{by}"), "Seen within 4 weeks", PERCENT, SHARE),
        Column(_sum("mhst_referrals_waiting", "{by}"), "Waiting", COUNT),
        Column(
            _sum("mhst_referrals_waiting_past_standard", "{by}"), "Past standard", COUNT, BREACHES
        ),
        Column(_sum("mhst_referrals_at_risk", "{by}"), "At risk", COUNT, ZERO_IS_GOOD),
    ]
    for title, key in (("By team", ("team",)), ("By school", ("team", "school"))):
        board.table(
            title,
            f"{title}: share seen within four weeks, waiting, waiting past the standard, at risk.",
            key,
            [_keyed(column, key) for column in columns],
            width=12,
        )
    board.row("Trends")
    board.timeseries(
        "Seen within four weeks",
        f"{SHARE_DESCRIPTION} The dashed lines are the 80% and 90% (target) thresholds.",
        [Q(_share(), "seen within four weeks")],
        PERCENT,
        SHARE,
        width=12,
    )
    board.timeseries(
        "Waiting by band",
        "Waiting referrals by days waited, over time.",
        [Q(_sum("mhst_referrals_waiting", "band"), "{{band}}")],
        COUNT,
        width=12,
    )
    board.row("Waiting list")
    board.sql_table(
        "Waiting list by due date",
        "Open referrals from the store, earliest due first; pseudonymous referral ids only.",
        """SELECT referral_id AS "Referral", team_id AS "Team", school_id AS "School",
       received_on AS "Received", days_waited AS "Days waited",
       next_stage AS "Next stage", next_due_on AS "Due",
       CASE WHEN status = 'waiting_breached' THEN 'past standard'
            WHEN jsonb_array_length(at_risk_stages) > 0 THEN 'at risk' ELSE '' END AS "Flag",
       as_of AS "State as of"
FROM referrals
WHERE status IN ('waiting_within_standard', 'waiting_breached')
  AND team_id ~ '^(${team:regex})$'
  AND coalesce(school_id, '') ~ '^(${school:regex})$'
ORDER BY next_due_on NULLS LAST, days_waited DESC, referral_id
LIMIT 500""",
        {"Days waited": DAYS, "State as of": DATE_TIME},
        height=12,
    )
    board.sql_table(
        "Recent alerts",
        "Alerts in the time range, newest first, with what became of their delivery.",
        """SELECT detected_at AS "Detected", referral_id AS "Referral", team_id AS "Team",
       school_id AS "School", stage AS "Stage", kind AS "Kind", due_on AS "Due",
       days_waited AS "Days waited", delivery_status AS "Delivery"
FROM alerts
WHERE team_id ~ '^(${team:regex})$'
  AND coalesce(school_id, '') ~ '^(${school:regex})$'
  AND $__timeFilter(detected_at)
ORDER BY detected_at DESC
LIMIT 200""",
        {"Detected": DATE_TIME, "Days waited": DAYS},
    )
    return board


def _keyed(column: Column, key: Sequence[str]) -> Column:
    return Column(
        column.expr.replace("{by}", ", ".join(key)), column.header, column.unit, column.steps
    )


def commissioner() -> Board:
    """All teams side by side against the standard."""
    board = Board(
        "mhst-commissioner",
        "MHST: commissioner",
        "All teams side by side against the four-week standard.",
        ("mhst", "commissioner"),
        "now-90d",
        ("team", "school", "target"),
    )
    board.row("All teams")
    board.stat(
        "Seen within four weeks (all selected teams)",
        f"{SHARE_DESCRIPTION} The second figure is the target.",
        [Q(_share(), "seen within four weeks"), Q("vector($target)", "target")],
        PERCENT,
        SHARE,
        width=8,
    )
    board.stat(
        "Waiting past the standard",
        "Waiting referrals whose intervention due date (28 days) has passed.",
        [Q(f"{_sum('mhst_referrals_waiting_past_standard')} or vector(0)", "past standard")],
        COUNT,
        BREACHES,
        width=8,
        zero_when_empty=True,
    )
    board.stat(
        "Median days waited (completed)",
        "Median days from receipt to intervention of completed pathways, interpolated between "
        "histogram buckets (the monthly report gives the exact figure).",
        [Q(_quantile(0.5), "median")],
        DAYS,
        width=8,
    )
    board.table(
        "Teams side by side",
        "Per team: share seen within four weeks, completed pathways, median and 90th "
        "percentile days waited, breached stages, waiting past the standard, waiting.",
        ("team",),
        [
            Column(_share("team"), "Seen within 4 weeks", PERCENT, SHARE),
            Column(_sum("mhst_pathways_completed", "team"), "Completed", COUNT),
            Column(_quantile(0.5, "team"), "Median days", DAYS),
            Column(_quantile(0.9, "team"), "90th percentile days", DAYS),
            Column(_sum("mhst_stage_breaches", "team"), "Breached stages", COUNT, BREACHES),
            Column(
                _sum("mhst_referrals_waiting_past_standard", "team"),
                "Past standard",
                COUNT,
                BREACHES,
            ),
            Column(_sum("mhst_referrals_waiting", "team"), "Waiting", COUNT),
        ],
        width=24,
        height=10,
    )
    board.bargauge(
        "Seen within four weeks by team",
        SHARE_DESCRIPTION,
        Q(_share("team"), "{{team}}"),
        PERCENT,
        SHARE,
        width=12,
        height=10,
        maximum=1,
    )
    board.bargauge(
        "Waiting past the standard by team",
        "Waiting referrals past their intervention due date, per team.",
        Q(_sum("mhst_referrals_waiting_past_standard", "team"), "{{team}}"),
        COUNT,
        BREACHES,
        width=12,
        height=10,
    )
    board.bargauge(
        "Breached stages by team and stage",
        "Referrals whose stage is breached, per team and stage.",
        Q(_sum("mhst_stage_breaches", "team, stage"), "{{team}} {{stage}}"),
        COUNT,
        BREACHES,
        width=12,
        height=10,
    )
    board.timeseries(
        "Breach alerts per week by team",
        "Breach alerts raised in the seven days before each moment, per team.",
        [
            Q(
                f'sum by (team) (increase(mhst_alerts_total{{kind="breach", {TEAM_SCHOOL}}}[1w]))',
                "{{team}}",
            )
        ],
        COUNT,
        BREACHES,
        width=12,
        height=10,
    )
    board.timeseries(
        "Seen within four weeks by team",
        f"{SHARE_DESCRIPTION} The dashed lines are the 80% and 90% (target) thresholds.",
        [Q(_share("team"), "{{team}}")],
        PERCENT,
        SHARE,
        width=24,
        height=9,
    )
    return board


def _rate_quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket[$__rate_interval])))"


def operations() -> Board:
    """Pipeline health: workers, throughput, lag, dead letters, timers, the ingestion API,
    the store sink, the notifier."""
    board = Board(
        "mhst-operations",
        "MHST: operations",
        "Pipeline health: throughput, lag, dead letters, timers, workers, the ingestion API, "
        "the database sink and the notifier.",
        ("mhst", "operations"),
        "now-6h",
        (),
    )
    rate = "[$__rate_interval]"
    board.row("Workers")
    board.stat(
        "Workers up",
        "Stream workers Prometheus scrapes successfully; 0 means nothing tracks the clock.",
        [Q('sum(up{job="mhst-worker"}) or vector(0)', "up")],
        COUNT,
        AT_LEAST_ONE,
        width=4,
        zero_when_empty=True,
    )
    board.stat(
        "Referrals tracked",
        "Referrals in the workers' state tables, summed over workers.",
        [Q("sum(mhst_referrals_tracked) or vector(0)", "referrals")],
        COUNT,
        width=5,
        zero_when_empty=True,
    )
    board.stat(
        "Dead letters in the last hour",
        "Invalid events sent to the dead-letter topic in the last hour (0 when none).",
        [Q("sum(increase(mhst_events_rejected_total[1h])) or vector(0)", "rejected")],
        COUNT,
        ZERO_IS_GOOD,
        width=5,
        zero_when_empty=True,
    )
    board.timeseries(
        "Worker up",
        "Each worker's scrape status: 1 up, 0 down.",
        [Q('up{job="mhst-worker"}', "{{instance}}")],
        COUNT,
        width=10,
        height=5,
    )
    board.timeseries(
        "Events per second",
        "Valid events applied per second, by event type.",
        [Q(f"sum by (type) (rate(mhst_events_processed_total{rate}))", "{{type}}")],
        PER_SECOND,
        width=12,
    )
    board.timeseries(
        "Dead-letter rate by reason",
        "Invalid events sent to the dead-letter topic per second, by reason.",
        [Q(f"sum by (reason) (rate(mhst_events_rejected_total{rate}))", "{{reason}}")],
        PER_SECOND,
        width=12,
        zero_when_empty=True,
    )
    board.timeseries(
        "Consumer lag (messages)",
        "Messages on each topic not yet committed by the workers (end offset minus committed).",
        [
            Q(
                "sum by (topic) (mhst_faust_topic_partition_end_offset"
                " - mhst_faust_topic_partition_offset_commited)",
                "{{topic}}",
            )
        ],
        COUNT,
        width=12,
    )
    board.timeseries(
        "Processing lag",
        "Wall time from an event's Kafka timestamp to the end of its processing, p50 and p99.",
        [
            Q(_rate_quantile(0.5, "mhst_event_processing_lag_seconds"), "p50"),
            Q(_rate_quantile(0.99, "mhst_event_processing_lag_seconds"), "p99"),
        ],
        SECONDS,
        width=12,
    )
    board.timeseries(
        "Timer lateness",
        "p99 of the wall time from a deadline to its timer's alert, and timer alerts per second.",
        [
            Q(_rate_quantile(0.99, "mhst_timer_lateness_seconds"), "p99 (s)"),
            Q(f"sum(rate(mhst_timer_lateness_seconds_count{rate}))", "timer alerts/s"),
        ],
        SECONDS,
        width=12,
    )
    board.timeseries(
        "Alerts per second by kind",
        "Alerts published per second: breach, at_risk, breach_withdrawn.",
        [Q(f"sum by (kind) (rate(mhst_alerts_total{rate}))", "{{kind}}")],
        PER_SECOND,
        width=12,
    )
    board.timeseries(
        "Partitions and referrals per worker",
        "Partitions of the events topic each worker owns and the referrals it tracks.",
        [
            Q("mhst_worker_partitions_owned", "partitions {{instance}}"),
            Q("mhst_referrals_tracked", "referrals {{instance}}"),
        ],
        COUNT,
        width=12,
    )
    board.timeseries(
        "Faust messages received per second",
        "Messages each worker's consumer received per second (all topics).",
        [Q(f"sum by (instance) (rate(mhst_faust_messages_received_total{rate}))", "{{instance}}")],
        PER_SECOND,
        width=12,
    )
    board.row("Alert quality")
    board.stat(
        "Breaches withdrawn, last day",
        "Breach alerts withdrawn in the last day as a share of those raised. Breaches are "
        "decided only from partitions read to their end, so the tracker's own lag, restarts "
        "and backlogs withdraw none: a rise means a source uploaded events late.",
        [Q(f"{WITHDRAWN_SHARE_1D} or vector(0)", "withdrawn")],
        PERCENT,
        WITHDRAWN_SHARE,
        width=6,
        zero_when_empty=True,
    )
    board.stat(
        "Alert decisions deferred",
        "Breach and at-risk decisions due on the workers' partitions and waiting for the "
        "partition to be read to the broker's end offset (a backlog after a restart, an "
        "outage or a load of history). 0 in steady state.",
        [Q("sum(mhst_worker_deferred_decisions) or vector(0)", "deferred")],
        COUNT,
        ZERO_IS_GOOD,
        width=6,
        zero_when_empty=True,
    )
    board.timeseries(
        "Breaches raised and withdrawn per day",
        "Breach alerts raised and withdrawn in the day before each moment.",
        [
            Q('sum(increase(mhst_alerts_total{kind="breach"}[1d])) or vector(0)', "raised"),
            Q(
                'sum(increase(mhst_alerts_total{kind="breach_withdrawn"}[1d])) or vector(0)',
                "withdrawn",
            ),
        ],
        COUNT,
        width=6,
        height=5,
        zero_when_empty=True,
    )
    board.timeseries(
        "Oldest deferred decision",
        "Wall time since the oldest alert decision still deferred became due, per worker.",
        [Q("mhst_worker_deferred_decision_age_seconds", "{{instance}}")],
        SECONDS,
        width=6,
        height=5,
    )
    board.row("Ingestion API")
    board.timeseries(
        "API requests per second by status",
        "Requests to POST /v1/events answered per second, by HTTP status (202 accepted; 4xx "
        "refused as a whole; 503 while the broker is unavailable).",
        [
            Q(
                f'sum by (status) (rate(mhst_api_requests_total{{route="/v1/events"}}{rate}))',
                "{{status}}",
            )
        ],
        PER_SECOND,
        width=8,
    )
    board.timeseries(
        "API events per second by source",
        "Events each source system sent through the API per second: accepted (acknowledged "
        "by the broker) and rejected (answered with the reason).",
        [
            Q(
                f"sum by (source) (rate(mhst_api_events_accepted_total{rate}))",
                "{{source}} accepted",
            ),
            Q(
                f"sum by (source) (rate(mhst_api_events_rejected_total{rate}))",
                "{{source}} rejected",
            ),
        ],
        PER_SECOND,
        width=8,
        zero_when_empty=True,
    )
    board.timeseries(
        "API produce latency",
        "From a request's events being sent to the broker's acknowledgement of all of them, "
        "p50 and p99.",
        [
            Q(_rate_quantile(0.5, "mhst_api_produce_duration_seconds"), "p50"),
            Q(_rate_quantile(0.99, "mhst_api_produce_duration_seconds"), "p99"),
        ],
        SECONDS,
        width=8,
    )
    board.bargauge(
        "API rejections in the last hour by source and reason",
        "Events the API rejected in the last hour, per source system and reason (0 when none).",
        Q(
            "sum by (source, reason) (increase(mhst_api_events_rejected_total[1h]))",
            "{{source}}: {{reason}}",
        ),
        COUNT,
        ZERO_IS_GOOD,
        width=24,
        height=6,
    )
    board.row("Database sink")
    board.timeseries(
        "Sink lag (messages)",
        "Messages on each topic the store sink has not yet written.",
        [Q("sum by (topic) (mhst_store_sink_lag_messages)", "{{topic}}")],
        COUNT,
        width=8,
    )
    board.timeseries(
        "Sink rows per second",
        "Rows the sink writes per second, by table and outcome (new or duplicate).",
        [
            Q(
                f"sum by (table, outcome) (rate(mhst_store_sink_rows_total{rate}))",
                "{{table}} {{outcome}}",
            )
        ],
        PER_SECOND,
        width=8,
    )
    board.stat(
        "Seconds since the sink's last commit",
        "Time since the sink last committed a batch to the store.",
        [Q("time() - max(mhst_store_sink_last_commit_timestamp_seconds)", "seconds")],
        SECONDS,
        width=8,
        height=8,
    )
    board.row("Notifier")
    board.stat(
        "Notifications failed for good",
        "Deliveries the notifier gave up on: `mhst-tracker notify retry` sends them again.",
        [Q('sum(mhst_notify_ledger_deliveries{status="failed"}) or vector(0)', "failed")],
        COUNT,
        ZERO_IS_GOOD,
        width=6,
        zero_when_empty=True,
    )
    board.stat(
        "Re-sent in the last day",
        "Deliveries sent again with the same message id after a notifier stopped between"
        " sending and recording them (receivers drop the repeat).",
        [Q("sum(increase(mhst_notify_resent_total[1d])) or vector(0)", "re-sent")],
        COUNT,
        ZERO_IS_GOOD,
        width=6,
        zero_when_empty=True,
    )
    board.timeseries(
        "Notifications per second",
        "Delivery attempts per second by recipient, channel and outcome (delivered, retrying,"
        " failed).",
        [
            Q(
                f"sum by (recipient, channel, outcome) (rate(mhst_notify_deliveries_total{rate}))",
                "{{recipient}} {{channel}} {{outcome}}",
            )
        ],
        PER_SECOND,
        width=12,
    )
    board.timeseries(
        "Notification lag",
        "Time from an alert's detection to its delivery, p50 and p99 (a digest's alerts wait"
        " for their digest).",
        [
            Q(_rate_quantile(0.5, "mhst_notify_delivery_lag_seconds"), "p50"),
            Q(_rate_quantile(0.99, "mhst_notify_delivery_lag_seconds"), "p99"),
        ],
        SECONDS,
        width=12,
    )
    board.timeseries(
        "Delivery ledger",
        "Rows of the delivery ledger by status: queued for a digest, pending a retry,"
        " delivered, failed, cancelled.",
        [Q("sum by (status) (mhst_notify_ledger_deliveries)", "{{status}}")],
        COUNT,
        width=12,
    )
    board.sql_table(
        "Rejected events in the store by reason",
        "Invalid input the store recorded in the time range, by reason.",
        """SELECT reason AS "Reason", count(*) AS "Events", max(rejected_at) AS "Last"
FROM rejected_events
WHERE $__timeFilter(rejected_at)
GROUP BY reason
ORDER BY count(*) DESC""",
        {"Events": COUNT, "Last": DATE_TIME},
        height=8,
    )
    return board


BOARDS: Final = {
    "service-manager.json": service_manager,
    "commissioner.json": commissioner,
    "operations.json": operations,
}


def built() -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON by file name."""
    return {name: make().build() for name, make in BOARDS.items()}


def for_import(data: dict[str, Any]) -> dict[str, Any]:
    """A dashboard as Grafana exports it for sharing: ``__inputs`` name its datasources, and
    the datasource variables default to what the person importing picks."""
    exported = copy.deepcopy(data)
    inputs = []
    for variable in exported["templating"]["list"]:
        if variable["type"] != "datasource":
            continue
        name = f"DS_{variable['name'].upper()}"
        plugin = variable["query"]
        inputs.append(
            {
                "name": name,
                "label": variable["label"],
                "description": "",
                "type": "datasource",
                "pluginId": plugin,
                "pluginName": "Prometheus" if plugin == PROMETHEUS_TYPE else "PostgreSQL",
            }
        )
        variable["current"] = {"selected": True, "text": f"${{{name}}}", "value": f"${{{name}}}"}
    exported["__inputs"] = inputs
    exported["__requires"] = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
        *(
            {
                "type": "datasource",
                "id": item["pluginId"],
                "name": item["pluginName"],
                "version": "1.0.0",
            }
            for item in inputs
        ),
    ]
    exported.pop("id", None)
    return exported


def render(data: dict[str, Any]) -> str:
    """The JSON text as committed."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def write(dashboards: Path = DASHBOARD_DIR, imports: Path = IMPORT_DIR) -> list[Path]:
    """Write every dashboard and its import copy; returns the paths written."""
    imports.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in built().items():
        for path, content in ((dashboards / name, data), (imports / name, for_import(data))):
            path.write_text(render(content), encoding="utf-8")
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path.relative_to(REPO_ROOT))
