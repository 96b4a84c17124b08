"""Stream worker benchmark: throughput against raw aiokafka and Faust, alert latency, timers.

Run from the repository root::

    .venv/bin/python -m bench.bench_worker --events 100000 --open 1000000

It starts its own Kafka broker (12 partitions) and measures, in the same run, with worker
processes (``mhst-tracker worker``, RocksDB store) on a simulated clock running at wall
speed (``simulated:START@1``), so no deadline passes unless the benchmark moves it there:

* **baselines**: a raw aiokafka consumer reading the events topic (no processing), and
  Faust's own ceiling: an agent that does nothing per event (:mod:`bench.noop_worker`),
  from "Worker ready" to its last event;
* **worker throughput**: the same messages through a worker started after they were
  published, from "Worker ready" until the alert of a sentinel event published last on
  every partition (a receipt three days old, so it breaches at once) is produced;
* **on-ingest latency**: receipts dated three days before the worker's clock, so each
  reveals an assessment breach at once, sent at a steady pace while the worker runs;
  latency = the alert message's timestamp (the broker's append time) minus the event's
  produce time;
* **open referrals**: ``--open`` waiting referrals (receipt and same-day assessment at
  10:00 on one of the 27 days before the clock's day D), as the engine records them at 12:00
  on D, written straight to the table's changelog (one record per referral, as a compacted
  changelog holds them; loading them as events through a worker would take the worker's
  event rate);
* **restore**: a worker with an empty data directory is timed from start to "Worker ready"
  and to its deadline index being rebuilt (state from the changelog), and its RSS read;
* **timer lateness**: that worker is stopped and another started on its data directory,
  with a clock anchored so that the next local midnight M comes twice the restore time plus
  10 s later. At M about 3/27 of the open referrals reach a deadline at once (allocation at
  risk, allocation breach, intervention at risk); the count expected comes from the engine.
  Lateness = the alert message's Kafka timestamp minus M (the alerts topic is set to
  ``LogAppendTime``: the moment the broker appended the alert), and the moment the benchmark
  reads it minus M, in wall seconds, for every alert of that midnight; then the time until
  the worker has restated its metrics for the new day.

The no-op agent is also run with ``stream.take(1000, within=1)`` batches.

``--profile PATH`` runs only the throughput part, with the worker under cProfile (stats in
PATH, top functions printed). Figures go to ``bench/results/worker.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from bench.messages import Messages, valid_messages
from deploy.local import KafkaBroker
from deploy.local.process import ManagedProcess
from mhst_tracker.adapters.kafka import create_topics
from mhst_tracker.config import Settings
from mhst_tracker.domain.alerts import decide_alerts
from mhst_tracker.domain.clock import ReferralClock
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.pipeline import accept, apply_event
from mhst_tracker.topics import TopicNames

RESULTS = Path(__file__).parent / "results" / "worker.json"
MHST_TRACKER = Path(sys.executable).parent / "mhst-tracker"
ZONE = TRAILBLAZER_4WW.timezone
PARTITIONS = 12
SPREAD_DAYS = 27
DAY_D = date(2026, 3, 2)
START = datetime.combine(DAY_D, clock_time(12), tzinfo=ZONE)
MIDNIGHT = datetime.combine(DAY_D + timedelta(days=1), clock_time(0), tzinfo=ZONE)

NOOP_TAKE = 1000
"""Batch size of the no-op agent's ``stream.take`` run."""


def receipt_body(referral_id: str, moment: datetime) -> dict[str, Any]:
    """A receipt event's JSON body."""
    return {
        "event_id": f"{referral_id}-r",
        "type": "referral_received",
        "referral_id": referral_id,
        "occurred_at": moment.isoformat(),
        "team_id": f"T{sum(referral_id.encode()) % 40}",
    }


def open_referral(number: int) -> list[tuple[bytes, bytes]]:
    """Open referral ``number``: received at 10:00 on one of the 27 days before D, assessed."""
    referral_id = f"O{number:07d}"
    day = DAY_D - timedelta(days=1 + number % SPREAD_DAYS)
    body = receipt_body(referral_id, datetime.combine(day, clock_time(10), tzinfo=ZONE))
    assessed = {**body, "event_id": f"{referral_id}-a", "type": "assessment_completed"}
    key = referral_id.encode()
    return [(key, orjson.dumps(body)), (key, orjson.dumps(assessed))]


def open_referrals(count: int) -> Iterator[tuple[bytes, bytes]]:
    """The events of ``count`` open referrals."""
    for number in range(count):
        yield from open_referral(number)


def alerts_at_midnight(count: int) -> int:
    """How many alerts the engine raises at MIDNIGHT for the open referrals, loaded at START."""
    per_class = []
    for offset in range(SPREAD_DAYS):
        clock = ReferralClock(f"O{offset:07d}")
        for _key, value in open_referral(offset):
            clock.apply(parse_event(value))
        raised = {(a.stage, a.kind.value) for a in decide_alerts(clock, TRAILBLAZER_4WW, START)}
        per_class.append(len(decide_alerts(clock, TRAILBLAZER_4WW, MIDNIGHT, raised)))
    return sum(per_class[number % SPREAD_DAYS] for number in range(count))


def sentinels(tag: str) -> list[tuple[int, bytes, bytes]]:
    """One stale receipt per partition (partition, key, value): each breaches at once."""
    out = []
    for partition in range(PARTITIONS):
        referral_id = f"S{tag}{partition:02d}"
        body = receipt_body(referral_id, START - timedelta(days=3))
        out.append((partition, referral_id.encode(), orjson.dumps(body)))
    return out


async def produce(
    bootstrap: str,
    topic: str,
    messages: Iterator[tuple[bytes, bytes]] | Messages,
    last: list[tuple[int, bytes, bytes]] = (),  # type: ignore[assignment]
) -> None:
    """Publish ``messages`` partitioned by key, then ``last`` on their given partitions."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=262144)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
        for partition, key, value in last:
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def raw_consume_rate(bootstrap: str, topic: str, count: int) -> float:
    """Messages per second of a plain aiokafka consumer reading ``count`` messages."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    seen = 0
    started = time.perf_counter()
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            seen += sum(len(batch) for batch in batches.values())
    finally:
        await consumer.stop()
    return count / (time.perf_counter() - started)


class AlertWatch:
    """Reads the alerts topic from its current end."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest"
        )

    async def start(self) -> None:
        await self.consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in range(PARTITIONS)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for partition in partitions:
            await self.consumer.position(partition)

    async def until(
        self, done: Any, within: float, worker: ManagedProcess
    ) -> list[tuple[float, dict[str, Any]]]:
        """(timestamp, body) of alerts read until ``done(body)`` is true for one of them."""
        seen: list[tuple[float, dict[str, Any]]] = []
        deadline = time.monotonic() + within
        finished = False
        while not finished:
            if time.monotonic() > deadline or worker.exit_code() is not None:
                raise RuntimeError(f"{worker.name}: alerts missing\n{worker.log_tail()}")
            for stamp, body in await self.fetch():
                seen.append((stamp, body))
                finished = done(stamp, body) or finished
        return seen

    async def fetch(self) -> list[tuple[float, dict[str, Any]]]:
        """The alerts of one fetch (waiting up to 200 ms): (broker timestamp, body)."""
        batches = await self.consumer.getmany(timeout_ms=200, max_records=50000)
        return [
            (message.timestamp / 1000, orjson.loads(message.value or b"{}"))
            for batch in batches.values()
            for message in batch
        ]

    async def stop(self) -> None:
        await self.consumer.stop()


def sentinel_done(tag: str) -> Any:
    """A ``done`` test that is true once every sentinel ``tag`` has had its alert."""
    waiting = {f"S{tag}{partition:02d}" for partition in range(PARTITIONS)}

    def done(_stamp: float, body: dict[str, Any]) -> bool:
        waiting.discard(body.get("referral_id", ""))
        return not waiting

    return done


@dataclass
class Bench:
    """One benchmark deployment: settings, a scratch directory, the processes started."""

    settings: Settings
    base: Path
    processes: list[ManagedProcess]

    @property
    def names(self) -> TopicNames:
        return self.settings.topics

    def env(self, data_dir: Path, clock: str) -> dict[str, str]:
        return {
            **os.environ,
            "MHST_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "MHST_TOPIC_PREFIX": self.settings.topic_prefix,
            "MHST_PARTITIONS": str(PARTITIONS),
            "MHST_CLOCK": clock,
            "MHST_WORKER_DATA_DIR": str(data_dir),
            "MHST_METRICS_PORT": "0",
        }

    def start(
        self, name: str, argv: list[str], data: str, clock: str, extra: dict[str, str] | None = None
    ) -> ManagedProcess:
        env = {**self.env(self.base / data, clock), **(extra or {})}
        process = ManagedProcess(name, argv, self.base / f"{name}.log", env=env)
        process.start()
        self.processes.append(process)
        return process

    def worker(
        self, name: str, data: str, clock: str, profile: Path | None = None
    ) -> ManagedProcess:
        argv = [str(MHST_TRACKER), "worker"]
        if profile is not None:
            argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *argv]
        return self.start(name, argv, data, clock)

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop(timeout=60)


def clock_at(moment: datetime) -> str:
    return f"simulated:{moment.isoformat()}@1"


async def wait_log(process: ManagedProcess, text: str, within: float = 900) -> float:
    """Wall time (``time.time()``) at which ``text`` was first seen in the process log."""
    deadline = time.monotonic() + within
    while text not in process.log_tail(1_000_000):
        if time.monotonic() > deadline or process.exit_code() is not None:
            raise RuntimeError(f"{process.name}: no {text!r}:\n{process.log_tail()}")
        await asyncio.sleep(0.05)
    return time.time()


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` now, MiB."""
    return _status_mib(pid, "VmRSS")


def peak_rss_mib(pid: int) -> float:
    """The most resident memory process ``pid`` has had so far, MiB (``VmHWM``)."""
    return _status_mib(pid, "VmHWM")


def _status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds used so far by process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(values: list[float], digits: int) -> dict[str, Any]:
    return {
        "count": len(values),
        "min": round(min(values), digits),
        "p50": round(statistics.median(values), digits),
        "p99": round(percentile(values, 0.99), digits),
        "max": round(max(values), digits),
    }


async def noop_rate(bench: Bench, count: int, take: int = 0) -> float:
    """Events per second of Faust's no-op agent over the events topic (batches: ``take``)."""
    process = bench.start(
        f"noop-{take}",
        [sys.executable, "-m", "bench.noop_worker"],
        f"noop-{take}",
        clock_at(START),
        {"BENCH_NOOP_COUNT": str(count), "BENCH_NOOP_TAKE": str(take)},
    )
    ready = await wait_log(process, "Worker ready")
    await wait_log(process, f"counted {count} events at ")
    tail = process.log_tail(1_000_000)
    finished = float(tail.split(f"counted {count} events at ")[1].split()[0])
    process.stop()
    return count / (finished - ready)


async def throughput(
    bench: Bench, messages: Messages, profile: Path | None
) -> tuple[dict[str, Any], ManagedProcess]:
    """Raw, no-op and worker rates over the same topic; returns the worker, still running."""
    bootstrap, names = bench.settings.kafka_bootstrap, bench.names
    tail = sentinels("a")
    await produce(bootstrap, names.events, messages, tail)
    total = len(messages) + len(tail)
    baseline = await raw_consume_rate(bootstrap, names.events, total)
    ceiling = await noop_rate(bench, total)
    ceiling_take = await noop_rate(bench, total, NOOP_TAKE)
    watch = AlertWatch(bootstrap, names.alerts)
    await watch.start()
    worker = bench.worker("w1", "w1", clock_at(START), profile)
    ready = await wait_log(worker, "Worker ready")
    cpu_ready = cpu_seconds(worker.pid or 0)
    seen = await watch.until(sentinel_done("a"), 900, worker)
    cpu_used = cpu_seconds(worker.pid or 0) - cpu_ready
    await watch.stop()
    finished = max(stamp for stamp, body in seen if body["referral_id"].startswith("Sa"))
    rate = total / (finished - ready)
    return {
        "events": total,
        "partitions": PARTITIONS,
        "baseline_raw_consume_events_per_s": round(baseline),
        "faust_noop_agent_events_per_s": round(ceiling),
        "faust_noop_ratio": round(ceiling / baseline, 3),
        f"faust_noop_take_{NOOP_TAKE}_events_per_s": round(ceiling_take),
        "worker_events_per_s": round(rate),
        "ratio": round(rate / baseline, 3),
        "ratio_to_faust_noop": round(rate / ceiling, 3),
        "worker_cpu_share": round(cpu_used / (finished - ready), 2),
    }, worker


async def on_ingest_latency(bench: Bench, worker: ManagedProcess) -> dict[str, Any]:
    """Event produced -> alert produced for 2,000 receipts that breach on arrival."""
    bootstrap, names = bench.settings.kafka_bootstrap, bench.names
    watch = AlertWatch(bootstrap, names.alerts)
    await watch.start()
    probes = [f"P{n:06d}" for n in range(2000)]
    sent: dict[str, float] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for referral_id in probes:
        value = orjson.dumps(receipt_body(referral_id, START - timedelta(days=3)))
        sent[referral_id] = time.time()
        await producer.send_and_wait(names.events, key=referral_id.encode(), value=value)
        await asyncio.sleep(0.002)
    await producer.stop()
    waiting = set(probes)

    def all_probes(_stamp: float, body: dict[str, Any]) -> bool:
        waiting.discard(body.get("referral_id", ""))
        return not waiting

    seen = await watch.until(all_probes, 300, worker)
    await watch.stop()
    latencies = [
        stamp - sent[body["referral_id"]]
        for stamp, body in seen
        if body["referral_id"] in sent and body["stage"] == "assessment"
    ]
    return summary(latencies, 4)


def table_records(count: int) -> Iterator[tuple[int, bytes, bytes]]:
    """The table records (partition, key, value) of ``count`` open referrals loaded at START.

    Each is what a worker stores after the referral's two events: the engine's record, on the
    partition the default partitioner gives its key.
    """
    for number in range(count):
        record = None
        for key, value in open_referral(number):
            partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
            event = accept(key, value, 1 << 16)
            record = apply_event(record, event, partition, TRAILBLAZER_4WW, START).record or record
        assert record is not None
        yield partition, key, record.to_bytes()


async def seed_changelog(bench: Bench, count: int) -> float:
    """Write ``count`` open referrals' records to the table's changelog; returns seconds."""
    began = time.time()
    topic = bench.names.referral_changelog
    admin = AIOKafkaAdminClient(bootstrap_servers=bench.settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bench.settings.kafka_bootstrap, linger_ms=20, max_batch_size=262144
    )
    await producer.start()
    try:
        for partition, key, value in table_records(count):
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()
    return time.time() - began


async def timers(bench: Bench, count: int) -> dict[str, Any]:
    """Restore ``count`` open referrals into a new worker, then time the next midnight."""
    seeded = await seed_changelog(bench, count)
    began = time.time()
    restored = bench.worker("w2", "w2", clock_at(START))
    ready = await wait_log(restored, "Worker ready", 1800)
    indexed = await wait_log(restored, "deadline index rebuilt", 1800)
    rss_loaded = rss_mib(restored.pid or 0)
    restored.stop(timeout=300)

    expected = alerts_at_midnight(count)
    margin = 2 * (indexed - began) + 10
    watch = AlertWatch(bench.settings.kafka_bootstrap, bench.names.alerts)
    await watch.start()
    spawned = time.time()
    midnight_wall = spawned + margin
    clock = f"simulated:{MIDNIGHT.isoformat()}@1/{midnight_wall:.6f}"
    timed = bench.worker("w3", "w2", clock)
    reindexed = await wait_log(timed, "deadline index rebuilt", margin)
    if reindexed >= midnight_wall:
        raise RuntimeError("the worker was not ready before midnight: lateness would be invalid")
    produced: list[float] = []
    received: list[float] = []

    def all_due(stamp: float, body: dict[str, Any]) -> bool:
        detected = datetime.fromisoformat(body["detected_at"])
        if body["referral_id"].startswith("O") and detected >= MIDNIGHT:
            produced.append(stamp - midnight_wall)
            received.append(time.time() - midnight_wall)
        return len(produced) >= expected

    await watch.until(all_due, margin + 1800, timed)
    await watch.stop()
    restated = await wait_log(timed, "metrics restated", 600)
    rss_after = rss_mib(timed.pid or 0)
    return {
        "open_referrals": count,
        "changelog_seeded_s": round(seeded, 1),
        "worker_rss_mib_restored": round(rss_loaded, 1),
        "restore_from_changelog_s": {
            "to_worker_ready": round(ready - began, 2),
            "to_deadline_index": round(indexed - began, 2),
        },
        "timer_lateness_s": {
            "alerts_expected_at_midnight": expected,
            "seconds_before_midnight_at_start": round(margin, 1),
            "index_ready_before_midnight_s": round(midnight_wall - reindexed, 1),
            "alert_produced": summary(produced, 3),
            "alert_received": summary(received, 3),
            "alerts_per_s": round(len(produced) / max(produced)) if max(produced) > 0 else None,
        },
        "metrics_restated_after_midnight_s": round(restated - midnight_wall, 1),
        "worker_rss_mib_after_midnight": round(rss_after, 1),
    }


async def stamp_alerts_on_append(settings: Settings) -> None:
    """Alert messages get the broker's append time as their timestamp (``LogAppendTime``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC,
            settings.topics.alerts,
            configs={"message.timestamp.type": "LogAppendTime"},
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


async def run(events: int, count: int, seed: int, bootstrap: str, profile: Path | None) -> Any:
    settings = Settings(
        kafka_bootstrap=bootstrap, topic_prefix=f"bench{int(time.time())}.", partitions=PARTITIONS
    )
    await create_topics(settings)
    await stamp_alerts_on_append(settings)
    scratch = Path(tempfile.mkdtemp(prefix="mhst-bench-"))
    bench = Bench(settings, scratch, [])
    try:
        figures, worker = await throughput(bench, valid_messages(events, seed), profile)
        if profile is not None:
            worker.stop(timeout=120)
            return figures
        figures["on_ingest_latency_s"] = await on_ingest_latency(bench, worker)
        worker.stop(timeout=120)
        if count:
            figures.update(await timers(bench, count))
        return figures
    finally:
        bench.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="cProfile the worker; throughput only")
    args = parser.parse_args()
    broker = KafkaBroker()
    broker.start()
    try:
        broker.wait_ready()
        started = time.monotonic()
        figures = asyncio.run(
            run(args.events, args.open, args.seed, broker.bootstrap, args.profile)
        )
        figures["bench_wall_s"] = round(time.monotonic() - started)
    finally:
        broker.stop()
    print(json.dumps(figures, indent=2))
    if args.profile is not None:
        stats = pstats.Stats(str(args.profile))
        stats.sort_stats("cumulative").print_stats(40)
        stats.sort_stats("tottime").print_stats(30)
        return
    figures["command"] = (
        f".venv/bin/python -m bench.bench_worker --events {args.events} --open {args.open}"
    )
    figures["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
