"""Every dashboard panel's PromQL on a real Prometheus scraping real stream workers.

One worker owning every partition, then a second joining it, and the store sink writing the
same topics into PostgreSQL: each time the headline share, the waiting counts and the wait
bands the dashboards show equal the engine's replay summary of the same events as of the
same moment, every panel's query runs and returns data (Faust's pipeline panels and the
sink's included), and the sink panels' figures are the run's: rows written equal the
events, alerts and rejections sent and the rows in the store, lag back to 0 once drained.
The PostgreSQL panels then read the store the sink wrote and show replay's waiting list.
An ingestion API (on topics of its own, so the workers' figures stay replay's) that has
accepted and rejected events is scraped too, so its panels have data.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from deploy.local import PrometheusServer
from deploy.local.receivers import webhook_receiver
from mhst_tracker.adapters.store.database import create_engine
from mhst_tracker.adapters.store.models import AlertRow, EventRow, RejectedEventRow
from mhst_tracker.dashboards import (
    Dashboard,
    load_dashboards,
    query_prometheus,
    substitute_promql,
)
from mhst_tracker.domain.alerts import AlertKind
from mhst_tracker.domain.measures import GroupMeasures
from tests.adapters.store.conftest import event
from tests.api.conftest import Api, ApiFactory
from tests.integration.dashboards.conftest import (
    PARTITIONS,
    Events,
    RunningNotifier,
    StoreSink,
    Worker,
    Workers,
    wait_until,
)
from tests.integration.dashboards.test_postgres_panels import (
    assert_alerts_and_rejections,
    assert_waiting_list,
)
from tests.promtool import metrics_problems
from tests.streams.harness import alert_bodies, wait_for

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka, pytest.mark.postgres]

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


def scraped(
    prometheus: PrometheusServer,
    workers: Sequence[Worker],
    sink: StoreSink,
    notifier: RunningNotifier,
    api: Api,
) -> None:
    """Prometheus scrapes exactly these workers, the sink, the notifier and the API, and
    together the workers own every partition."""
    targets = sorted(worker.target for worker in workers)
    prometheus.set_targets(
        targets, [sink.target], [notifier.target], [api.metrics_url.removeprefix("http://")]
    )

    def settled() -> bool:
        owned = query_prometheus(prometheus.url, "mhst_worker_partitions_owned")
        sinks = query_prometheus(prometheus.url, 'up{job="mhst-sink"}')
        return (
            sorted(sample.labels["instance"] for sample in owned) == targets
            and all(sample.value > 0 for sample in owned)
            and sum(sample.value for sample in owned) == PARTITIONS
            and [(sample.labels["instance"], sample.value) for sample in sinks]
            == [(sink.target, 1.0)]
        )

    wait_until(settled, f"the workers {targets} to own the {PARTITIONS} partitions")
    wait_until(
        lambda: bool(query_prometheus(prometheus.url, 'up{job="mhst-api"} == 1')),
        "Prometheus to scrape the API",
    )


async def api_with_traffic(kafka_bootstrap: str, base_dir: Path) -> tuple[ApiFactory, Api]:
    """An API (on topics of its own: the workers' figures stay replay's) that has accepted
    and rejected events, so its panels have data."""
    factory = ApiFactory(kafka_bootstrap, base_dir)
    api = await factory.start()
    valid = event("api-1", "referral_received", "A1", "2025-12-01T09:00:00Z", team_id="T1")
    answer = api.post([valid, {**valid, "event_id": "api-2", "team_id": "T9"}])
    assert (answer.status_code, answer.json()["accepted"]) == (202, 1)
    return factory, api


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
    """After a probe on every partition, every panel of every dashboard has data."""
    await workers.probe_every_partition()
    last: list[list[str]] = [[]]

    def none_empty() -> bool:
        last[0] = panels_without_data(prometheus)
        return not last[0]

    try:
        wait_until(none_empty, "every panel to return data")
    except AssertionError as error:
        raise AssertionError(f"{error}: empty {last[0]}") from None


def sink_query(title: str) -> str:
    """The PromQL of one of the operations dashboard's sink panels (it has one query)."""
    board = dashboard("mhst-operations")
    (panel,) = [panel for panel in board.panels if panel.title == title]
    (query,) = panel.queries
    assert query.expr is not None
    assert "mhst_store_sink_" in query.expr
    return substitute_promql(query.expr, board)


def without_rate(expr: str) -> str:
    """``expr`` with each ``rate(counter[window])`` replaced by the counter: what it counts."""
    counted = re.sub(r"rate\((\w+)\[\w+\]\)", r"\1", expr)
    assert counted != expr, f"no rate in {expr}"
    return counted


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def notifier_query(title: str, ref: int = 0) -> str:
    """The PromQL of one of the operations dashboard's notifier panels."""
    board = dashboard("mhst-operations")
    (panel,) = [panel for panel in board.panels if panel.title == title]
    expr = panel.queries[ref].expr
    assert expr is not None
    assert "mhst_notify_" in expr
    return substitute_promql(expr, board)


async def assert_notifier_panels_true(
    prometheus: PrometheusServer, notifier: RunningNotifier
) -> None:
    """The notifier panels show the run: every alert the receiver took counted as
    delivered, in the ledger as delivered, none failed or re-sent, and a lag."""
    last: list[object] = []

    async def true() -> bool:
        taken = len(notifier.receiver.delivered_ids())
        attempts = query_prometheus(
            prometheus.url, without_rate(notifier_query("Notifications per second"))
        )
        delivered = sum(s.value for s in attempts if s.labels["outcome"] == "delivered")
        ledger = {
            s.labels["status"]: s.value
            for s in query_prometheus(prometheus.url, notifier_query("Delivery ledger"))
        }
        failed = query_prometheus(prometheus.url, notifier_query("Notifications failed for good"))
        resent = query_prometheus(prometheus.url, notifier_query("Re-sent in the last day"))
        lag = query_prometheus(prometheus.url, notifier_query("Notification lag", 1))
        last[:] = [taken, delivered, ledger, failed, resent, lag]
        return (
            taken > 0
            and delivered == taken
            and ledger == {"delivered": taken}
            and [sample.value for sample in failed] == [0]
            and [sample.value for sample in resent] == [0]
            and len(lag) == 1
        )

    await wait_for("the notifier panels to show the run", true, 90, [notifier.process])


RowCounts = dict[tuple[str, str], float]


async def stored_rows(database_url: str) -> RowCounts:
    """The rows in the sink's store, keyed as the sink's rows counter is labelled."""
    tables = {"events": EventRow, "alerts": AlertRow, "rejected_events": RejectedEventRow}
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            return {
                (table, "new"): float(
                    (await connection.execute(select(func.count()).select_from(model))).scalar_one()
                )
                for table, model in tables.items()
            }
    finally:
        await engine.dispose()


async def assert_sink_panels_true(
    prometheus: PrometheusServer, events: Events, workers: Workers, sink: StoreSink, probes: int
) -> RowCounts:
    """The sink panels show the run: every event, alert and rejection written once (as the
    store holds them), duplicates counted as such, no lag, a commit made by this sink, and
    the probes' rejections being written now. Returns the rows written.

    ``probes`` is how many times :meth:`Workers.probe_every_partition` has run.
    """
    deployment = workers.deployment
    names = deployment.names
    result = events.result
    alerts_topic = deployment.reader(names.alerts)
    rows_query = sink_query("Sink rows per second")
    shown: dict[str, object] = {}
    sent: RowCounts = {}

    async def true() -> bool:
        alerts = alert_bodies(await alerts_topic.poll())
        alert_ids = {alert["alert_id"] for alert in alerts}
        sent.clear()
        sent.update(
            {
                ("events", "new"): len(events.lines) - len(result.rejected) - result.duplicates,
                ("events", "duplicate"): result.duplicates,
                ("alerts", "new"): len(alert_ids),
                ("alerts", "duplicate"): len(alerts) - len(alert_ids),
                ("rejected_events", "new"): len(result.rejected) + probes * PARTITIONS,
            }
        )
        written = {
            (sample.labels["table"], sample.labels["outcome"]): sample.value
            for sample in query_prometheus(prometheus.url, without_rate(rows_query))
        }
        rates = {
            (sample.labels["table"], sample.labels["outcome"]): sample.value
            for sample in query_prometheus(prometheus.url, rows_query)
        }
        lag = {
            sample.labels["topic"]: sample.value
            for sample in query_prometheus(prometheus.url, sink_query("Sink lag (messages)"))
        }
        since = query_prometheus(prometheus.url, sink_query("Seconds since the sink's last commit"))
        stored = await stored_rows(sink.database_url)
        shown.update(sent=sent, written=written, stored=stored, rates=rates, lag=lag)
        shown.update(since_commit=[sample.value for sample in since])
        return (
            written == sent
            and stored == {key: value for key, value in sent.items() if key[1] == "new"}
            and set(rates) == set(sent)
            and all(value >= 0 for value in rates.values())
            and rates[("rejected_events", "new")] > 0
            and lag == dict.fromkeys([names.events, names.alerts, names.dlq], 0.0)
            and len(since) == 1
            and 0 <= since[0].value <= time.time() - sink.started_at
        )

    try:
        await wait_for("the sink panels to show the run", true, 90, [sink.process])
    except AssertionError as error:
        raise AssertionError(f"{error}\nshown: {shown}") from None
    finally:
        await alerts_topic.close()
    assert sent[("events", "new")]
    assert sent[("alerts", "new")]
    assert result.rejected
    return sent


async def assert_postgres_panels_read_the_sink(
    events: Events, sink: StoreSink, written: RowCounts
) -> None:
    """The PostgreSQL panels show what the sink wrote. The workers also withdraw breaches
    they raised while catching up, and the time range runs to now, since the sink dates a
    rejection it reads on the events topic by the wall clock."""
    await assert_waiting_list(sink.database_url, events)
    await assert_alerts_and_rejections(
        sink.database_url,
        int(written[("alerts", "new")]),
        int(written[("rejected_events", "new")]),
        kinds=list(AlertKind),
        end=datetime.now(UTC) + timedelta(days=1),
    )


async def test_one_worker_then_two_show_the_replay_summary(
    prometheus: PrometheusServer,
    events: Events,
    store_database: str,
    workers: Workers,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    summary = events.result.summary
    assert summary.overall.waiting
    assert summary.overall.completed
    assert summary.overall.at_risk
    apis, api = await api_with_traffic(kafka_bootstrap, tmp_path)
    try:
        await _one_worker_then_two(prometheus, events, store_database, workers, api)
    finally:
        apis.stop_all()


async def _one_worker_then_two(
    prometheus: PrometheusServer, events: Events, store_database: str, workers: Workers, api: Api
) -> None:
    summary = events.result.summary
    sink = workers.start_sink(store_database)
    with webhook_receiver(SECRET) as receiver:
        notifier = workers.start_notifier(store_database, receiver, sorted(summary.by_team))
        await _two_workers(prometheus, events, store_database, workers, sink, notifier, api)


async def _two_workers(
    prometheus: PrometheusServer,
    events: Events,
    store_database: str,
    workers: Workers,
    sink: StoreSink,
    notifier: RunningNotifier,
    api: Api,
) -> None:
    summary = events.result.summary
    first = workers.start("w1")
    scraped(prometheus, [first], sink, notifier, api)
    assert_dashboards_equal_replay(prometheus, summary.overall)
    await assert_every_panel_returns_data(prometheus, workers)
    written = await assert_sink_panels_true(prometheus, events, workers, sink, probes=1)
    await assert_postgres_panels_read_the_sink(events, sink, written)

    await assert_notifier_panels_true(prometheus, notifier)
    second = workers.start("w2")
    scraped(prometheus, [first, second], sink, notifier, api)
    assert_dashboards_equal_replay(prometheus, summary.overall)
    for team, measures in summary.by_team.items():
        if measures.completed:
            assert_dashboards_equal_replay(prometheus, measures, team)
    await assert_every_panel_returns_data(prometheus, workers)
    await assert_sink_panels_true(prometheus, events, workers, sink, probes=2)


def test_nothing_served_on_metrics_names_a_referral(
    events: Events, store_database: str, workers: Workers
) -> None:
    pair = [workers.start("w1"), workers.start("w2")]
    sink = workers.start_sink(store_database)
    targets = [worker.target for worker in pair] + [sink.target]

    def metrics_text() -> str:
        served = ""
        for target in targets:
            try:
                with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as response:
                    served += response.read().decode()
            except OSError:
                return ""
        return served

    referrals = len(events.result.referrals)
    assert referrals >= 300
    valid = len(events.lines) - len(events.result.rejected) - events.result.duplicates
    tracked: list[float] = []
    written: list[float] = []

    def all_tracked_and_written() -> bool:
        samples = [
            sample
            for family in text_string_to_metric_families(metrics_text())
            for sample in family.samples
        ]
        tracked[:] = [sample.value for sample in samples if sample.name == "mhst_referrals_tracked"]
        written[:] = [
            sample.value
            for sample in samples
            if sample.name == "mhst_store_sink_rows_total"
            and sample.labels == {"table": "events", "outcome": "new"}
        ]
        return len(tracked) == 2 and sum(tracked) == referrals and written == [valid]

    try:
        wait_until(
            all_tracked_and_written,
            "the two workers to track every referral and the sink to write every event",
        )
    except AssertionError as error:
        raise AssertionError(
            f"{error}: tracked {tracked} of {referrals}, written {written} of {valid}"
        ) from None
    served = metrics_text()
    assert "mhst_referrals_waiting{" in served
    assert "mhst_faust_messages_received_total" in served
    assert "mhst_store_sink_lag_messages{" in served
    leaked = [state.referral_id for state in events.result.referrals if state.referral_id in served]
    assert not leaked
    for target in targets:
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        assert metrics_problems(exposition) == "", target
