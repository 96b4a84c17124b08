"""Kafka stopped under the API: 503 with Retry-After while it is down, nothing half-written
that a client cannot send again, and accepted again once it is back, with nothing lost."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from deploy.local.kafka import KafkaBroker
from mhst_tracker.adapters.kafka import create_topics
from mhst_tracker.config import Settings
from tests.adapters.store.conftest import event
from tests.api.conftest import PARTITIONS, ApiFactory

pytestmark = pytest.mark.kafka


def batch(prefix: str, size: int = 20) -> list[dict[str, object]]:
    return [
        event(
            f"{prefix}{n}",
            "referral_received",
            f"{prefix}R{n}",
            "2026-09-01T09:00:00Z",
            team_id="T1",
        )
        for n in range(size)
    ]


async def test_kafka_stopped_mid_test_answers_503_then_takes_everything_again(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    settings = Settings(
        kafka_bootstrap=own_broker.bootstrap, topic_prefix="outage.", partitions=PARTITIONS
    )
    await create_topics(settings)
    apis = ApiFactory(own_broker.bootstrap, tmp_path)
    try:
        api = await apis.start({"MHST_API_PRODUCE_TIMEOUT": "3"}, settings=settings)
        assert api.post(batch("a")).status_code == 202

        assert own_broker.process is not None
        own_broker.process.stop(timeout=30)
        started = time.monotonic()
        down = api.post(batch("b"))
        assert down.status_code == 503, down.text
        assert time.monotonic() - started < 10
        assert int(down.headers["Retry-After"]) >= 1
        assert "send the same request again" in down.json()["detail"]
        not_ready = api.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json() == {"status": "broker unreachable"}
        assert api.get("/healthz").status_code == 200

        own_broker.process.start()
        await asyncio.to_thread(own_broker.wait_ready)
        deadline = time.monotonic() + 60
        while (again := api.post(batch("b"))).status_code != 202:  # the client's retry
            assert again.status_code == 503, again.text
            assert time.monotonic() < deadline, "the API did not recover"
            await asyncio.sleep(1)
        assert api.post(batch("c")).status_code == 202
        assert api.get("/readyz").status_code == 200

        records = await api.topic()
        sent = {str(body["event_id"]) for body in batch("a") + batch("b") + batch("c")}
        assert {orjson.loads(record.value or b"")["event_id"] for record in records} == sent
        assert 'mhst_api_requests_total{route="/v1/events",status="503"}' in api.metrics()
    finally:
        apis.stop_all()
