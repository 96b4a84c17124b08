"""``mhst-tracker dashboard-check`` prints what each panel shows for a real run."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from deploy.local import PrometheusServer
from mhst_tracker.commands.dashboard_check import dashboard_check_command, format_value
from mhst_tracker.dashboards import query_prometheus
from tests.integration.dashboards.conftest import PARTITIONS, Events, StartDriver

pytestmark = pytest.mark.prometheus


def test_prints_every_panel_with_the_replay_figures(
    prometheus: PrometheusServer, events: Events, start_driver: StartDriver
) -> None:
    driver = start_driver(list(range(PARTITIONS)))
    prometheus.set_targets([driver.target])
    deadline = time.monotonic() + 60
    while not query_prometheus(
        prometheus.url, f'sum(mhst_worker_partitions_owned{{instance="{driver.target}"}})'
    ):
        assert time.monotonic() < deadline, "Prometheus did not scrape the driver"
        time.sleep(0.25)

    result = CliRunner().invoke(
        dashboard_check_command,
        ["--dashboard", "mhst-service-manager"],
        env={"MHST_PROMETHEUS_URL": prometheus.url},
    )
    assert result.exit_code == 0, result.output
    overall = events.result.summary.overall
    assert overall.seen_within_standard_share is not None
    lines = result.output.splitlines()
    headline = lines.index("  [2] Seen within four weeks (stat)")
    assert lines[headline + 1] == (
        f"    A: value: {format_value(overall.seen_within_standard_share, 'percentunit')}"
    )
    assert lines[headline + 2] == "    B: value: 90.0%"
    waiting = lines.index("  [3] Waiting (stat)")
    assert lines[waiting + 1] == f"    A: value: {overall.waiting}"
    for band, count in overall.waiting_by_band.items():
        assert f"    A: band={band}: {count}" in lines
    assert "    A: PostgreSQL store table referrals" in lines
    assert "MHST: commissioner" not in result.output


def test_a_failing_query_fails_the_command() -> None:
    result = CliRunner().invoke(
        dashboard_check_command,
        ["--dashboard", "mhst-operations"],
        env={"MHST_PROMETHEUS_URL": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 1
    assert "panel queries failed" in result.output
