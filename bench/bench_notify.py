"""Notifier benchmark: routed alerts delivered to a local webhook receiver, against posting
the same signed bodies with a bare httpx client in the same run.

Run from the repository root::

    .venv/bin/python -m bench.bench_notify --alerts 10000 --rounds 3

It starts its own Kafka broker and PostgreSQL (the ledger's database, migrated), and a
webhook receiver (:mod:`deploy.local.receivers`, which checks every signature) in this
process. Each round, alternating:

* **bare httpx (baseline)**: the alerts' webhook bodies, each signed as the notifier signs
  it (``standardwebhooks``), posted to the receiver with the notifier's concurrency on one
  ``httpx.AsyncClient``: what the notifier does minus Kafka, routing and the ledger;
* **notifier**: the same alerts on a fresh topic, consumed by the notifier (its Kafka loop,
  routing, ledger on PostgreSQL, Standard Webhooks channel) from the moment it starts until
  the receiver has accepted every one.

Reported: deliveries per second of each and their ratio (the median round by ratio; target
at least 0.5), the time the ledger's statements took per delivery (every ledger call timed),
and delivery lag: alerts produced at ``--rate`` per second for ``--seconds`` seconds with
``detected_at`` set as each is produced, p50 and p99 of arrival at the receiver minus
``detected_at``, beside the same bodies posted by the bare client at the same rate. Figures
go to ``bench/results/notify.json``. On a shared 2-core machine the broker, PostgreSQL, the
receiver and the notifier compete, so the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from deploy.local import KafkaBroker
from deploy.local.postgres import PostgresServer
from deploy.local.receivers import WebhookReceiver, webhook_receiver
from mhst_tracker.adapters.metrics import NotifierMetrics
from mhst_tracker.adapters.notify.webhook import signed_request
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.ledger import Ledger
from mhst_tracker.commands.notify import senders
from mhst_tracker.domain.alerts import Alert, AlertKind, alert_id
from mhst_tracker.notify.config import NotifyConfig, parse_config
from mhst_tracker.notify.consumer import ConsumerOptions, consume
from mhst_tracker.notify.messages import alert_notice
from mhst_tracker.notify.routing import delivery_id
from mhst_tracker.notify.service import Notifier
from mhst_tracker.timesource import WallClock
from tests.kafka import create_topic

RESULTS = Path(__file__).parent / "results" / "notify.json"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ROUTING = """
teams = ["MHST001", "MHST002"]
dashboard_url = "http://127.0.0.1:3000/d/mhst-service-manager"

[[recipients]]
name = "icb"
teams = ["*"]
kinds = ["breach"]
channel = "webhook"
url = "{url}"
secret_env = "BENCH_WEBHOOK_SECRET"
"""


def alerts(count: int, prefix: str, detected_at: datetime) -> list[Alert]:
    """``count`` intervention breaches of distinct referrals."""
    made = []
    for number in range(count):
        referral = f"{prefix}{number:07d}"
        made.append(
            Alert(
                alert_id=alert_id(referral, "intervention", AlertKind.BREACH),
                referral_id=referral,
                team_id="MHST001" if number % 2 else "MHST002",
                school_id="100001",
                stage="intervention",
                kind=AlertKind.BREACH,
                due_on=date(2026, 10, 5),
                days_waited=29,
                detected_at=detected_at,
            )
        )
    return made


class TimedLedger:
    """Times every coroutine call of a ledger (the notifier's only access to the store)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._ledger, name)
        if not asyncio.iscoroutinefunction(value):
            return value

        @functools.wraps(value)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await value(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - began

        return timed


async def publish(bootstrap: str, topic: str, batch: Sequence[Alert]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for alert in batch:
            await producer.send(
                topic, orjson.dumps(alert.to_dict()), key=alert.referral_id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


async def until(check: Callable[[], bool], seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("bench_notify: the receiver did not get every delivery in time")
        await asyncio.sleep(0.01)


class Bare:
    """The baseline: the notifier's signed webhook bodies posted by one httpx client."""

    def __init__(self, config: NotifyConfig) -> None:
        self.recipient = config.recipients[0]
        self.config = config

    def request(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        recipient = self.recipient
        message_id = delivery_id(alert.alert_id, recipient.name)
        notice = alert_notice(alert, recipient, message_id, self.config.dashboard_url)
        assert recipient.secret is not None
        return signed_request(notice, recipient.secret)

    async def post_all(self, batch: Sequence[Alert], concurrency: int) -> None:
        queue: asyncio.Queue[Alert] = asyncio.Queue()
        for alert in batch:
            queue.put_nowait(alert)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def post() -> None:
                while not queue.empty():
                    body, headers = self.request(queue.get_nowait())
                    address = self.recipient.address
                    (await client.post(address, content=body, headers=headers)).raise_for_status()

            await asyncio.gather(*(post() for _ in range(concurrency)))


async def notifier_run(
    bootstrap: str, db_url: str, config: NotifyConfig, topic: str, until_done: Awaitable[None]
) -> float:
    """Seconds the notifier spent in its ledger while ``until_done`` ran."""
    ledger = TimedLedger(await Ledger.open(db_url))
    channels = senders(config)
    metrics = NotifierMetrics(CollectorRegistry())
    notifier = Notifier(config, ledger, channels, metrics, WallClock())  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(notifier, ConsumerOptions(bootstrap, topic, f"{topic}.g"), stop)
    )
    try:
        await until_done
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        for sender in channels.values():
            await sender.close()
        await ledger.close()
    return ledger.seconds


async def one_round(
    number: int, args: argparse.Namespace, bootstrap: str, db_url: str, receiver: WebhookReceiver
) -> dict[str, Any]:
    config = parse_config(
        ROUTING.format(url=receiver.url), {"BENCH_WEBHOOK_SECRET": SECRET}, ("intervention",)
    )
    concurrency = config.delivery.concurrency
    now = datetime.now(UTC)
    bare = Bare(config)
    prefix = f"B{number}-"
    began = time.perf_counter()
    await bare.post_all(alerts(args.alerts, prefix, now), concurrency)
    bare_seconds = time.perf_counter() - began

    prefix = f"N{number}-"
    topic = f"bench{number}-{int(time.time())}.mhst.breach-alerts"
    await create_topic(bootstrap, topic, 12)
    await publish(bootstrap, topic, alerts(args.alerts, prefix, now))
    # Counted by the receiver's arrivals (a dict's length): scanning every request it ever
    # took, each poll, would cost the notifier more in every round.
    target = len(receiver.arrival_times) + args.alerts
    began = time.perf_counter()
    ledger_seconds = await notifier_run(
        bootstrap,
        db_url,
        config,
        topic,
        until(lambda: len(receiver.arrival_times) >= target),
    )
    notifier_seconds = time.perf_counter() - began
    return {
        "bare_per_second": round(args.alerts / bare_seconds, 1),
        "notifier_per_second": round(args.alerts / notifier_seconds, 1),
        "ratio": round(bare_seconds / notifier_seconds, 3),
        "ledger_ms_per_delivery": round(1000 * ledger_seconds / args.alerts, 3),
    }


def arrival_lags(receiver: WebhookReceiver, prefix: str, arrivals: dict[str, float]) -> list[float]:
    lags = []
    for request in receiver.accepted():
        referral = str(request.body.get("referral_id", ""))
        if referral.startswith(prefix):
            detected = datetime.fromisoformat(str(request.body["detected_at"])).timestamp()
            lags.append(arrivals[request.webhook_id] - detected)
    return lags


async def lag_run(
    args: argparse.Namespace, bootstrap: str, db_url: str, receiver: WebhookReceiver
) -> dict[str, Any]:
    """p50 and p99 of delivery lag at a fixed rate: the notifier, then the bare client."""
    config = parse_config(
        ROUTING.format(url=receiver.url), {"BENCH_WEBHOOK_SECRET": SECRET}, ("intervention",)
    )
    count = int(args.rate * args.seconds)
    interval = 1 / args.rate
    result: dict[str, Any] = {"rate": args.rate, "seconds": args.seconds}

    topic = f"benchlag-{int(time.time())}.mhst.breach-alerts"
    await create_topic(bootstrap, topic, 12)

    target = len(receiver.arrival_times) + count

    async def paced_publish() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        try:
            start = time.monotonic()
            for number in range(count):
                await asyncio.sleep(max(0.0, start + number * interval - time.monotonic()))
                (alert,) = alerts(1, f"L{number}-", datetime.now(UTC))
                await producer.send(topic, orjson.dumps(alert.to_dict()), key=b"k")
            await producer.flush()
        finally:
            await producer.stop()
        await until(lambda: len(receiver.arrival_times) >= target)

    await notifier_run(bootstrap, db_url, config, topic, paced_publish())
    lags = arrival_lags(receiver, "L", receiver.arrival_times)
    result["notifier_ms"] = percentiles(lags)

    bare = Bare(config)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(alert: Alert) -> None:
            body, headers = bare.request(alert)
            (await client.post(receiver.url, content=body, headers=headers)).raise_for_status()

        posts = []
        start = time.monotonic()
        for number in range(count):
            await asyncio.sleep(max(0.0, start + number * interval - time.monotonic()))
            (alert,) = alerts(1, f"M{number}-", datetime.now(UTC))
            posts.append(asyncio.create_task(one(alert)))
        await asyncio.gather(*posts)
    result["bare_ms"] = percentiles(arrival_lags(receiver, "M", receiver.arrival_times))
    return result


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50": round(1000 * statistics.median(ordered), 1),
        "p99": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        "count": len(ordered),
    }


async def measure(args: argparse.Namespace, bootstrap: str, db_url: str) -> dict[str, Any]:
    engine = create_engine(db_url)
    await upgrade(engine)
    await engine.dispose()
    with webhook_receiver(SECRET) as receiver:
        rounds = [
            await one_round(number, args, bootstrap, db_url, receiver)
            for number in range(args.rounds)
        ]
        lag = await lag_run(args, bootstrap, db_url, receiver)
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    return {"alerts": args.alerts, "rounds": rounds, "median_round": median, "lag": lag}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100.0, help="alerts per second, lag run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the lag run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    broker = KafkaBroker()
    postgres = PostgresServer()
    try:
        broker.start()
        postgres.start()
        broker.wait_ready()
        postgres.wait_ready()
        figures = asyncio.run(measure(args, broker.bootstrap, postgres.url))
    finally:
        postgres.stop()
        broker.stop()
    figures["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
