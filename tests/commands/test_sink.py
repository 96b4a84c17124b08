"""``mhst-tracker sink`` as a process on the real broker: its consumer group and its stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from deploy.local.process import free_port
from mhst_tracker.adapters.store.models import EventRow
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.adapters.store.sink import GROUP_ID, Topics
from mhst_tracker.config import Settings
from tests.adapters.store.test_repository import T1_EVENTS
from tests.adapters.store.test_sink import event_message, produce
from tests.kafka import create_topic

pytestmark = pytest.mark.kafka

CLI = Path(sys.executable).with_name("mhst-tracker")


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """The offsets the group has committed on the topic, summed over its partitions (0 while
    the broker has no coordinator for groups yet: a fresh broker makes its offsets topic on
    the first group's request)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return 0
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


async def test_the_sink_commits_as_the_group_it_is_given_and_stops_on_sigterm(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{uuid.uuid4().hex[:8]}.")
    topics = Topics(settings)
    for name in topics.all():
        await create_topic(kafka_bootstrap, name, 3)
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    env = {
        **os.environ,
        "MHST_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MHST_TOPIC_PREFIX": settings.topic_prefix,
        "MHST_DATABASE_URL": url,
        "MHST_SINK_METRICS_PORT": str(free_port()),
    }
    upgrade = await asyncio.create_subprocess_exec(
        CLI, "db", "upgrade", env=env, stdout=subprocess.DEVNULL
    )
    assert await upgrade.wait() == 0
    metadata = await produce(
        kafka_bootstrap, topics.events, [event_message(body) for body in T1_EVENTS]
    )
    ends: dict[TopicPartition, int] = {}
    for record in metadata:
        tp = TopicPartition(record.topic, record.partition)
        ends[tp] = max(ends.get(tp, 0), record.offset + 1)
    group = f"second-store-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "sink.log"
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            CLI, "sink", "--group", group, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while await committed(kafka_bootstrap, group, topics.events) < sum(ends.values()):
                assert process.returncode is None, log.read_text()
                assert time.monotonic() < deadline, "the sink's group committed nothing"
                await asyncio.sleep(0.3)
        finally:
            process.send_signal(signal.SIGTERM)
            returncode = await asyncio.wait_for(process.wait(), 30)
    assert returncode == 0, log.read_text()
    assert await committed(kafka_bootstrap, GROUP_ID, topics.events) == 0
    store = await Store.open(settings, url)
    try:
        assert await store.count(EventRow) == len(T1_EVENTS)
    finally:
        await store.close()
