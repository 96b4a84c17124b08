"""The dashboard JSON is structurally sound and variables are filled in as Grafana does."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mhst_tracker.dashboards import (
    Dashboard,
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


def test_clinical_panels_filter_by_team_and_school(dashboards: list[Dashboard]) -> None:
    (manager,) = [board for board in dashboards if board.uid == "mhst-service-manager"]
    assert manager.query_variables == ("team", "school")
    assert manager.constants == {"target": "0.9"}
    for panel in manager.panels:
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
