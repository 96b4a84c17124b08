"""Fixtures of the dashboard tests: simulated events, the engine's replay of them, and real
stream workers (``mhst-tracker worker`` processes) that consume them from the real broker,
with the real store sink (``mhst-tracker sink``) writing the same topics into PostgreSQL.

The workers run on a simulated clock that reads ``AS_OF`` when the deployment is created and
then runs at wall speed. Every simulated event is older than ``AS_OF`` and the engine's
summary is the same for any moment up to ``STABLE_FOR`` later (checked), so what the
workers report during a test is comparable with ``replay`` as of ``AS_OF``.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aiokafka import AIOKafkaProducer

from deploy.local.process import REPO_ROOT, ManagedProcess, free_port
from deploy.local.receivers import WebhookReceiver
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.config import Settings
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.replay import ReplayResult, replay
from mhst_tracker.simulate import simulate
from mhst_tracker.timesource import SimulatedClock
from tests.adapters.store.conftest import create_database, drop_database
from tests.streams.harness import Deployment, produce

AS_OF = datetime(2025, 12, 20, 12, 0, tzinfo=UTC)
STABLE_FOR = timedelta(hours=2)
PARTITIONS = 6
DATASOURCES = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "mhst.yml"
PROBE_KEY = b"dashboard-probe"
_REFERRAL_ID = re.compile(r'"referral_id"\s*:\s*"([^"]+)"')
_numbers = itertools.count()


def provisioned_datasources() -> dict[str, str]:
    """The provisioned datasources' uids and types."""
    config = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    return {source["uid"]: source["type"] for source in config["datasources"]}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


@dataclass(frozen=True)
class Events:
    """Simulated event lines and the engine's replay of them as of ``AS_OF``."""

    lines: list[str]
    result: ReplayResult

    def messages(self) -> list[tuple[bytes | None, bytes]]:
        """The lines as Kafka messages keyed by referral id (an unparsable line's key is
        the id it names, if any: it reaches a partition and the dead-letter topic)."""
        messages: list[tuple[bytes | None, bytes]] = []
        for line in self.lines:
            try:
                key: str | None = parse_event(line).referral_id
            except InvalidEvent:
                match = _REFERRAL_ID.search(line)
                key = match.group(1) if match else None
            messages.append((None if key is None else key.encode(), line.encode()))
        return messages


@pytest.fixture(scope="package")
def events() -> Events:
    lines = list(simulate(11, date(2025, 11, 3), referrals=300))
    result = replay(lines, AS_OF, TRAILBLAZER_4WW)
    later = replay(lines, AS_OF + STABLE_FOR, TRAILBLAZER_4WW)
    assert later.summary == result.summary, "the summary must not move during a test"
    return Events(lines, result)


@dataclass
class Worker:
    """A running ``mhst-tracker worker`` and the address of its ``/metrics``."""

    process: ManagedProcess
    target: str

    def stop(self) -> None:
        """Stop it with SIGTERM (its partitions move to the other workers)."""
        self.process.stop()


@dataclass
class StoreSink:
    """A running ``mhst-tracker sink``, the address of its ``/metrics`` and its store."""

    process: ManagedProcess
    target: str
    database_url: str
    started_at: float
    """Wall time (POSIX seconds) just before it was started."""


@dataclass
class RunningNotifier:
    """A running ``mhst-tracker notify``, the address of its ``/metrics`` and the receiver
    of its webhooks."""

    process: ManagedProcess
    target: str
    receiver: WebhookReceiver


NOTIFIER_ROUTING = """
teams = ["*placeholder*"]
[[recipients]]
name = "everyone"
teams = ["*"]
kinds = ["breach", "at_risk"]
channel = "webhook"
url = "{url}"
secret_env = "MHST_TEST_WEBHOOK_SECRET"
"""


class Workers:
    """Starts workers (and a store sink and a notifier) of one deployment whose events topic
    holds the simulated events."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def start(self, name: str) -> Worker:
        """A new worker with its own data directory and metrics port."""
        port = free_port()
        return Worker(self.deployment.start_worker(name, metrics_port=port), f"127.0.0.1:{port}")

    def start_sink(self, database_url: str) -> StoreSink:
        """The store sink of the deployment's topics into the migrated store at the URL."""
        port = free_port()
        started_at = time.time()
        process = self.deployment.start_sink("sink", database_url, metrics_port=port)
        return StoreSink(process, f"127.0.0.1:{port}", database_url, started_at)

    def start_notifier(
        self, database_url: str, receiver: WebhookReceiver, teams: Sequence[str]
    ) -> RunningNotifier:
        """``mhst-tracker notify`` of the deployment's alerts into the migrated store at the
        URL (its ledger), sending every alert of ``teams`` to ``receiver`` by webhook."""
        config = self.deployment.base_dir / "notify.toml"
        text = NOTIFIER_ROUTING.format(url=receiver.url)
        config.write_text(text.replace('"*placeholder*"', ", ".join(f'"{t}"' for t in teams)))
        port = free_port()
        env = {
            "MHST_DATABASE_URL": database_url,
            "MHST_NOTIFY_CONFIG": str(config),
            "MHST_NOTIFY_METRICS_PORT": str(port),
            "MHST_NOTIFY_PORT": str(free_port()),
            "MHST_TEST_WEBHOOK_SECRET": receiver.secret,
        }
        process = self.deployment.start_process("notifier", "notify", env)
        return RunningNotifier(process, f"127.0.0.1:{port}", receiver)

    async def probe_every_partition(self) -> None:
        """Send one non-event to each events partition (it goes to the dead-letter topic).

        Faust's sensor reports a partition's offsets only when messages flow on it, and a
        rebalance clears them; this makes every partition's consumer lag visible again
        without changing any referral.
        """
        producer = AIOKafkaProducer(bootstrap_servers=self.deployment.settings.kafka_bootstrap)
        await producer.start()
        try:
            for partition in range(PARTITIONS):
                await producer.send(
                    self.deployment.names.events,
                    key=PROBE_KEY,
                    value=b"not an event",
                    partition=partition,
                )
            await producer.flush()
        finally:
            await producer.stop()


@pytest.fixture
async def store_database(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL store (its URL), dropped after the test."""
    url = await create_database(postgres_url)
    try:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
async def workers(kafka_bootstrap: str, tmp_path: Path, events: Events) -> AsyncIterator[Workers]:
    """A deployment with the events published; its workers are stopped after the test."""
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"d{os.getpid()}-{next(_numbers)}.",
        partitions=PARTITIONS,
        clock=SimulatedClock.starting(AS_OF, 1.0).spec,
    )
    deployment = Deployment(settings=settings, base_dir=tmp_path)
    await deployment.create_topics()
    await produce(kafka_bootstrap, deployment.names.events, events.messages())
    try:
        yield Workers(deployment)
    finally:
        deployment.stop_all()
