"""A broker outage does not flood the logs: the Kafka client's retries are summarised.

The store sink runs as a process against a broker of its own, in the tracker's JSON log
format; the broker is killed, and for the next 20 seconds the sink's client retries its
connections many times a second. Every line the sink writes meanwhile is one JSON object,
and the repeats are counted (``repeated``) instead of written one by one.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from deploy.local import KafkaBroker
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.config import Settings

OUTAGE_SECONDS = 20.0
COMMAND = Path(sys.executable).with_name("mhst-tracker")


def json_lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def migrated(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def test_twenty_seconds_without_kafka_are_a_few_summarised_lines(
    own_broker: KafkaBroker, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    broker = own_broker
    asyncio.run(migrated(url))
    broker.create_topics(dict.fromkeys(Settings().topics.stored(), 3))
    log = tmp_path / "sink.log"
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("MHST_")},
        "MHST_KAFKA_BOOTSTRAP": broker.bootstrap,
        "MHST_DATABASE_URL": url,
        "MHST_SINK_METRICS_PORT": "0",
        "MHST_LOG_FORMAT": "json",
    }
    with log.open("wb") as output:
        sink = subprocess.Popen(
            [str(COMMAND), "sink"], env=env, stderr=output, stdout=output, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 60
        while not any("newly assigned" in str(line["message"]) for line in json_lines(log)):
            assert sink.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the sink never got its partitions"
            time.sleep(0.2)
        before = len(json_lines(log))
        broker.kill()
        time.sleep(OUTAGE_SECONDS)
        assert sink.poll() is None, "the sink stopped during the outage"
        during = json_lines(log)[before:]
    finally:
        sink.kill()  # a clean stop would wait on the absent broker; this test is about its logs
        sink.wait(timeout=30)
    warnings = [line for line in during if line["level"] in ("warning", "error")]
    assert warnings, "the client logged nothing about the outage"
    assert len(during) <= 30, [line["message"] for line in during]
    # Each kind is written at most once per ten seconds, the rest counted: over 20 seconds
    # a kind that the client repeats shows up again carrying its count.
    assert any(int(str(line.get("repeated", 0))) > 10 for line in warnings), during
