"""``mhst-tracker dashboard-check`` prints what each panel shows for a real run, and draws
every panel into a static page that headless Chromium shows with the same headline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from deploy.local import PrometheusServer
from mhst_tracker.commands.dashboard_check import dashboard_check_command
from mhst_tracker.dashboards import (
    format_value,
    load_dashboards,
    query_prometheus,
    substitute_promql,
)
from mhst_tracker.failures import ServiceUnavailable
from mhst_tracker.render.chromium import rendered_dom, screenshot
from tests.integration.dashboards.conftest import Events, Workers, wait_until
from tests.render.png import assert_not_blank

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka]


def test_prints_and_draws_every_panel_with_the_replay_figures(
    prometheus: PrometheusServer, events: Events, workers: Workers, tmp_path: Path
) -> None:
    worker = workers.start("w1")
    prometheus.set_targets([worker.target])
    referrals = len(events.result.referrals)

    def all_tracked() -> bool:
        tracked = query_prometheus(
            prometheus.url, f'mhst_referrals_tracked{{instance="{worker.target}"}}'
        )
        return [sample.value for sample in tracked] == [referrals]

    wait_until(all_tracked, "Prometheus to scrape a worker tracking every referral")

    overall = events.result.summary.overall
    assert overall.seen_within_standard_share is not None
    lines: list[str] = []

    def headline_shown() -> bool:
        result = CliRunner().invoke(
            dashboard_check_command,
            ["--dashboard", "mhst-service-manager"],
            env={"MHST_PROMETHEUS_URL": prometheus.url},
        )
        assert result.exit_code == 0, result.output
        assert "MHST: commissioner" not in result.output
        lines[:] = result.output.splitlines()
        waiting = lines.index("  [3] Waiting (stat)")
        return lines[waiting + 1] == f"    A: value: {overall.waiting}"

    wait_until(headline_shown, "the worker to report every waiting referral")
    headline = lines.index("  [2] Seen within four weeks (stat)")
    assert lines[headline + 1] == (
        f"    A: value: {format_value(overall.seen_within_standard_share, 'percentunit')}"
    )
    assert lines[headline + 2] == "    B: value: 90.0%"
    for band, count in overall.waiting_by_band.items():
        assert f"    A: band={band}: {count}" in lines
    assert "    A: PostgreSQL store table referrals" in lines
    assert_page_shows_the_panels(prometheus, tmp_path)


def assert_page_shows_the_panels(prometheus: PrometheusServer, folder: Path) -> None:
    """``--html``: every panel of the three dashboards is on the page, whose screenshot is
    not blank and whose headline is the share Prometheus returns."""
    page = folder / "dashboards.html"
    result = CliRunner().invoke(
        dashboard_check_command,
        ["--html", str(page)],
        env={"MHST_PROMETHEUS_URL": prometheus.url, "MHST_DATABASE_URL": "sqlite+aiosqlite://"},
    )
    assert result.exit_code == 0, result.output
    boards = load_dashboards()
    (manager,) = [board for board in boards if board.uid == "mhst-service-manager"]
    (headline,) = [panel for panel in manager.panels if panel.id == 2]
    assert headline.queries[0].expr is not None
    (share,) = query_prometheus(
        prometheus.url, substitute_promql(headline.queries[0].expr, manager)
    )
    dom = rendered_dom(page)
    for board in boards:
        for panel in board.panels:
            assert f"{panel.title}</h" in dom.replace("&#39;", "'"), panel.title
    shown = re.search(
        r'id="mhst-service-manager-2".*?class="stat-value"[^>]*>([^<]+)<', dom, re.DOTALL
    )
    assert shown is not None
    assert shown.group(1) == format_value(share.value, "percentunit")
    bar_gauges = [panel for board in boards for panel in board.panels if panel.type == "bargauge"]
    assert dom.count("<svg") >= len(bar_gauges) == 6, "every bar gauge is charted"
    assert "ERROR" not in dom
    assert_not_blank(screenshot(page, folder / "dashboards.png", height=1400))


def test_prometheus_out_of_reach_fails_the_command_naming_it() -> None:
    result = CliRunner().invoke(
        dashboard_check_command,
        ["--dashboard", "mhst-operations"],
        env={"MHST_PROMETHEUS_URL": "http://127.0.0.1:9"},
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, ServiceUnavailable)
    assert "cannot reach Prometheus at http://127.0.0.1:9" in str(result.exception)
