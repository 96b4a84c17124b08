"""``mhst-tracker import FILE --to kafka`` on the real broker, and the import's progress bar."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from click.testing import CliRunner

from deploy.local.process import free_port
from mhst_tracker.cli import main
from mhst_tracker.config import Settings
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import event_to_json, parse_event
from mhst_tracker.simulate import simulate
from tests.adapters.store.conftest import PLANTED, event, jsonl
from tests.adapters.store.test_importer import CSV_EXTRACT
from tests.kafka import create_topic
from tests.terminal import run_on_terminal

pytestmark = pytest.mark.kafka

PARTITIONS = 3


def events_topic(kafka_bootstrap: str) -> tuple[dict[str, str], str]:
    """The environment of an import to a fresh topic prefix, and its events topic (created)."""
    prefix = f"import{uuid.uuid4().hex[:8]}."
    env = {"MHST_KAFKA_BOOTSTRAP": kafka_bootstrap, "MHST_TOPIC_PREFIX": prefix}
    topic = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix).topics.events
    asyncio.run(create_topic(kafka_bootstrap, topic, PARTITIONS))
    return env, topic


def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on the topic, partition by partition, in offset order."""
    return asyncio.run(_read_topic(bootstrap, topic))


async def _read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number) for number in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {
            tp: [] for tp in partitions
        }
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            fetched = await consumer.getmany(timeout_ms=1000)
            for tp, batch in fetched.items():
                records[tp].extend(batch)
        return [record for tp in partitions for record in records[tp]]
    finally:
        await consumer.stop()


def run_import(path: Path, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["import", str(path), "--to", "kafka"], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def by_key(records: list[ConsumerRecord[bytes, bytes]]) -> dict[str, list[str]]:
    """Event ids per record key, in topic order."""
    keyed: dict[str, list[str]] = {}
    for record in records:
        assert record.key is not None
        assert record.value is not None
        keyed.setdefault(record.key.decode(), []).append(orjson.loads(record.value)["event_id"])
    return keyed


def test_jsonl_to_kafka_sends_valid_lines_keyed_by_referral(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, topic = events_topic(kafka_bootstrap)
    bodies = [
        event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z", team_id="T1", **PLANTED),
        event("e2", "referral_received", "R2", "2026-09-01T10:00:00+01:00", team_id="T2"),
        event("e3", "allocated", "R1", "2026-09-03T09:00:00Z"),
        event("e4", "allocated", "R2", "2026-09-04T09:00:00Z"),
        event("e5", "intervention_started", "R1", "2026-09-10T09:00:00Z"),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        jsonl(
            [
                bodies[0],
                "{not json",
                bodies[1],
                event("bad1", "allocated", "R1", "2026-09-03T09:00:00"),
                bodies[2],
                event("bad2", "teleported", "R2", "2026-09-03T09:00:00Z"),
                bodies[3],
                bodies[4],
            ]
        )
    )
    code, stderr = run_import(path, env)
    assert code == 0, stderr
    assert "events.jsonl:2: invalid JSON" in stderr
    assert "events.jsonl:4: occurred_at has no UTC offset" in stderr
    assert "events.jsonl:6: type is not one of the allowed values" in stderr
    assert "5 events published; 3 lines rejected" in stderr
    records = read_topic(kafka_bootstrap, topic)
    # Each event in its canonical form: the contract's fields only (the planted ones are
    # gone), its offset kept, the schema version written out; never the line as it came.
    sent = sorted(record.value or b"" for record in records)
    assert sent == sorted(event_to_json(parse_event(body)) for body in bodies)
    assert not any(name.encode() in value for value in sent for name in PLANTED)
    assert b'"occurred_at":"2026-09-01T10:00:00+01:00"' in b"".join(sent)
    assert by_key(records) == {"R1": ["e1", "e3", "e5"], "R2": ["e2", "e4"]}


def test_a_missing_topic_or_broker_is_a_clear_error(kafka_bootstrap: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        jsonl([event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z", team_id="T1")])
    )
    prefix = f"missing{uuid.uuid4().hex[:8]}."
    env = {"MHST_KAFKA_BOOTSTRAP": kafka_bootstrap, "MHST_TOPIC_PREFIX": prefix}
    topic = Settings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix).topics.events
    started = time.monotonic()
    code, stderr = run_import(path, env)
    assert code == 1
    assert f"Error: topic {topic} does not exist on {kafka_bootstrap}" in stderr
    assert "mhst-tracker topics create" in stderr
    # Refused up front, not after the producer's 40 s wait for the topic's metadata.
    assert time.monotonic() - started < 20
    # A broker that is not there: an error naming the address, not a traceback.
    closed = f"127.0.0.1:{free_port()}"
    code, stderr = run_import(path, {**env, "MHST_KAFKA_BOOTSTRAP": closed})
    assert code == 1
    assert f"Error: Kafka at {closed}: KafkaConnectionError" in stderr


def test_a_large_file_is_sent_whole_across_batches(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, topic = events_topic(kafka_bootstrap)
    lines = list(simulate(3, date(2026, 9, 1), events=4500))
    expected: dict[str, list[str]] = {}
    rejected = 0
    for line in lines:
        try:
            parsed = parse_event(line)
        except InvalidEvent:
            rejected += 1
            continue
        expected.setdefault(parsed.referral_id, []).append(parsed.event_id)
    assert rejected, "the simulated stream should hold some bad lines"
    path = tmp_path / "simulated.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, stderr = run_import(path, env)
    assert code == 0, stderr
    sent = len(lines) - rejected
    assert f"{sent} events published; {rejected} lines rejected" in stderr
    records = read_topic(kafka_bootstrap, topic)
    assert len(records) == sent
    assert by_key(records) == expected


def test_csv_extract_to_kafka(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, topic = events_topic(kafka_bootstrap)
    path = tmp_path / "extract.csv"
    path.write_text(CSV_EXTRACT)
    code, stderr = run_import(path, env)
    assert code == 0, stderr
    assert "extract.csv:5: ReferralRequestReceivedDate is not a date" in stderr
    assert "8 events published; 3 lines rejected" in stderr
    records = read_topic(kafka_bootstrap, topic)
    types: dict[bytes, list[str]] = {}
    for record in records:
        assert record.key is not None
        types.setdefault(record.key, []).append(parse_event(record.value or b"").type.value)
    assert types == {
        b"SR1": ["referral_received", "assessment_completed", "allocated", "intervention_started"],
        b"SR2": ["referral_received", "assessment_completed"],
        b"SR3": ["referral_received", "referral_closed"],
    }
    assert len(records) == 8


def test_progress_bar_only_on_a_terminal(kafka_bootstrap: str, tmp_path: Path) -> None:
    env, _ = events_topic(kafka_bootstrap)
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        jsonl(
            [
                event("e1", "referral_received", "R1", "2026-09-01T09:00:00Z", team_id="T1"),
                "{not json",
                event("e2", "allocated", "R1", "2026-09-03T09:00:00Z"),
            ]
        )
    )
    args = ["import", str(path), "--to", "kafka"]
    code, shown = run_on_terminal(args, env, terminal=True)
    assert code == 0, shown
    assert "importing" in shown
    assert "100%" in shown
    assert "events.jsonl:2: invalid JSON" in shown
    code, piped = run_on_terminal(args, env, terminal=False)
    assert code == 0, piped
    assert "importing" not in piped
    assert "%" not in piped
    assert "events.jsonl:2: invalid JSON" in piped
    assert "2 events published; 1 line rejected" in piped
