"""Every dashboard panel's PromQL on a real Prometheus scraping real metric processes.

One worker owning every partition, then two workers sharing them: each time the headline
share, the waiting counts and the wait bands the dashboards show equal the engine's replay
summary of the same events as of the same moment, and every panel's query runs and returns
data. Panels on metrics that other processes export (Faust's sensor, the store sink) are
checked to run without error here; they have no data without those processes.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Sequence

import pytest

from deploy.local import PrometheusServer
from mhst_tracker.dashboards import Dashboard, load_dashboards, query_prometheus, substitute_promql
from mhst_tracker.domain.measures import GroupMeasures
from tests.integration.dashboards.conftest import PARTITIONS, Driver, Events, StartDriver

pytestmark = pytest.mark.prometheus

EXTERNAL_METRICS = ("mhst_faust_", "mhst_store_sink_")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def value(prometheus: PrometheusServer, expr: str) -> float:
    samples = query_prometheus(prometheus.url, expr)
    assert len(samples) == 1, f"{expr}: {samples}"
    return samples[0].value


def scrape_settled(prometheus: PrometheusServer, drivers: Sequence[Driver]) -> None:
    """Prometheus sees exactly these drivers, every partition once, with a few scrapes."""
    targets = [driver.target for driver in drivers]
    prometheus.set_targets(targets)

    def settled() -> bool:
        owned = query_prometheus(prometheus.url, "mhst_worker_partitions_owned")
        scrapes = query_prometheus(
            prometheus.url, "count_over_time(mhst_worker_partitions_owned[1m])"
        )
        return (
            sorted(sample.labels["instance"] for sample in owned) == sorted(targets)
            and sum(sample.value for sample in owned) == PARTITIONS
            and all(sample.value >= 3 for sample in scrapes)
        )

    wait_for(settled, f"Prometheus to scrape {targets}")


def assert_dashboards_equal_replay(
    prometheus: PrometheusServer, measures: GroupMeasures, team: str | None = None
) -> None:
    board = dashboard("mhst-service-manager")
    selection = {"team": [team]} if team else {}

    def panel_value(title: str, ref: str = "A") -> float:
        (query,) = [
            q
            for panel in board.panels
            if panel.title == title and panel.type == "stat"
            for q in panel.queries
            if q.ref_id == ref
        ]
        assert query.expr is not None
        return value(prometheus, substitute_promql(query.expr, board, selection))

    assert measures.seen_within_standard_share is not None
    assert round(panel_value("Seen within four weeks"), 4) == measures.seen_within_standard_share
    assert panel_value("Seen within four weeks", "B") == 0.9
    assert panel_value("Waiting") == measures.waiting
    assert panel_value("Waiting past the standard") == measures.waiting_past_standard
    assert panel_value("At risk now") == measures.at_risk
    assert panel_value("Completed pathways") == measures.completed
    (bands,) = [panel for panel in board.panels if panel.title.startswith("Waiting by band (")]
    assert bands.queries[0].expr is not None
    shown = {
        sample.labels["band"]: sample.value
        for sample in query_prometheus(
            prometheus.url, substitute_promql(bands.queries[0].expr, board, selection)
        )
    }
    assert shown == {band: float(count) for band, count in measures.waiting_by_band.items()}


def dashboard(uid: str) -> Dashboard:
    (board,) = [board for board in load_dashboards() if board.uid == uid]
    return board


def assert_every_panel_returns_data(prometheus: PrometheusServer) -> list[str]:
    """Run every PromQL target; returns the external-metric panels that had no data."""
    without_data: list[str] = []
    checked = 0
    for board in load_dashboards():
        for panel in board.panels:
            for query in panel.queries:
                if query.expr is None:
                    continue
                checked += 1
                samples = query_prometheus(prometheus.url, substitute_promql(query.expr, board))
                if samples:
                    continue
                assert any(prefix in query.expr for prefix in EXTERNAL_METRICS), (
                    f"{board.title} / {panel.title} / {query.ref_id} returned no data"
                )
                without_data.append(f"{board.title} / {panel.title}")
    assert checked >= 40
    return without_data


def test_one_worker_then_two_show_the_replay_summary(
    prometheus: PrometheusServer, events: Events, start_driver: StartDriver
) -> None:
    summary = events.result.summary
    assert summary.overall.waiting
    assert summary.overall.completed
    assert summary.overall.at_risk
    single = start_driver(list(range(PARTITIONS)))
    scrape_settled(prometheus, [single])
    assert_dashboards_equal_replay(prometheus, summary.overall)
    assert_every_panel_returns_data(prometheus)

    single.stop()
    pair = [start_driver([0, 2, 4]), start_driver([1, 3, 5])]
    scrape_settled(prometheus, pair)
    assert_dashboards_equal_replay(prometheus, summary.overall)
    for team, measures in summary.by_team.items():
        if measures.completed:
            assert_dashboards_equal_replay(prometheus, measures, team)
    assert_every_panel_returns_data(prometheus)


def test_nothing_served_on_metrics_names_a_referral(
    events: Events, start_driver: StartDriver
) -> None:
    drivers = [start_driver([0, 1, 2]), start_driver([3, 4, 5])]
    served = ""
    for driver in drivers:
        with urllib.request.urlopen(f"http://{driver.target}/metrics", timeout=10) as response:
            served += response.read().decode()
    assert "mhst_referrals_waiting{" in served
    referral_ids = [state.referral_id for state in events.result.referrals]
    assert len(referral_ids) >= 300
    leaked = [referral_id for referral_id in referral_ids if referral_id in served]
    assert not leaked
