"""Every dashboard panel's PromQL on a real Prometheus scraping real stream workers.

One worker owning every partition, then a second joining it: each time the headline share,
the waiting counts and the wait bands the dashboards show equal the engine's replay summary
of the same events as of the same moment, and every panel's query runs and returns data,
Faust's pipeline panels included. Only the store sink's panels have no data here (the sink
is another process, tested with the store).
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence

import pytest

from deploy.local import PrometheusServer
from mhst_tracker.dashboards import Dashboard, load_dashboards, query_prometheus, substitute_promql
from mhst_tracker.domain.measures import GroupMeasures
from tests.integration.dashboards.conftest import (
    PARTITIONS,
    Events,
    Worker,
    Workers,
    wait_until,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka]

SINK_METRICS = "mhst_store_sink_"
HEADLINE = "Seen within four weeks"
STATS = (
    HEADLINE,
    f"{HEADLINE}/B",
    "Waiting",
    "Waiting past the standard",
    "At risk now",
    "Completed pathways",
)
"""The service manager's stat panels compared with replay (``/B``: the panel's query B)."""
Figures = dict[str, float | None]


def dashboard(uid: str) -> Dashboard:
    (board,) = [board for board in load_dashboards() if board.uid == uid]
    return board


def expected_figures(measures: GroupMeasures) -> Figures:
    """What the service manager dashboard must show for ``measures``."""
    values = (
        measures.seen_within_standard_share,
        0.9,
        measures.waiting,
        measures.waiting_past_standard,
        measures.at_risk,
        measures.completed,
    )
    figures: Figures = dict(zip(STATS, values, strict=True))
    for band, count in measures.waiting_by_band.items():
        figures[f"band {band}"] = count
    return figures


def shown_figures(prometheus: PrometheusServer, team: str | None = None) -> Figures:
    """What the service manager dashboard shows now (for one team, or all)."""
    board = dashboard("mhst-service-manager")
    selection = {"team": [team]} if team else {}
    figures: Figures = {}
    for panel in board.panels:
        if panel.type == "stat":
            for query in panel.queries:
                name = panel.title if query.ref_id == "A" else f"{panel.title}/{query.ref_id}"
                if query.expr is None or name not in STATS:
                    continue
                samples = query_prometheus(
                    prometheus.url, substitute_promql(query.expr, board, selection)
                )
                value = samples[0].value if len(samples) == 1 else None
                figures[name] = round(value, 4) if name == HEADLINE and value else value
    (bands,) = [panel for panel in board.panels if panel.title.startswith("Waiting by band (")]
    assert bands.queries[0].expr is not None
    for sample in query_prometheus(
        prometheus.url, substitute_promql(bands.queries[0].expr, board, selection)
    ):
        figures[f"band {sample.labels['band']}"] = sample.value
    return figures


def scraped(prometheus: PrometheusServer, workers: Sequence[Worker]) -> None:
    """Prometheus scrapes exactly these workers, and together they own every partition."""
    targets = sorted(worker.target for worker in workers)
    prometheus.set_targets(targets)

    def settled() -> bool:
        owned = query_prometheus(prometheus.url, "mhst_worker_partitions_owned")
        return (
            sorted(sample.labels["instance"] for sample in owned) == targets
            and all(sample.value > 0 for sample in owned)
            and sum(sample.value for sample in owned) == PARTITIONS
        )

    wait_until(settled, f"the workers {targets} to own the {PARTITIONS} partitions")


def assert_dashboards_equal_replay(
    prometheus: PrometheusServer, measures: GroupMeasures, team: str | None = None
) -> None:
    """The figures reach the replay's (the workers catch up), then are exactly them."""
    expected = expected_figures(measures)
    last: list[Figures] = [{}]

    def equal() -> bool:
        last[0] = shown_figures(prometheus, team)
        return last[0] == expected

    try:
        wait_until(equal, f"the dashboards to show replay's figures for {team or 'all teams'}")
    except AssertionError as error:
        raise AssertionError(f"{error}: shown {last[0]}, replay {expected}") from None


def panels_without_data(prometheus: PrometheusServer) -> list[str]:
    """Every PromQL target runs without error; returns those with no data."""
    empty: list[str] = []
    checked = 0
    for board in load_dashboards():
        for panel in board.panels:
            for query in panel.queries:
                if query.expr is None:
                    continue
                checked += 1
                if not query_prometheus(prometheus.url, substitute_promql(query.expr, board)):
                    empty.append(f"{board.title} / {panel.title} / {query.ref_id}: {query.expr}")
    assert checked >= 40
    return empty


async def assert_every_panel_returns_data(prometheus: PrometheusServer, workers: Workers) -> None:
    """After a probe on every partition, only the sink's panels lack data."""
    await workers.probe_every_partition()
    last: list[list[str]] = [[]]

    def only_sink_panels_empty() -> bool:
        last[0] = panels_without_data(prometheus)
        return all(SINK_METRICS in panel for panel in last[0])

    try:
        wait_until(only_sink_panels_empty, "every panel to return data")
    except AssertionError as error:
        raise AssertionError(f"{error}: empty {last[0]}") from None
    assert last[0], "the sink panels are expected to be empty without a sink"


async def test_one_worker_then_two_show_the_replay_summary(
    prometheus: PrometheusServer, events: Events, workers: Workers
) -> None:
    summary = events.result.summary
    assert summary.overall.waiting
    assert summary.overall.completed
    assert summary.overall.at_risk
    first = workers.start("w1")
    scraped(prometheus, [first])
    assert_dashboards_equal_replay(prometheus, summary.overall)
    await assert_every_panel_returns_data(prometheus, workers)

    second = workers.start("w2")
    scraped(prometheus, [first, second])
    assert_dashboards_equal_replay(prometheus, summary.overall)
    for team, measures in summary.by_team.items():
        if measures.completed:
            assert_dashboards_equal_replay(prometheus, measures, team)
    await assert_every_panel_returns_data(prometheus, workers)


def test_nothing_served_on_metrics_names_a_referral(events: Events, workers: Workers) -> None:
    pair = [workers.start("w1"), workers.start("w2")]

    def metrics_text() -> str:
        served = ""
        for worker in pair:
            try:
                with urllib.request.urlopen(
                    f"http://{worker.target}/metrics", timeout=10
                ) as response:
                    served += response.read().decode()
            except OSError:
                return ""
        return served

    referrals = len(events.result.referrals)
    assert referrals >= 300
    tracked: list[float] = []

    def all_tracked() -> bool:
        tracked[:] = [
            float(line.split()[-1])
            for line in metrics_text().splitlines()
            if line.startswith("mhst_referrals_tracked ")
        ]
        return len(tracked) == 2 and sum(tracked) == referrals

    try:
        wait_until(all_tracked, "the two workers to track every referral")
    except AssertionError as error:
        raise AssertionError(f"{error}: tracked {tracked} of {referrals}") from None
    served = metrics_text()
    assert "mhst_referrals_waiting{" in served
    assert "mhst_faust_messages_received_total" in served
    leaked = [state.referral_id for state in events.result.referrals if state.referral_id in served]
    assert not leaked
