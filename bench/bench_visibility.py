"""Visibility benchmark: how long after the broker stamps a message's append time the message
can be seen by an end-offsets (``ListOffsets``) request.

Run from the repository root::

    .venv/bin/python -m bench.bench_visibility --seconds 60

It starts its own Kafka broker and a one-partition topic stamped with ``LogAppendTime`` (as
the alert trials' topics are), then for ``--seconds`` a producer sends one message at a time
while a consumer asks the partition's end offset as fast as it is answered. The broker stamps
a message, writes it, then moves the high watermark; a request answered in between does not
include it. For every message stamped before a request was sent and missing from that
request's answer, the gap is the request's send time less the stamp (``gap_ms``: how many
such misses, and their spread). The baseline is the end-offsets request's own round trip,
measured in the same run.

The alert trials (:data:`tests.streams.trials.VISIBLE_WITHIN_MS`) count an event as known
that long after its stamp. Figures go to ``bench/results/visibility.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.bench_worker import summary
from deploy.local import KafkaBroker

RESULTS = Path(__file__).parent / "results" / "visibility.json"
TOPIC = "visibility"
PARTITION = TopicPartition(TOPIC, 0)


async def measure(bootstrap: str, seconds: float) -> dict[str, Any]:
    """Produce and ask end offsets side by side for ``seconds``; the gaps and round trips."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, 1, 1, topic_configs={"message.timestamp.type": "LogAppendTime"})]
        )
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    asker = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await producer.start()
    await asker.start()
    answers: list[tuple[float, int]] = []
    round_trips: list[float] = []
    stop = time.time() + seconds

    async def ask() -> None:
        while time.time() < stop:
            sent = time.time()
            end = (await asker.end_offsets([PARTITION]))[PARTITION]
            round_trips.append(time.time() - sent)
            answers.append((sent, end))

    async def produce() -> None:
        while time.time() < stop:
            await (await producer.send(TOPIC, b"x"))
            await asyncio.sleep(0.001)

    try:
        await asyncio.gather(ask(), produce())
    finally:
        await producer.stop()
        await asker.stop()
    stamps = await read_stamps(bootstrap)
    gaps = []
    for sent, end in answers:
        offset = end
        while offset in stamps and stamps[offset] < sent:
            gaps.append(sent - stamps[offset])
            offset += 1
    return {
        "messages": len(stamps),
        "requests": len(answers),
        "gap_ms": summary([1000 * gap for gap in gaps], 3) if gaps else {"count": 0},
        "baseline_round_trip_ms": summary([1000 * trip for trip in round_trips], 3),
    }


async def read_stamps(bootstrap: str) -> dict[int, float]:
    """Each message's append stamp (seconds), by offset."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([PARTITION])
        await reader.seek_to_beginning(PARTITION)
        end = (await reader.end_offsets([PARTITION]))[PARTITION]
        stamps: dict[int, float] = {}
        while len(stamps) < end:
            batch = await reader.getmany(PARTITION, timeout_ms=1000)
            for message in batch.get(PARTITION, []):
                stamps[message.offset] = message.timestamp / 1000
        return stamps
    finally:
        await reader.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    broker = KafkaBroker()
    broker.start()
    try:
        broker.wait_ready()
        figures = asyncio.run(measure(broker.bootstrap, args.seconds))
    finally:
        broker.stop()
    figures = {
        **figures,
        "seconds": args.seconds,
        "command": f".venv/bin/python -m bench.bench_visibility --seconds {args.seconds:g}",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
