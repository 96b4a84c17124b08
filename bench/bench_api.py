"""Ingestion API benchmark: events per second in batches, and single-event latency at a fixed
request rate, against producing the same events with raw aiokafka in the same run.

Run from the repository root::

    .venv/bin/python -m bench.bench_api --events 100000 --rounds 3

It starts its own Kafka broker, creates the topics, migrates an SQLite store holding one
token, and starts ``mhst-tracker api`` as a separate process (as deployed: uvicorn, the
token from the store, the idempotent ``acks=all`` producer). The load generator runs in this
process on loopback (httpx, keep-alive connections). Measured in the same run:

* **raw producer (baseline)**: the same events' canonical bytes, keyed by referral id,
  produced by a bare ``AIOKafkaProducer`` with the API's producer settings (idempotent,
  ``acks=all``, the same batch and request sizes), in batches of ``--batch`` with
  ``--concurrency`` batches in flight, each batch awaited until the broker acknowledged it:
  what the API does minus HTTP, parsing and checks;
* **API, batched**: the same events as JSON arrays of ``--batch`` events, ``--concurrency``
  requests in flight; each request's 202 comes after the broker's acknowledgement;
* **API, single events**: one event per request at ``--rate`` requests per second for
  ``--seconds`` seconds, open loop (each request starts at its scheduled moment, whether
  or not earlier ones have been answered; latency counts from the scheduled moment, so a
  slow answer cannot hide the queue behind it), p50 and p99 latency and the answered rate.

The raw producer and the batched API alternate for ``--rounds`` rounds on the same broker
and topic; the result is the median round by ratio. Targets: batched ingestion at least 0.5
of the raw producer's rate; single-event p99 at most 25 ms at 200 requests per second.
Figures go to ``bench/results/api.json``. The machine is shared (2 cores: the broker, the
API and the load generator compete), so figures from a busy machine are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from deploy.local import KafkaBroker
from deploy.local.process import ManagedProcess, free_port
from mhst_tracker import bootstrap
from mhst_tracker.adapters.producer import canonical, kafka_producer
from mhst_tracker.commands import running
from mhst_tracker.config import Settings
from mhst_tracker.domain.errors import InvalidEvent
from mhst_tracker.domain.events import Event, parse_event
from mhst_tracker.simulate import simulate

RESULTS = Path(__file__).parent / "results" / "api.json"
TARGET_RATIO = 0.5
TARGET_P99_MS = 25.0
START = date(2025, 9, 1)
PARTITIONS = 6
SOURCE = "bench"
TRACKER = [str(Path(sys.executable).with_name("mhst-tracker"))]


@dataclasses.dataclass(frozen=True)
class Round:
    """One round: the raw producer, then the API, on the same events."""

    raw_events_per_s: int
    api_events_per_s: int
    ratio: float
    api_statuses: dict[int, int]


def valid_events(count: int, seed: int) -> list[tuple[bytes, Event]]:
    """``count`` valid simulated events (each with its team), as sent and as parsed."""
    events: list[tuple[bytes, Event]] = []
    for line in simulate(seed, START, events=count + count // 10):
        try:
            event = parse_event(line)
        except InvalidEvent:
            continue
        if event.team_id is not None:
            events.append((line.encode(), event))
        if len(events) == count:
            break
    return events


def prepare(env: dict[str, str], teams: Sequence[str]) -> str:
    """Topics, a migrated store and a token for ``teams``, by the commands a deployment
    runs; the token."""
    for args in (["topics", "create"], ["db", "upgrade"]):
        subprocess.run([*TRACKER, *args], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [*TRACKER, "tokens", "create", "--source", SOURCE, "--teams", ",".join(teams)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return made.stdout.strip()


async def time_raw(settings: Settings, batches: list[list[Event]], concurrency: int) -> float:
    """Seconds to produce every batch with a bare producer, as the API's producer is set up."""
    client = bootstrap.wire(settings).kafka
    producer = kafka_producer(
        client.bootstrap_servers,
        timeout=settings.api_produce_timeout,
        max_request_bytes=client.max_request_bytes,
        batch_bytes=client.batch_bytes,
    )
    await producer.start()
    # Encoded before the clock starts: the baseline does no work the broker does not see.
    encoded = [
        [(event.referral_id.encode(), canonical(event)) for event in batch] for batch in batches
    ]
    queue: asyncio.Queue[list[tuple[bytes, bytes]]] = asyncio.Queue()
    for batch in encoded:
        queue.put_nowait(batch)
    topic = settings.topics.events

    async def sender() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            sent = [await producer.send(topic, value, key=key) for key, value in batch]
            await asyncio.gather(*sent)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def time_api_batches(
    url: str, token: str, bodies: list[bytes], concurrency: int
) -> tuple[float, dict[int, int]]:
    """Seconds to POST every body with ``concurrency`` requests in flight, and the statuses."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:

        async def poster() -> None:
            while not queue.empty():
                answer = await client.post("/v1/events", content=queue.get_nowait())
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        await client.get("/healthz")  # connections open before the clock starts
        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


async def single_events(url: str, token: str, bodies: list[bytes], rate: float) -> dict[str, Any]:
    """One event per request at ``rate`` requests a second, open loop: latencies in ms from
    each request's scheduled moment, and the rate answered."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60
    ) as client:
        await asyncio.gather(*(client.get("/healthz") for _ in range(8)))

        async def one(body: bytes, due: float) -> None:
            answer = await client.post("/v1/events", content=body)
            latencies.append((time.perf_counter() - due) * 1000)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        tasks = []
        started = time.perf_counter()
        for number, body in enumerate(bodies):
            due = started + number / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(body, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(bodies),
        "requests_per_s": round(len(bodies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)], 2),
        "max_ms": round(latencies[-1], 2),
        "statuses": statuses,
    }


def start_api(env: dict[str, str], work: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    process = ManagedProcess(
        "api",
        [*TRACKER, "api", "--loglevel", "warning"],
        work / "api.log",
        env={
            **env,
            "MHST_API_PORT": str(port),
            "MHST_API_METRICS_PORT": str(free_port()),
            "MHST_API_RATE_LIMIT": "1000000",
            "MHST_API_RATE_BURST": "1000000",
        },
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.exit_code() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the API did not start:\n{process.log_tail()}")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    events = valid_events(args.events, args.seed)
    batches = [
        [event for _, event in events[start : start + args.batch]]
        for start in range(0, len(events), args.batch)
    ]
    bodies = [
        b"[" + b",".join(raw for raw, _ in events[start : start + args.batch]) + b"]"
        for start in range(0, len(events), args.batch)
    ]
    singles = [raw for raw, _ in events[: int(args.rate * args.seconds)]]
    teams = sorted({event.team_id for _, event in events if event.team_id})
    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    broker = KafkaBroker()
    api: ManagedProcess | None = None
    try:
        broker.start()
        broker.wait_ready()
        settings = Settings(kafka_bootstrap=broker.bootstrap, partitions=PARTITIONS)
        env = {
            **os.environ,
            "MHST_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "MHST_PARTITIONS": str(PARTITIONS),
            "MHST_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'store.db'}",
        }
        token = prepare(env, teams)
        api, url = start_api(env, work)
        rounds: list[Round] = []
        for _ in range(args.rounds):
            raw_seconds = running.run(time_raw(settings, batches, args.concurrency))
            api_seconds, statuses = running.run(
                time_api_batches(url, token, bodies, args.concurrency)
            )
            rounds.append(
                Round(
                    raw_events_per_s=round(len(events) / raw_seconds),
                    api_events_per_s=round(len(events) / api_seconds),
                    ratio=round(raw_seconds / api_seconds, 3),
                    api_statuses=statuses,
                )
            )
        median = sorted(rounds, key=lambda r: r.ratio)[len(rounds) // 2]
        single = running.run(single_events(url, token, singles, args.rate))
    finally:
        if api is not None:
            api.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "api",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "events": len(events),
        "seed": args.seed,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "rounds": [dataclasses.asdict(r) for r in rounds],
        "raw_producer_events_per_s": median.raw_events_per_s,
        "api_batched_events_per_s": median.api_events_per_s,
        "ratio_api_to_raw": median.ratio,
        "target_ratio": TARGET_RATIO,
        "single_event_rate": args.rate,
        "single_event": single,
        "target_p99_ms": TARGET_P99_MS,
        "targets_met": {
            "batched": median.ratio >= TARGET_RATIO,
            "single_p99": single["p99_ms"] <= TARGET_P99_MS,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events per round")
    parser.add_argument("--batch", type=int, default=500, help="events per batched request")
    parser.add_argument("--concurrency", type=int, default=4, help="batches in flight")
    parser.add_argument("--rate", type=float, default=200.0, help="single-event requests/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="single-event phase length")
    parser.add_argument("--rounds", type=int, default=3, help="raw/API rounds")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the figures go")
    args = parser.parse_args()
    figures = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
