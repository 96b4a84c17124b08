"""Sink benchmark: events per second into PostgreSQL, against a raw asyncpg COPY baseline.

Run from the repository root::

    .venv/bin/python -m bench.bench_sink --events 100000 --seed 1

It starts its own Kafka broker and PostgreSQL server, publishes a simulated stream on the
events topic, then measures in the same run:

* **sink**: a fresh :class:`~mhst_tracker.adapters.store.sink.Sink` consuming the whole topic
  (decode, validate, ``INSERT ... ON CONFLICT DO NOTHING``, the referral projection by the
  engine, offset commits) until its lag is 0, under the command's garbage-collector policy
  (:func:`~mhst_tracker.commands.sink.collector_paused`);
* **store write path**: the same messages' rows through ``Store.write`` in the sink's batch
  size, without Kafka (where the time goes);
* **Kafka alone**: a consumer reading the whole topic with the sink's fetch settings and
  nothing else (no decoding, no database): the share of the broker client;
* **baseline**: asyncpg ``copy_records_to_table`` of the same rows the sink writes, built
  before the clock starts, into empty copies of the tables (same columns and indexes; no
  idempotency, no engine, no Kafka): the event rows (the distinct events, by the store's own
  :func:`~mhst_tracker.adapters.store.backend.event_rows`) into ``events``, then the
  referral rows (one per distinct referral: the final projection, as the store write path
  above left it in its database) into ``referrals``. The stream holds no alerts and no
  invalid events, so the sink writes no other rows. The events COPY alone is recorded beside
  it (``copy_events_only_*``), the baseline of earlier rounds. Rates are per message of the
  stream for all of them.

The sink's own CPU time (this process, which does all the Python work: fetching, decoding,
the engine, encoding the rows) is recorded beside its wall time: the sink runs on one Python
thread, so its rate cannot exceed messages / CPU seconds however well the database's work
overlaps.

The baseline and the sink are timed in ``--rounds`` rounds (default 5), one after the other
in each round, every round into fresh databases and the sink as a new consumer group, on
the same broker, server and topic. On a shared 2-core machine one run of either varies by
up to a third from the next, so each round's ratio is of a sink and a baseline timed within
seconds of each other, and the result is the median round (by ratio); every round's figures
are recorded too. Figures go to ``bench/results/sink.json``; the target is a median
sink/baseline ratio of at least 0.5. Everything runs on the event loop the commands use
(uvloop, :mod:`mhst_tracker.commands.running`), as ``mhst-tracker sink`` does.
"""

import argparse
import asyncio
import json
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from bench.messages import valid_messages
from deploy.local import KafkaBroker, PostgresServer
from mhst_tracker.adapters.metrics import SinkMetrics
from mhst_tracker.adapters.store.backend import EVENT_COLUMNS, event_rows
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.records import Batch, IncomingEvent, Origin
from mhst_tracker.adapters.store.repository import Store
from mhst_tracker.adapters.store.sink import Sink, SinkOptions
from mhst_tracker.adapters.store.sink.policy import FETCH_MAX_WAIT_MS
from mhst_tracker.commands import running
from mhst_tracker.commands.sink import collector_paused
from mhst_tracker.config import Settings
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.timesource import SimulatedClock
from mhst_tracker.topics import TopicNames

TARGET_RATIO = 0.5
RESULTS = Path(__file__).parent / "results" / "sink.json"


async def publish(bootstrap: str, topics: TopicNames, messages: list[tuple[bytes, bytes]]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 6, 1) for name in topics.stored()])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topics.events, key=k, value=v) for k, v in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def fresh_store(server: PostgresServer) -> tuple[Store, str]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(server.dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    await upgrade(engine)
    clock = SimulatedClock.starting(datetime(2026, 6, 1, tzinfo=UTC))
    return Store(engine, TRAILBLAZER_4WW, clock), url


async def time_sink(
    settings: Settings, server: PostgresServer, messages: int, group_id: str
) -> tuple[float, float, int]:
    """Wall and CPU seconds of a fresh sink (consumer group ``group_id``, otherwise its
    default options) until every message is stored (rows are counted once their window's
    referrals are refreshed and its offsets committed; the wall time ends at that last
    commit, the CPU time at the poll, every 10 ms, that saw it), and how many referral rows
    it refreshed."""
    store, _ = await fresh_store(server)
    metrics = SinkMetrics(CollectorRegistry())
    stop = asyncio.Event()
    sink = Sink(store, settings, metrics, SinkOptions(group_id=group_id))
    started, cpu_started = time.time(), time.process_time()
    task = asyncio.create_task(_run_as_the_command(sink, stop))
    while True:
        stored = metrics.registry.get_sample_value(
            "mhst_store_sink_rows_total", {"table": "events", "outcome": "new"}
        )
        duplicates = metrics.registry.get_sample_value(
            "mhst_store_sink_rows_total", {"table": "events", "outcome": "duplicate"}
        )
        if (stored or 0) + (duplicates or 0) >= messages:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    # The rows are counted after their window's offset commit, whose time the sink
    # records: the end is that commit, not the poll that saw it.
    finished = metrics.registry.get_sample_value("mhst_store_sink_last_commit_timestamp_seconds")
    assert finished is not None
    elapsed, cpu = finished - started, time.process_time() - cpu_started
    stop.set()
    await task
    await store.close()
    refreshed = metrics.registry.get_sample_value("mhst_store_sink_referrals_refreshed_total")
    return elapsed, cpu, int(refreshed or 0)


async def _run_as_the_command(sink: Sink, stop: asyncio.Event) -> None:
    """The sink under the command's garbage-collector policy."""
    async with collector_paused():
        await sink.run(stop)


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Set once the group has given the consumer its partitions."""

    def __init__(self) -> None:
        self.done = asyncio.Event()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do."""

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """The join is over."""
        self.done.set()

    async def wait(self) -> None:
        """Until the first assignment."""
        await self.done.wait()


async def time_consume(settings: Settings, messages: int) -> float:
    """Seconds for a group consumer with the sink's fetch settings to read the events topic,
    from its first assignment. Run before the sink, it also has the broker set up its group
    coordinator (the offsets topic), so the sink's own join is an ordinary one."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-read-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    assigned = _Assigned()
    consumer.subscribe([settings.topics.events], listener=assigned)
    await consumer.start()
    try:
        await assigned.wait()
        started = time.perf_counter()
        read = 0
        while read < messages:
            polled = await consumer.getmany(timeout_ms=500, max_records=SinkOptions.batch_size)
            read += sum(len(records) for records in polled.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def time_store_writes(
    server: PostgresServer, messages: list[tuple[bytes, bytes]]
) -> tuple[float, str]:
    """Seconds to write the messages through ``Store.write`` in the sink's batch size, and
    the URL of the database written (its ``referrals`` are the baseline's referral rows)."""
    store, url = await fresh_store(server)
    now = datetime.now(UTC)
    size = SinkOptions.batch_size
    started = time.perf_counter()
    for start in range(0, len(messages), size):
        batch = Batch()
        for offset, (_, value) in enumerate(messages[start : start + size], start=start):
            batch.events.append(
                IncomingEvent(parse_event(value), value, now, Origin("bench", 0, offset))
            )
        await store.write(batch)
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed, url


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def time_copy(
    server: PostgresServer, messages: list[tuple[bytes, bytes]], written_url: str
) -> tuple[float, float]:
    """Seconds of the baseline's two COPYs: the event rows, then the referral rows (read from
    the database at ``written_url``, where the store wrote the same messages)."""
    source = await asyncpg.connect(_asyncpg_dsn(written_url))
    try:
        referral_columns = [
            row["attname"]
            for row in await source.fetch(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'referrals'::regclass"
                " AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            )
        ]
        listed = ", ".join(f'"{name}"' for name in referral_columns)
        referrals = [tuple(row) for row in await source.fetch(f"SELECT {listed} FROM referrals")]
    finally:
        await source.close()
    _, url = await fresh_store(server)
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute("CREATE TABLE events_copy (LIKE events INCLUDING ALL)")
        await connection.execute("CREATE TABLE referrals_copy (LIKE referrals INCLUDING ALL)")
        now = datetime.now(UTC)
        events = []
        seen: set[str] = set()
        for offset, (_, value) in enumerate(messages):
            event = parse_event(value)
            if event.event_id not in seen:
                seen.add(event.event_id)
                events.append(IncomingEvent(event, value, now, Origin("bench", 0, offset)))
        records = [
            (number, *record) for number, record in enumerate(event_rows(events, now), start=1)
        ]
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "events_copy", records=records, columns=["id", *EVENT_COLUMNS]
        )
        events_seconds = time.perf_counter() - started
        started = time.perf_counter()
        await connection.copy_records_to_table(
            "referrals_copy", records=referrals, columns=referral_columns
        )
        return events_seconds, time.perf_counter() - started
    finally:
        await connection.close()


async def run(events: int, seed: int, rounds: int) -> dict[str, Any]:
    messages = valid_messages(events, seed)
    unique = len({parse_event(value).event_id for _, value in messages})
    referrals = len({key for key, _ in messages})
    broker, server = KafkaBroker(), PostgresServer()
    measured: list[dict[str, Any]] = []
    try:
        broker.start()
        server.start()
        await asyncio.to_thread(broker.wait_ready)
        await asyncio.to_thread(server.wait_ready)
        settings = Settings(
            kafka_bootstrap=broker.bootstrap, topic_prefix=f"bench{uuid.uuid4().hex[:6]}."
        )
        await publish(broker.bootstrap, settings.topics, messages)
        write_seconds, written_url = await time_store_writes(server, messages)
        consume_seconds = await time_consume(settings, len(messages))
        for number in range(1, rounds + 1):
            copy_events, copy_referrals = await time_copy(server, messages, written_url)
            sink_seconds, sink_cpu, refreshed = await time_sink(
                settings, server, len(messages), f"bench-sink-{number}"
            )
            measured.append(
                _round(
                    number,
                    len(messages),
                    sink_seconds,
                    sink_cpu,
                    refreshed,
                    copy_events,
                    copy_referrals,
                )
            )
    finally:
        server.stop()
        broker.stop()
    median = sorted(measured, key=lambda figures: figures["ratio_sink_to_copy"])[len(measured) // 2]
    ratios = [figures["ratio_sink_to_copy"] for figures in measured]
    median_ratio = statistics.median(ratios)
    return {
        "benchmark": "sink",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "events": len(messages),
        "distinct_events": unique,
        "seed": seed,
        "batch_size": SinkOptions.batch_size,
        "refresh_batches": SinkOptions.refresh_batches,
        "refresh_seconds": SinkOptions.refresh_seconds,
        "distinct_referrals": referrals,
        "store_write_events_per_s": round(len(messages) / write_seconds),
        "kafka_consume_only_events_per_s": round(len(messages) / consume_seconds),
        "rounds": len(measured),
        "median_round": median["round"],
        **{key: value for key, value in median.items() if key != "round"},
        "ratio_sink_to_copy_rounds": ratios,
        "ratio_sink_to_copy_median": median_ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": median_ratio >= TARGET_RATIO,
        "per_round": measured,
    }


def _round(
    number: int,
    messages: int,
    sink_seconds: float,
    sink_cpu: float,
    refreshed: int,
    copy_events_seconds: float,
    copy_referrals_seconds: float,
) -> dict[str, Any]:
    """One round's figures: rates per message of the stream."""
    copy_seconds = copy_events_seconds + copy_referrals_seconds
    return {
        "round": number,
        "sink_events_per_s": round(messages / sink_seconds),
        "sink_seconds": round(sink_seconds, 2),
        "sink_cpu_seconds": round(sink_cpu, 2),
        "sink_referrals_refreshed": refreshed,
        "copy_baseline_events_per_s": round(messages / copy_seconds),
        "copy_events_only_events_per_s": round(messages / copy_events_seconds),
        "copy_baseline_seconds": round(copy_seconds, 2),
        "copy_events_only_seconds": round(copy_events_seconds, 2),
        "copy_referrals_seconds": round(copy_referrals_seconds, 2),
        "ratio_ceiling_at_sink_cpu": round(copy_seconds / sink_cpu, 3),
        "ratio_sink_to_copy": round(copy_seconds / sink_seconds, 3),
        "ratio_sink_to_events_only_copy": round(copy_events_seconds / sink_seconds, 3),
    }


def main() -> None:
    """Run the benchmark and write its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = running.run(run(args.events, args.seed, args.rounds))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
