"""``mhst-tracker sink`` as a process on the real broker: its consumer group and its stop."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
import weakref
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from deploy.local.process import free_port
from mhst_tracker import bootstrap
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.models import EventRow
from mhst_tracker.adapters.store.sink import GROUP_ID
from mhst_tracker.commands.sink import collector_paused
from mhst_tracker.config import Settings
from tests.adapters.store.test_repository import T1_EVENTS
from tests.adapters.store.test_sink import event_message, produce
from tests.streams.harness import Deployment

pytestmark = pytest.mark.kafka


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
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{uuid.uuid4().hex[:8]}.", partitions=3
    )
    deployment = Deployment(settings=settings, base_dir=tmp_path)
    await deployment.create_topics()
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    events = deployment.names.events
    metadata = await produce(kafka_bootstrap, events, [event_message(body) for body in T1_EVENTS])
    ends: dict[int, int] = {}
    for record in metadata:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    group = f"second-store-{uuid.uuid4().hex[:6]}"
    sink = deployment.start_sink("sink", url, free_port(), args=["--group", group])
    try:
        deadline = time.monotonic() + 60
        while await committed(kafka_bootstrap, group, events) < sum(ends.values()):
            assert sink.exit_code() is None, sink.log_tail()
            assert time.monotonic() < deadline, "the sink's group committed nothing"
            await asyncio.sleep(0.3)
    finally:
        await asyncio.to_thread(sink.stop, 30.0)  # SIGTERM
    assert sink.exit_code() == 0, sink.log_tail()
    assert await committed(kafka_bootstrap, GROUP_ID, events) == 0
    store = await bootstrap.open_store(bootstrap.wire(settings), url)
    try:
        assert await store.count(EventRow) == len(T1_EVENTS)
    finally:
        await store.close()


class _Cycle:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


async def test_the_collector_is_paused_frozen_and_run_on_a_timer_then_restored() -> None:
    enabled = gc.isenabled()
    async with collector_paused(interval=0.05):
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0  # what existed is out of the collector's way
        garbage = weakref.ref(_Cycle())
        assert garbage() is not None  # reference counting alone does not free a cycle
        deadline = time.monotonic() + 10
        while garbage() is not None:
            assert time.monotonic() < deadline, "the timer never collected"
            await asyncio.sleep(0.05)
    assert gc.isenabled() == enabled
    assert gc.get_freeze_count() == 0
