"""The local stack's services are real: Kafka, PostgreSQL and Prometheus answer real calls."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, HTTPServer
from threading import Thread

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from deploy.local import KafkaBroker, PrometheusServer, ServiceError
from deploy.local.process import REPO_ROOT, free_port
from mhst_tracker.dashboards import DashboardError, Sample, query_prometheus
from tests.kafka import create_topic

MESSAGES = 10_000
PARTITIONS = 6
KEYS = 500


@pytest.mark.kafka
async def test_kafka_keyed_messages_come_back_in_per_key_order(kafka_bootstrap: str) -> None:
    topic = f"foundation-{uuid.uuid4().hex[:8]}"
    await create_topic(kafka_bootstrap, topic, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, key=f"k{i % KEYS}".encode(), value=str(i).encode())
            for i in range(MESSAGES)
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"group-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: dict[bytes, list[int]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    total = 0
    try:
        async with asyncio.timeout(60):
            while total < MESSAGES:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for record in records:
                        assert record.key is not None
                        assert record.value is not None
                        seen[record.key].append(int(record.value))
                        partitions_of_key[record.key].add(tp.partition)
                        total += 1
        await consumer.commit()
    finally:
        await consumer.stop()

    assert total == MESSAGES
    assert len(seen) == KEYS
    for key, values in seen.items():
        assert values == sorted(values), f"key {key!r} out of order"
        assert len(partitions_of_key[key]) == 1
    used = set().union(*partitions_of_key.values())
    assert used == set(range(PARTITIONS))


@pytest.mark.postgres
async def test_postgres_round_trip(postgres_url: str) -> None:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    table = f"t_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, day date NOT NULL)")
        rows = [(i, datetime.date(2026, 9, 1 + i % 28)) for i in range(100)]
        await conn.copy_records_to_table(table, records=rows)
        back = await conn.fetch(f"SELECT id, day FROM {table} ORDER BY id")
        assert [tuple(r) for r in back] == rows
        assert "PostgreSQL" in await conn.fetchval("SELECT version()")
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE foundation_probe gauge\nfoundation_probe 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.prometheus
def test_prometheus_scrapes_a_local_target(prometheus: PrometheusServer) -> None:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _MetricsHandler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        prometheus.set_targets([f"127.0.0.1:{port}"])
        deadline = time.monotonic() + 30
        result: list[Sample] = []
        while time.monotonic() < deadline and not result:
            result = query_prometheus(
                prometheus.url, f'foundation_probe{{instance="127.0.0.1:{port}"}}'
            )
            time.sleep(0.5)
        assert result, "Prometheus never scraped the target"
        assert result[0].value == 42
        with pytest.raises(DashboardError, match="parse error"):
            query_prometheus(prometheus.url, "sum(")
    finally:
        server.shutdown()


@pytest.mark.kafka
def test_broker_on_a_taken_port_fails_fast_naming_the_cause() -> None:
    port = free_port()
    squatter = HTTPServer(("127.0.0.1", port), _MetricsHandler)
    Thread(target=squatter.serve_forever, daemon=True).start()
    broker = KafkaBroker(port=port)
    started = time.monotonic()
    try:
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{port} is already in use"):
            broker.start()
    finally:
        broker.stop()
        squatter.shutdown()
    assert time.monotonic() - started < 10


@pytest.mark.kafka
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_killed_run_leaves_no_service_running(how: str) -> None:
    """A run killed mid-way takes its broker, database and Prometheus with it."""
    script = (
        "from deploy.local import KafkaBroker, PostgresServer, PrometheusServer\n"
        "services = [KafkaBroker(), PostgresServer(), PrometheusServer()]\n"
        "for s in services: s.start()\n"
        "for s in services: s.wait_ready()\n"
        "print(' '.join(str(s.process.pid) for s in services), flush=True)\n"
        "print(' '.join(str(s.run_dir) for s in services), flush=True)\n"
        "import signal; signal.pause()  # until the test kills this run\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    run_dirs = proc.stdout.readline().split()
    assert len(pids) == 3, "the services did not start"
    proc.send_signal(getattr(signal, how))
    proc.wait(30)
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in pids if _is_live(pid)]
        time.sleep(0.2)
    for run_dir in run_dirs:  # a killed run cannot clean up; the next run would sweep these
        shutil.rmtree(run_dir, ignore_errors=True)
    assert not alive, f"service processes {alive} outlived the run"


def _is_live(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
