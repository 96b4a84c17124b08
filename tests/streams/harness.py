"""Stream workers as child processes, and reading and writing their topics, for tests."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local.process import ManagedProcess
from mhst_tracker.adapters.kafka import create_topics
from mhst_tracker.config import Settings
from mhst_tracker.topics import TopicNames

MHST_TRACKER = Path(sys.executable).parent / "mhst-tracker"


@dataclass
class Deployment:
    """One isolated deployment on the shared broker: its own topics, group and workers."""

    settings: Settings
    base_dir: Path
    workers: list[ManagedProcess] = field(default_factory=list)
    sinks: list[ManagedProcess] = field(default_factory=list)
    others: list[ManagedProcess] = field(default_factory=list)

    @property
    def names(self) -> TopicNames:
        """The deployment's topic names."""
        return self.settings.topics

    async def create_topics(self) -> None:
        """Create the deployment's topics."""
        await create_topics(self.settings)

    def start_worker(self, name: str, metrics_port: int = 0) -> ManagedProcess:
        """Start ``mhst-tracker worker`` with a fresh data directory called ``name``.

        It serves its metrics on ``metrics_port`` (0: a free port of its choosing).
        """
        env = {
            "MHST_WORKER_DATA_DIR": str(self.base_dir / name),
            "MHST_METRICS_PORT": str(metrics_port),
            "MHST_METRICS_SCHOOL_LABELS": str(self.settings.metrics_school_labels).lower(),
        }
        worker = self._start(name, "worker", env)
        self.workers.append(worker)
        return worker

    def start_rebuild(
        self, name: str, args: Sequence[str] = (), env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """Start ``mhst-tracker rebuild [args]`` on the deployment's broker, topics and clock."""
        return self._start(name, "rebuild", env or {}, args)

    def start_sink(
        self, name: str, database_url: str, metrics_port: int, args: Sequence[str] = ()
    ) -> ManagedProcess:
        """Start ``mhst-tracker sink [args]`` into the (migrated) store at ``database_url``.

        It serves its metrics on ``metrics_port`` and keeps time by the deployment's clock.
        """
        env = {"MHST_DATABASE_URL": database_url, "MHST_SINK_METRICS_PORT": str(metrics_port)}
        sink = self._start(name, "sink", env, args)
        self.sinks.append(sink)
        return sink

    def start_process(self, name: str, command: str, env: dict[str, str]) -> ManagedProcess:
        """Start ``mhst-tracker <command>`` (a notifier, say) on the deployment's broker,
        topics and clock; stopped with the rest."""
        process = self._start(name, command, env)
        self.others.append(process)
        return process

    def _start(
        self, name: str, command: str, env: dict[str, str], args: Sequence[str] = ()
    ) -> ManagedProcess:
        """Start ``mhst-tracker <command> [args]`` on the deployment's broker, topics and
        clock."""
        process = ManagedProcess(
            name,
            [str(MHST_TRACKER), command, *args],
            self.base_dir / f"{name}.log",
            env={
                **os.environ,
                "MHST_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
                "MHST_TOPIC_PREFIX": self.settings.topic_prefix,
                "MHST_PARTITIONS": str(self.settings.partitions),
                "MHST_CLOCK": self.settings.clock,
                "MHST_MAX_EVENT_BYTES": str(self.settings.max_event_bytes),
                **self._profile(),
                **env,
            },
        )
        process.start()
        return process

    def _profile(self) -> dict[str, str]:
        path = self.settings.profile_path
        return {} if path is None else {"MHST_PROFILE": str(path)}

    async def consumer_positions(self) -> str:
        """Committed offset and log end of each events partition, for failure messages."""
        group = self.names.workers
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        ends = await self.end_offsets(self.names.events)
        rows = [
            f"{partition}: committed {committed[tp].offset if tp in committed else None} of {end}"
            for partition, end in ends.items()
            for tp in [TopicPartition(self.names.events, partition)]
        ]
        return f"events partitions of group {group}: " + ", ".join(rows)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """End offsets of one of the deployment's topics, by partition."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return {tp.partition: offset for tp, offset in ends.items()}

    def reader(self, topic: str) -> TopicReader:
        """A reader of one of the deployment's topics (all have the same partition count)."""
        return TopicReader(self.settings.kafka_bootstrap, topic, self.settings.partitions)

    def stop_all(self) -> None:
        """Stop every worker, sink and other process still running."""
        for process in [*self.workers, *self.sinks, *self.others]:
            process.stop()


async def wait_for(
    what: str,
    check: Callable[[], Awaitable[bool]],
    within: float,
    workers: Iterable[ManagedProcess] = (),
) -> None:
    """Poll ``check`` until true; fail with the workers' logs after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name}:\n{w.log_tail(40)}" for w in workers)
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}\n{logs}")
        await asyncio.sleep(0.2)


async def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None]]
) -> None:
    """Send ``(key, value)`` messages in order, partitioned by key (Kafka's default)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Record:
    """One message read back."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int
    timestamp: int
    """Kafka's timestamp of the message (milliseconds since the epoch)."""


class TopicReader:
    """Reads a whole topic from the start; :meth:`poll` adds whatever arrived since."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = partitions
        self.records: list[Record] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self._started = False

    async def poll(self) -> list[Record]:
        """Fetch new records (all of them on the first call)."""
        if not self._started:
            await self._consumer.start()
            self._consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])
            self._started = True
        batches = await self._consumer.getmany(timeout_ms=200, max_records=100_000)
        for batch in batches.values():
            self.records.extend(
                Record(m.key, m.value, tuple(m.headers), m.partition, m.offset, m.timestamp)
                for m in batch
            )
        return self.records

    async def read_to(self, ends: dict[int, int], within: float) -> list[Record]:
        """Everything up to ``ends`` (by partition, :meth:`Deployment.end_offsets`); fails
        after ``within`` seconds."""

        async def complete() -> bool:
            seen: dict[int, int] = defaultdict(int)
            for record in await self.poll():
                seen[record.partition] = max(seen[record.partition], record.offset + 1)
            return all(seen[partition] >= end for partition, end in ends.items() if end)

        await wait_for(f"{self.topic} to be read", complete, within)
        return self.records

    async def close(self) -> None:
        """Stop the consumer."""
        if self._started:
            await self._consumer.stop()


async def logged(worker: ManagedProcess, text: str) -> bool:
    """Whether the worker's log holds ``text``."""
    return text in worker.log_tail(100_000)


def alert_bodies(records: Iterable[Record]) -> list[dict[str, Any]]:
    """The JSON bodies of alert messages."""
    return [orjson.loads(record.value) for record in records if record.value is not None]


def latest_values(records: Iterable[Record]) -> dict[bytes, bytes]:
    """The last value per key, as a compacted topic would keep it."""
    latest: dict[bytes, bytes] = {}
    for record in records:
        if record.key is not None and record.value is not None:
            latest[record.key] = record.value
    return latest


def changelog_reader(deployment: Deployment) -> TopicReader:
    """A reader of the referral table's changelog."""
    return deployment.reader(deployment.names.referral_changelog)
