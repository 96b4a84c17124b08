"""The dashboard JSON is built from code (and committed as built), structurally sound, keeps
Grafana's conventions, and its variables are filled in as Grafana does."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mhst_tracker import grafana
from mhst_tracker.dashboards import (
    Dashboard,
    convention_problems,
    load_dashboard,
    load_dashboards,
    structural_problems,
    substitute_promql,
    substitute_sql,
)
from tests.integration.dashboards.conftest import provisioned_datasources


@pytest.fixture(scope="module")
def dashboards() -> list[Dashboard]:
    return load_dashboards()


def test_the_three_dashboards_exist(dashboards: list[Dashboard]) -> None:
    assert {board.path.name for board in dashboards} == {
        "service-manager.json",
        "commissioner.json",
        "operations.json",
    }
    assert len({board.uid for board in dashboards}) == 3


def test_every_dashboard_is_structurally_sound(dashboards: list[Dashboard]) -> None:
    datasources = provisioned_datasources()
    assert set(datasources.values()) == {"prometheus", "grafana-postgresql-datasource"}
    for board in dashboards:
        assert structural_problems(board, datasources) == [], board.title


def test_the_structural_check_finds_what_grafana_would_reject(
    dashboards: list[Dashboard], tmp_path: Path
) -> None:
    board = dashboards[0]
    panels = list(board.data["panels"])
    broken_panel = dict(panels[1], id=panels[2]["id"], datasource={"uid": "${DS_PROMETHEUS}"})
    broken_panel["targets"] = [dict(panels[1]["targets"][0], datasource={"uid": "elsewhere"})]
    broken_panel["gridPos"] = {"x": 20, "y": 0, "w": 10, "h": 4}
    data = dict(board.data, panels=[broken_panel, *panels[2:]])
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    problems = structural_problems(load_dashboard(path), provisioned_datasources())
    text = "\n".join(problems)
    assert "duplicate id" in text
    assert "${DS_...}" in text
    assert "'elsewhere' not provisioned" in text
    assert "outside the 24-column grid" in text


def test_the_committed_json_is_what_the_code_builds() -> None:
    """Run ``python -m mhst_tracker.grafana`` after changing a dashboard."""
    for name, data in grafana.built().items():
        committed = (grafana.DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert committed == grafana.render(data), f"dashboards/{name} is stale"
        exported = (grafana.IMPORT_DIR / name).read_text(encoding="utf-8")
        assert exported == grafana.render(grafana.for_import(data)), f"import/{name} is stale"


def test_every_dashboard_keeps_the_conventions(dashboards: list[Dashboard]) -> None:
    for board in dashboards:
        assert convention_problems(board) == [], board.title


def test_the_convention_check_finds_each_breach(
    dashboards: list[Dashboard], tmp_path: Path
) -> None:
    (manager,) = [board for board in dashboards if board.uid == "mhst-service-manager"]
    data = json.loads(json.dumps(manager.data))
    headline, waiting = data["panels"][1], data["panels"][2]
    del headline["description"]
    headline["fieldConfig"]["defaults"]["thresholds"]["steps"] = [{"value": None, "color": "blue"}]
    del waiting["fieldConfig"]["defaults"]["unit"]
    waiting["datasource"] = {"type": "prometheus", "uid": "mhst-prometheus"}
    waiting["targets"][0]["expr"] = "sum(rate(mhst_referrals_waiting[5m]))"
    data["templating"]["list"] = [v for v in data["templating"]["list"] if v["name"] != "school"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    text = "\n".join(convention_problems(load_dashboard(path)))
    assert "variables ('team',), not team and school" in text
    assert "panel 2 'Seen within four weeks': no description" in text
    assert "panel 2 'Seen within four weeks': A without red/amber/green thresholds" in text
    assert "panel 3 'Waiting': no unit" in text
    assert "panel 3 'Waiting': datasource not a template variable" in text
    assert "panel 3 'Waiting': a fixed rate window instead of $__rate_interval" in text
    assert "panel 3 'Waiting': A not filtered by $team and $school" in text


def test_the_import_copy_asks_for_its_datasources() -> None:
    exported = json.loads((grafana.IMPORT_DIR / "service-manager.json").read_text())
    assert [(item["name"], item["pluginId"]) for item in exported["__inputs"]] == [
        ("DS_PROMETHEUS", "prometheus"),
        ("DS_STORE", "grafana-postgresql-datasource"),
    ]
    defaults = {
        variable["name"]: variable["current"]["value"]
        for variable in exported["templating"]["list"]
        if variable["type"] == "datasource"
    }
    assert defaults == {"prometheus": "${DS_PROMETHEUS}", "store": "${DS_STORE}"}


@pytest.mark.parametrize("uid", ["mhst-service-manager", "mhst-commissioner"])
def test_clinical_panels_filter_by_team_and_school(dashboards: list[Dashboard], uid: str) -> None:
    (board,) = [board for board in dashboards if board.uid == uid]
    assert board.query_variables == ("team", "school")
    assert board.constants == {"target": "0.9"}
    for panel in board.panels:
        for query in panel.queries:
            if query.expr and "mhst_" in query.expr:
                assert 'team=~"$team"' in query.expr
                assert 'school=~"$school"' in query.expr
            if query.sql:
                assert "${team:regex}" in query.sql
                assert "${school:regex}" in query.sql


def test_promql_variables_are_filled_in(dashboards: list[Dashboard]) -> None:
    (manager,) = [board for board in dashboards if board.uid == "mhst-service-manager"]
    expr = 'sum(x{team=~"$team", school=~"$school"}) > vector($target)'
    assert substitute_promql(expr, manager) == 'sum(x{team=~".*", school=~".*"}) > vector(0.9)'
    assert substitute_promql("rate(x[$__rate_interval])", manager) == "rate(x[1m])"
    assert (
        substitute_promql(expr, manager, {"team": ["MHST001", "A.B"]})
        == 'sum(x{team=~"MHST001|A\\.B", school=~".*"}) > vector(0.9)'
    )


def test_sql_variables_and_time_filter_are_filled_in() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = datetime(2026, 1, 8, tzinfo=UTC)
    sql = "WHERE team_id ~ '^(${team:regex})$' AND $__timeFilter(detected_at)"
    assert substitute_sql(sql, start, end, {"team": ["O'Neil"]}) == (
        "WHERE team_id ~ '^(O''Neil)$' AND detected_at BETWEEN "
        "'2026-01-01T00:00:00+00:00' AND '2026-01-08T00:00:00+00:00'"
    )
    assert substitute_sql(sql, start, end).startswith("WHERE team_id ~ '^(.*)$'")
