"""``mhst-tracker dashboard-check`` prints what each panel shows for a real run."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploy.local import PrometheusServer
from mhst_tracker.commands.dashboard_check import dashboard_check_command, format_value
from mhst_tracker.dashboards import query_prometheus
from tests.integration.dashboards.conftest import Events, Workers, wait_until

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka]


def test_prints_every_panel_with_the_replay_figures(
    prometheus: PrometheusServer, events: Events, workers: Workers
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


def test_a_failing_query_fails_the_command() -> None:
    result = CliRunner().invoke(
        dashboard_check_command,
        ["--dashboard", "mhst-operations"],
        env={"MHST_PROMETHEUS_URL": "http://127.0.0.1:9"},
    )
    assert result.exit_code == 1
    assert "panel queries failed" in result.output
