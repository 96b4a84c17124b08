"""Stream worker benchmark: throughput against raw aiokafka, alert latency, timer lateness.

Run from the repository root::

    .venv/bin/python -m bench.bench_worker --events 100000 --open 100000

It starts its own Kafka broker and measures, in the same run, on one worker process
(``mhst-tracker worker``, RocksDB store, 12 partitions):

* **baseline**: a raw aiokafka consumer reading the events topic (no processing);
* **worker throughput**: the same messages through a worker started after they were
  published, from "Worker ready" in its log until its committed offsets reach the end of
  the topic (Faust commits every 2.8 s, so the figure is slightly pessimistic);
* **on-ingest latency**: receipts dated three days before the worker's clock, so each
  reveals an assessment breach at once, sent at a steady pace while the worker runs;
  latency = the alert message's timestamp minus the event's produce time;
* **timer lateness**: ``--open`` waiting referrals received over the 28 days before the
  clock's start, so that at the next local midnight thousands of them reach a deadline at
  once; lateness = (``detected_at`` - the deadline) / clock speed, in wall seconds;
* **RSS** of the worker with those referrals, and **restore time**: the worker is killed and
  a new one with an empty data directory is timed from start to "Worker ready".

Figures go to ``bench/results/worker.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from deploy.local import KafkaBroker
from deploy.local.process import ManagedProcess
from mhst_tracker.config import Settings
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import parse_event
from mhst_tracker.domain.profile import TRAILBLAZER_4WW
from mhst_tracker.simulate import simulate
from streams.tracker import app_id
from tests.streams.harness import Deployment

RESULTS = Path(__file__).parent / "results" / "worker.json"
ZONE = TRAILBLAZER_4WW.timezone
SPEED = 3600.0
PARTITIONS = 12


def valid_messages(events: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the valid events of a simulated stream."""
    messages = []
    for line in simulate(seed, date(2025, 9, 1), events=events):
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        messages.append((event.referral_id.encode(), line.encode()))
    return messages


def receipt(referral_id: str, moment: datetime, assessed: bool) -> list[tuple[bytes, bytes]]:
    """A receipt, and its same-day assessment when ``assessed``."""
    key = referral_id.encode()
    body = {
        "event_id": f"{referral_id}-r",
        "type": "referral_received",
        "referral_id": referral_id,
        "occurred_at": moment.isoformat(),
        "team_id": f"T{hash(referral_id) % 40}",
    }
    out = [(key, orjson.dumps(body))]
    if assessed:
        done = {**body, "event_id": f"{referral_id}-a", "type": "assessment_completed"}
        out.append((key, orjson.dumps(done)))
    return out


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=262144)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def raw_consume_rate(bootstrap: str, topic: str, count: int) -> float:
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


async def committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


async def wait_log(worker: ManagedProcess, text: str, within: float = 600) -> float:
    deadline = time.monotonic() + within
    while text not in worker.log_tail(100_000):
        if time.monotonic() > deadline or worker.exit_code() is not None:
            raise RuntimeError(f"{worker.name}: no {text!r}:\n{worker.log_tail()}")
        await asyncio.sleep(0.05)
    return time.perf_counter()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run(events: int, open_referrals: int, seed: int, bootstrap: str) -> dict[str, Any]:
    messages = valid_messages(events, seed)
    start = datetime.combine(date(2026, 3, 2), clock_time(12), tzinfo=ZONE)
    midnight = start.replace(hour=0) + timedelta(days=1)
    settings = Settings(
        kafka_bootstrap=bootstrap,
        topic_prefix=f"bench{int(time.time())}.",
        partitions=PARTITIONS,
        clock=f"simulated:{start.isoformat()}@{SPEED:g}",
    )
    deployment = Deployment(settings, Path(tempfile.mkdtemp(prefix="mhst-bench-")))
    names = deployment.names
    await deployment.create_topics()
    await produce(bootstrap, names.events, messages)
    baseline = await raw_consume_rate(bootstrap, names.events, len(messages))

    worker = deployment.start_worker("w1")
    try:
        ready = await wait_log(worker, "Worker ready")
        group = app_id(settings)
        while await committed(bootstrap, group, names.events) < len(messages):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        worker_rate = len(messages) / (time.perf_counter() - ready)

        probes = [f"P{n:06d}" for n in range(2000)]
        sent: dict[str, float] = {}
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        for referral_id in probes:
            key, value = receipt(referral_id, start - timedelta(days=3), assessed=False)[0]
            sent[referral_id] = time.time()
            await producer.send_and_wait(names.events, key=key, value=value)
            await asyncio.sleep(0.002)
        await producer.stop()

        opened: list[tuple[bytes, bytes]] = []
        for number in range(open_referrals):
            day = start - timedelta(days=1 + number % 27, hours=2)
            opened.extend(receipt(f"O{number:07d}", day, assessed=True))
        loaded_from = time.perf_counter()
        await produce(bootstrap, names.events, opened)
        total = len(messages) + len(probes) + len(opened)
        while await committed(bootstrap, group, names.events) < total:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        load_seconds = time.perf_counter() - loaded_from

        alerts = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await alerts.start()
        alerts.assign([TopicPartition(names.alerts, p) for p in range(PARTITIONS)])
        latencies: list[float] = []
        lateness: list[float] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 10:
            batches = await alerts.getmany(timeout_ms=500, max_records=20000)
            for batch in batches.values():
                for message in batch:
                    quiet_since = time.monotonic()
                    body = orjson.loads(message.value)
                    referral_id = body["referral_id"]
                    if referral_id in sent and body["stage"] == "assessment":
                        latencies.append(message.timestamp / 1000 - sent[referral_id])
                    detected = datetime.fromisoformat(body["detected_at"])
                    if referral_id.startswith("O") and detected >= midnight:
                        lateness.append((detected - midnight).total_seconds() / SPEED)
            if lateness and time.monotonic() - quiet_since > 3:
                break
        await alerts.stop()
        rss = rss_mib(worker.pid or 0)
        worker.kill()
        restarted = deployment.start_worker("w2")
        began = time.perf_counter()
        restore = await wait_log(restarted, "Worker ready") - began
    finally:
        deployment.stop_all()
    return {
        "events": len(messages),
        "partitions": PARTITIONS,
        "baseline_raw_consume_events_per_s": round(baseline),
        "worker_events_per_s": round(worker_rate),
        "ratio": round(worker_rate / baseline, 3),
        "on_ingest_latency_s": {
            "count": len(latencies),
            "p50": round(statistics.median(latencies), 4),
            "p99": round(percentile(latencies, 0.99), 4),
        },
        "open_referrals": open_referrals,
        "open_referrals_load_events_per_s": round(2 * open_referrals / load_seconds),
        "timer_lateness_s": {
            "alerts_at_midnight": len(lateness),
            "p50": round(statistics.median(lateness), 3) if lateness else None,
            "p99": round(percentile(lateness, 0.99), 3) if lateness else None,
            "max": round(max(lateness), 3) if lateness else None,
        },
        "worker_rss_mib": round(rss, 1),
        "restore_seconds_to_ready": round(restore, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    broker = KafkaBroker()
    broker.start()
    try:
        broker.wait_ready()
        figures = asyncio.run(run(args.events, args.open, args.seed, broker.bootstrap))
    finally:
        broker.stop()
    figures["command"] = (
        f".venv/bin/python -m bench.bench_worker --events {args.events} --open {args.open}"
    )
    figures["machine"] = {"python": platform.python_version(), "cpus": 2}
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
