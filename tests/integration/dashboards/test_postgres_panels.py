"""Every PostgreSQL panel's SQL runs against the real store and returns the expected rows.

The store (the store issue's migrations and writer) holds the simulated events, the alerts
the engine decides and the rejected lines; each panel's SQL, with Grafana's variables and
time filter filled in, is run on PostgreSQL and its rows compared with the replay. The same
checks run on the store the real sink writes during the end-to-end run
(``test_panels_on_prometheus.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.records import (
    Batch,
    IncomingAlert,
    IncomingEvent,
    Origin,
    Rejection,
)
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.dashboards import Query, load_dashboards, run_sql, substitute_sql
from mhst_tracker.domain.alerts import AlertKind, decide_alerts
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import ManualClock
from tests.adapters.store.conftest import create_database, drop_database
from tests.integration.dashboards.conftest import AS_OF, Events

pytestmark = pytest.mark.postgres

START = AS_OF - timedelta(days=60)
END = AS_OF + timedelta(days=1)


async def fill_store(url: str, events: Events) -> int:
    """Migrate, then write the events, the alerts due as of AS_OF and the rejected lines;
    returns how many alerts were written."""
    engine = create_engine(url)
    await upgrade(engine)
    store = Store(engine, TRAILBLAZER_4WW, ManualClock(AS_OF))
    batch = Batch()
    clocks: dict[str, ReferralClock] = {}
    for number, line in enumerate(events.lines, start=1):
        origin = Origin("events.jsonl", line=number)
        try:
            event = parse_event(line)
        except InvalidEvent as error:
            batch.rejections.append(Rejection(error.reason, line.encode(), origin, AS_OF))
            continue
        batch.events.append(IncomingEvent(event, line.encode(), AS_OF, origin))
        clocks.setdefault(event.referral_id, ReferralClock(event.referral_id)).apply(event)
    for clock in clocks.values():
        for alert in decide_alerts(clock, TRAILBLAZER_4WW, AS_OF):
            batch.alerts.append(IncomingAlert(alert, AS_OF, Origin("alerts")))
    try:
        await store.write(batch)
    finally:
        await store.close()
    return len(batch.alerts)


@pytest.fixture(scope="module")
def store(postgres_url: str, events: Events) -> Iterator[tuple[str, int]]:
    url = asyncio.run(create_database(postgres_url))
    try:
        yield url, asyncio.run(fill_store(url, events))
    finally:
        asyncio.run(drop_database(url))


def sql_panels() -> dict[str, Query]:
    return {
        f"{board.uid}/{panel.title}": query
        for board in load_dashboards()
        for panel in board.panels
        for query in panel.queries
        if query.sql
    }


def test_there_are_three_postgres_panels() -> None:
    assert set(sql_panels()) == {
        "mhst-service-manager/Waiting list by due date",
        "mhst-service-manager/Recent alerts",
        "mhst-operations/Rejected events in the store by reason",
    }


async def rows(
    url: str,
    name: str,
    selection: dict[str, list[str]] | None = None,
    end: datetime = END,
) -> list[dict[str, Any]]:
    """The rows of one SQL panel for the time range ``START`` to ``end``."""
    sql = sql_panels()[name].sql
    assert sql is not None
    return await run_sql(url, substitute_sql(sql, START, end, selection))


async def assert_waiting_list(url: str, events: Events) -> None:
    """The waiting list holds replay's waiting referrals, earliest due first, flagged."""
    waiting = await rows(url, "mhst-service-manager/Waiting list by due date")
    expected = {state.referral_id for state in events.result.referrals if state.is_waiting}
    assert expected
    assert {row["Referral"] for row in waiting} == expected
    due = [row["Due"] for row in waiting]
    assert due == sorted(due)
    past = {row["Referral"] for row in waiting if row["Flag"] == "past standard"}
    assert len(past) == events.result.summary.overall.waiting_past_standard
    at_risk = {row["Referral"] for row in waiting if row["Flag"] == "at risk"}
    assert len(at_risk) == events.result.summary.overall.at_risk

    team = sorted(events.result.summary.by_team)[0]
    one_team = await rows(url, "mhst-service-manager/Waiting list by due date", {"team": [team]})
    assert {row["Referral"] for row in one_team} == {
        state.referral_id
        for state in events.result.referrals
        if state.is_waiting and state.team_id == team
    }


async def assert_alerts_and_rejections(
    url: str,
    alert_count: int,
    rejected_count: int,
    kinds: Collection[str] = (AlertKind.BREACH, AlertKind.AT_RISK),
    end: datetime = END,
) -> None:
    """Recent alerts shows the latest (at most 200) of ``alert_count`` alerts, each of one
    of ``kinds``, and the rejected events by reason add up to ``rejected_count``."""
    assert alert_count > 0
    alerts = await rows(url, "mhst-service-manager/Recent alerts", end=end)
    assert len(alerts) == min(alert_count, 200)
    assert {row["Kind"] for row in alerts} <= set(kinds)
    rejected = await rows(url, "mhst-operations/Rejected events in the store by reason", end=end)
    assert sum(row["Events"] for row in rejected) == rejected_count > 0


async def test_waiting_list_holds_the_waiting_referrals_by_due_date(
    store: tuple[str, int], events: Events
) -> None:
    url, _ = store
    await assert_waiting_list(url, events)


async def test_recent_alerts_and_rejected_events(store: tuple[str, int], events: Events) -> None:
    url, alert_count = store
    await assert_alerts_and_rejections(url, alert_count, len(events.result.rejected))
