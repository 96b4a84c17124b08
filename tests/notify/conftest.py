"""The notifier's test deployment: a topic of its own on the session's broker, a store
(SQLite or PostgreSQL: ``store_url``), a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from deploy.local.receivers import Mailbox, WebhookReceiver, smtp_server, webhook_receiver
from mhst_tracker.adapters.metrics import NotifierMetrics
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.ledger import Ledger
from mhst_tracker.commands.notify import senders
from mhst_tracker.domain.alerts import Alert
from mhst_tracker.notify.config import NotifyConfig, parse_config
from mhst_tracker.notify.consumer import ConsumerOptions, consume
from mhst_tracker.notify.service import Notifier
from mhst_tracker.timesource import TimeSource, WallClock
from tests.adapters.store.conftest import store_url  # noqa: F401 (the fixture, parametrised)
from tests.kafka import create_topic

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STAGES = ("assessment", "allocation", "intervention")
_numbers = itertools.count()


# A digest recipient: every team's intervention breaches, by email at 08:00 London time.
DAILY = """
[[recipients]]
name = "daily"
teams = ["*"]
stages = ["intervention"]
channel = "email"
address = "daily@mhst.test"
mode = "digest"
digest_at = "08:00"
timezone = "Europe/London"
"""


def routing(smtp_port: int, webhook_url: str, extra: str = "", delivery: str = "") -> str:
    """A routing file: a service manager of MHST001 by email (breaches and warnings), a
    commissioner of every team's intervention breaches by webhook, and ``extra``."""
    return f"""
teams = ["MHST001", "MHST002"]
dashboard_url = "http://grafana.test/d/mhst-service-manager"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
sender = "tracker@mhst.test"

[delivery]
backoff_seconds = 0.2
max_backoff_seconds = 1
timeout_seconds = 2
claim_timeout_seconds = 3
{delivery}

[[recipients]]
name = "manager"
teams = ["MHST001"]
kinds = ["breach", "at_risk"]
channel = "email"
address = "manager@mhst.test"

[[recipients]]
name = "icb"
teams = ["*"]
stages = ["intervention"]
channel = "webhook"
url = "{webhook_url}"
secret_env = "TEST_WEBHOOK_SECRET"
{extra}
"""


def config_of(text: str) -> NotifyConfig:
    return parse_config(text, {"TEST_WEBHOOK_SECRET": SECRET}, STAGES)


@dataclass
class Rig:
    """One test's deployment."""

    bootstrap: str
    topic: str
    store_url: str
    mailbox: Mailbox
    smtp_port: int
    receiver: WebhookReceiver

    def routing(self, extra: str = "", delivery: str = "") -> str:
        return routing(self.smtp_port, self.receiver.url, extra, delivery)

    async def publish(self, alerts: Sequence[Alert | bytes]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for alert in alerts:
                if isinstance(alert, bytes):
                    await producer.send(self.topic, alert, key=b"x")
                else:
                    value = orjson.dumps(alert.to_dict())
                    await producer.send(self.topic, value, key=alert.referral_id.encode())
            await producer.flush()
        finally:
            await producer.stop()

    @asynccontextmanager
    async def notifier(
        self,
        config: NotifyConfig,
        clock: TimeSource | None = None,
        registry: CollectorRegistry | None = None,
        group: str = "notifier",
    ) -> AsyncIterator[Notifier]:
        """A notifier consuming the topic in this process until the block ends."""
        ledger = await Ledger.open(self.store_url)
        channels = senders(config)
        metrics = NotifierMetrics(CollectorRegistry() if registry is None else registry)
        notifier = Notifier(config, ledger, channels, metrics, clock or WallClock())
        stop = asyncio.Event()
        options = ConsumerOptions(self.bootstrap, self.topic, f"{self.topic}.{group}")
        task = asyncio.create_task(consume(notifier, options, stop))
        try:
            yield notifier
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            for sender in channels.values():
                await sender.close()
            await ledger.close()


@pytest.fixture
async def rig(kafka_bootstrap: str, store_url: str) -> AsyncIterator[Rig]:  # noqa: F811
    engine = create_engine(store_url)
    await upgrade(engine)
    await engine.dispose()
    topic = f"notify{os.getpid()}-{next(_numbers)}.mhst.breach-alerts"  # apart from tests/streams
    await create_topic(kafka_bootstrap, topic, 3)
    with smtp_server() as (port, mailbox), webhook_receiver(SECRET) as receiver:
        yield Rig(kafka_bootstrap, topic, store_url, mailbox, port, receiver)


async def eventually(check: Callable[[], Any], seconds: float = 30.0, what: str = "") -> Any:
    """Wait until ``check()`` is truthy; its value. Fails with ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value (0 if the series does not exist)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def deliveries(registry: CollectorRegistry, channel: str, recipient: str, outcome: str) -> float:
    """``mhst_notify_deliveries_total`` for one channel, recipient and outcome."""
    return sample(
        registry,
        "mhst_notify_deliveries_total",
        channel=channel,
        recipient=recipient,
        outcome=outcome,
    )
