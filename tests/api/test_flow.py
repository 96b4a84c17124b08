"""The whole flow through the API on the real broker and store: API -> topic -> stream worker
-> alerts -> store sink -> PostgreSQL, with every batch sent again as a client retrying after
a timeout would, and NHS numbers, names and notes planted in every event.

Retried batches change nothing: the workers' table holds replay's states of the distinct
events and each alert is raised once (the scenario of :mod:`tests.streams.scenario`).
Privacy: the planted values reach no topic, no table the sink writes, no ``/metrics`` page
and no log line, and no referral id reaches a log line or a metric.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from deploy.local.process import free_port
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.models import AlertRow, EventRow, ReferralRow
from mhst_tracker.api.intake import NDJSON
from mhst_tracker.config import Settings
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from tests.adapters.store.conftest import create_database, drop_database
from tests.api.conftest import PSEUDONYM_KEY, ApiFactory, ndjson
from tests.streams.checks import assert_alerts_raised_once, assert_states_equal_replay
from tests.streams.harness import Deployment, changelog_reader, wait_for
from tests.streams.scenario import build

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

BATCH = 25


def nhs_number(rng: random.Random) -> str:
    """A valid NHS number (modulus-11 check digit) that no other planted value contains."""
    while True:
        first = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(8)]
        check = 11 - sum(d * w for d, w in zip(first, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return "".join(map(str, first)) + str(0 if check == 11 else check)


@pytest.fixture
def deployment(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Deployment]:
    """Topics of its own on the session's broker; its workers and sink stopped after."""
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"flow{os.getpid()}.")
    deployment = Deployment(settings=dataclasses.replace(settings, partitions=6), base_dir=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()


@pytest.fixture
async def store_url(postgres_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_url)
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    try:
        yield url
    finally:
        await drop_database(url)


async def test_retried_batches_through_the_api_equal_replay_and_leak_nothing(
    deployment: Deployment, store_url: str
) -> None:
    scenario = build(seed=23, referrals=60)
    deployment.settings = dataclasses.replace(deployment.settings, clock=scenario.clock_spec)
    await deployment.create_topics()
    rng = random.Random(23)
    planted: set[str] = set()
    bodies: list[dict[str, Any] | str] = []
    for _key, line in scenario.messages:
        try:
            parse_event(line)
        except InvalidEvent:
            bodies.append(line.decode())  # rejected by the API, with its reason
            continue
        number, name = nhs_number(rng), f"Child Name{rng.randrange(10**6):06d}"
        notes = f"seen at home, sibling {name}"
        planted.update({number, name, notes})
        bodies.append(
            {**orjson.loads(line), "nhs_number": number, "child_name": name, "notes": notes}
        )
    referral_ids = set(scenario.replayer.clocks)

    apis = ApiFactory(deployment.settings.kafka_bootstrap, deployment.base_dir)
    try:
        api = await apis.start(
            {"MHST_API_NHS_NUMBER": "pseudonymise", "MHST_API_PSEUDONYM_KEY": PSEUDONYM_KEY},
            tokens={"portal": sorted({b["team_id"] for b in bodies if isinstance(b, dict)})},
            database_url=store_url,
            settings=deployment.settings,
        )
        batches = [bodies[start : start + BATCH] for start in range(0, len(bodies), BATCH)]
        for position, batch in enumerate(batches):
            for _ in range(2):  # sent, then sent again as after a lost answer
                if position % 2:
                    answer = api.post(ndjson(*batch), source="portal", content_type=NDJSON)
                else:
                    answer = api.post(
                        b"[" + b",".join(_raw(body) for body in batch) + b"]", source="portal"
                    )
                assert answer.status_code == 202, answer.text
                assert all(
                    (item["status"] == "accepted") == isinstance(batch[item["index"]], dict)
                    for item in answer.json()["results"]
                )
        for batch in batches:  # and everything once more, later
            assert api.post(ndjson(*batch), source="portal", content_type=NDJSON).status_code == 202

        worker_port, sink_port = free_port(), free_port()
        deployment.start_worker("w1", metrics_port=worker_port)
        deployment.start_sink("sink", store_url, metrics_port=sink_port)
        at_ingest, at_midnight = scenario.expected_alerts()
        await assert_alerts_raised_once(deployment, at_ingest | at_midnight)
        await assert_states_equal_replay(
            deployment, scenario, scenario.midnight + timedelta(hours=2)
        )
        distinct = len({b["event_id"] for b in bodies if isinstance(b, dict)})
        await wait_for(
            "the sink to store every distinct event",
            lambda: _stored_events_are(store_url, distinct),
            60,
            deployment.sinks,
        )

        # Privacy: the planted values are nowhere; referral ids are in no log or metric.
        topics = [
            deployment.names.events,
            deployment.names.alerts,
            deployment.names.dlq,
            deployment.names.ticks,
        ]
        carried = b"".join([await _topic_bytes(deployment, topic) for topic in topics])
        changelog = changelog_reader(deployment)
        try:
            carried += b"".join(
                (record.key or b"") + (record.value or b"") for record in await changelog.poll()
            )
        finally:
            await changelog.close()
        stored = await _stored_text(store_url)
        pages = api.metrics() + "".join([await _metrics(port) for port in (worker_port, sink_port)])
        logs = api.log() + "".join(
            process.log_path.read_text(errors="replace")
            for process in deployment.workers + deployment.sinks
        )
        for value in planted:
            assert value.encode() not in carried, "a planted value reached a topic"
            assert value not in stored, "a planted value reached the store"
            assert value not in pages, "a planted value reached /metrics"
            assert value not in logs, "a planted value reached a log"
        for referral_id in referral_ids:
            assert referral_id not in logs
            assert referral_id not in pages
        assert b"nhs_number" not in carried
        assert "nhs_number" not in stored
    finally:
        apis.stop_all()


async def _metrics(port: int) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text


def _raw(body: dict[str, Any] | str) -> bytes:
    return body.encode() if isinstance(body, str) else orjson.dumps(body)


async def _topic_bytes(deployment: Deployment, topic: str) -> bytes:
    reader = deployment.reader(topic)
    try:
        records = await reader.poll()
        await asyncio.sleep(0.5)
        records = await reader.poll()
        return b"".join((record.key or b"") + (record.value or b"") for record in records)
    finally:
        await reader.close()


async def _stored_events_are(url: str, count: int) -> bool:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(select(EventRow.event_id))).all()
        return len(rows) == count
    finally:
        await engine.dispose()


async def _stored_text(url: str) -> str:
    """Every row of the tables the sink writes for valid input, as text (the dead-letter
    table, which keeps what was refused, is the one place a value may be)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            text = []
            for model in (EventRow, ReferralRow, AlertRow):
                text += [str(tuple(row)) for row in await connection.execute(select(model))]
            return "\n".join(text)
    finally:
        await engine.dispose()
