"""``mhst-tracker notify`` as a process: its checks of the routing file, a SIGKILL in the
middle of a burst, Alertmanager's webhook, ``notify skip``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select

from deploy.local.process import ManagedProcess, free_port
from deploy.local.receivers import smtp_server, webhook_receiver
from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.ledger import DELIVERIES, Ledger, Status
from mhst_tracker.domain.alerts import Alert
from tests.http import get
from tests.kafka import create_topic
from tests.notify.conftest import SECRET, Rig, eventually, routing
from tests.unit.notify.builders import alert

TRACKER = str(Path(sys.executable).with_name("mhst-tracker"))
BURST = 5_000


def run_notify(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TRACKER, "notify", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_bad_configuration_is_exit_code_2_with_each_problem_named(tmp_path: Path) -> None:
    config = tmp_path / "routing.toml"
    config.write_text(
        routing(25, "https://hooks.example.org/x").replace(
            'teams = ["MHST001"]', 'teams = ["MHST01"]'
        )
        + '\n[[recipients]]\nname = "la"\nteams = ["*"]\nchannel = "email"\naddress = "nobody"\n'
    )
    result = run_notify({"MHST_NOTIFY_CONFIG": str(config)})
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"Error: {config}: recipient 'manager': unknown team 'MHST01'"
        " (the service's teams: MHST001, MHST002)",
        f"Error: {config}: recipient 'icb': secret variable TEST_WEBHOOK_SECRET is not set",
        f"Error: {config}: recipient 'la': address is not an email address",
    ]
    unset = run_notify({"MHST_NOTIFY_CONFIG": ""})
    assert unset.returncode == 2
    assert unset.stderr == "Error: MHST_NOTIFY_CONFIG must name the notifier's routing file\n"
    retry = run_notify({"MHST_NOTIFY_CONFIG": str(tmp_path / "none.toml")}, "retry")
    assert retry.returncode == 2
    assert "Traceback" not in retry.stderr
    assert retry.stderr.startswith(f"Error: {tmp_path / 'none.toml'}: cannot be read")


async def test_skip_passes_over_the_alerts_on_the_topic_and_is_refused_while_a_notifier_runs(
    kafka_bootstrap: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}mhst.breach-alerts"
    await create_topic(kafka_bootstrap, topic, 3)
    history = [alert(f"R{number}", stage="intervention") for number in range(5)]
    rig = Rig(kafka_bootstrap, topic, "", None, 0, None)  # type: ignore[arg-type]
    await rig.publish(history)
    env = {"MHST_KAFKA_BOOTSTRAP": kafka_bootstrap, "MHST_TOPIC_PREFIX": prefix}
    skipped = await asyncio.to_thread(run_notify, env, "skip")
    assert (skipped.returncode, skipped.stderr) == (0, "")
    assert skipped.stdout == (
        f"5 alert(s) on {topic} will not be delivered: group {prefix}mhst-notifier now starts"
        " after them\n"
    )
    notifier = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=f"{prefix}mhst-notifier"
    )
    await notifier.start()
    try:
        await notifier.getmany(timeout_ms=3000)  # joined the group
        refused = await asyncio.to_thread(run_notify, env, "skip")
    finally:
        await notifier.stop()
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == (
        f"Error: a notifier is running in group {prefix}mhst-notifier: stop it first;"
        " nothing was skipped\n"
    )


class Process:
    """``mhst-tracker notify`` with a routing file, on a topic prefix of its own."""

    def __init__(self, tmp_path: Path, env: dict[str, str], text: str) -> None:
        self.tmp_path = tmp_path
        config = tmp_path / "routing.toml"
        config.write_text(text)
        self.env = {**os.environ, **env, "MHST_NOTIFY_CONFIG": str(config)}
        self.count = 0

    def start(self, metrics_port: int, port: int | None = None) -> ManagedProcess:
        self.count += 1
        process = ManagedProcess(
            f"notifier {self.count}",
            [TRACKER, "notify"],
            self.tmp_path / f"notifier-{self.count}.log",
            env={
                **self.env,
                "MHST_NOTIFY_METRICS_PORT": str(metrics_port),
                "MHST_NOTIFY_PORT": str(port or free_port()),
            },
        )
        process.start()
        return process


async def sending(store_url: str) -> set[str]:
    """The message ids of the deliveries the ledger has in flight."""
    ledger = await Ledger.open(store_url)
    try:
        async with ledger.engine.connect() as connection:
            result = await connection.execute(
                select(DELIVERIES.c.message_id).where(DELIVERIES.c.status == Status.SENDING)
            )
            return set(result.scalars())
    finally:
        await ledger.close()


def metric(port: int, name: str) -> float:
    status, text = get(port, "/metrics")
    assert status == 200
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


@pytest.mark.postgres
async def test_sigkill_mid_burst_every_alert_delivered_once_resends_counted(
    kafka_bootstrap: str, owner_url: str, tmp_path: Path
) -> None:
    engine = create_engine(owner_url)
    await upgrade(engine)
    await engine.dispose()
    prefix = f"t{uuid.uuid4().hex[:8]}."
    topic = f"{prefix}mhst.breach-alerts"
    await create_topic(kafka_bootstrap, topic, 3)
    alerts = [
        alert(f"R{number:07d}", stage="intervention", team="MHST002") for number in range(BURST)
    ]
    with smtp_server() as (smtp_port, _), webhook_receiver(SECRET) as receiver:
        rig = Rig(kafka_bootstrap, topic, owner_url, None, smtp_port, receiver)  # type: ignore[arg-type]
        text = routing(smtp_port, receiver.url, delivery="concurrency = 32")
        notifier = Process(
            tmp_path,
            {
                "MHST_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "MHST_TOPIC_PREFIX": prefix,
                "MHST_DATABASE_URL": owner_url,
                "TEST_WEBHOOK_SECRET": SECRET,
            },
            text,
        )
        first = notifier.start(free_port())
        try:
            await rig.publish(alerts)
            await eventually(
                lambda: len(receiver.accepted()) >= BURST // 3, seconds=120, what="a third"
            )
            receiver.hold = threading.Event()  # from here every request waits
            # Kill it when every delivery it has in flight has reached the receiver: each is
            # then in the one window left (sent, outcome not written).
            in_flight: set[str] = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                in_flight = await sending(owner_url)
                with receiver.lock:
                    arrived = set(receiver.arrived)
                if in_flight and in_flight <= arrived:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the notifier's deliveries in flight never all arrived")
            first.kill()
        finally:
            first.stop()
        receiver.hold.set()
        receiver.hold = None
        await rig.publish(alerts[::5])  # a worker sends a fifth of them again
        metrics_port = free_port()
        second = notifier.start(metrics_port)
        try:
            await eventually(
                lambda: len(receiver.delivered_ids()) == BURST, seconds=180, what="every alert"
            )
            await eventually(
                lambda: metric(metrics_port, "mhst_notify_duplicates_total") >= len(alerts[::5]),
                seconds=60,
                what="the duplicates read",
            )
            resent = metric(metrics_port, "mhst_notify_resent_total")
        finally:
            second.stop()
    counts = receiver.delivered_ids()
    expected = {request_id(a) for a in alerts}
    assert set(counts) == expected
    repeats = sum(counts.values()) - len(counts)
    assert repeats == len(in_flight) > 0
    assert resent == repeats
    ledger = await Ledger.open(owner_url)
    try:
        assert await ledger.counts() == {("icb", "delivered"): BURST}
    finally:
        await ledger.close()


def request_id(sent: Alert) -> str:
    from mhst_tracker.notify.routing import delivery_id

    return delivery_id(sent.alert_id, "icb")


async def test_alertmanager_notifications_reach_the_operations_recipients(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    store = f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    engine = create_engine(store)
    await upgrade(engine)
    await engine.dispose()
    extra = (
        '[[recipients]]\nname = "ops"\noperations = true\n'
        'channel = "email"\naddress = "ops@mhst.test"\n'
    )
    with smtp_server() as (smtp_port, mailbox), webhook_receiver(SECRET) as receiver:
        notifier = Process(
            tmp_path,
            {
                "MHST_KAFKA_BOOTSTRAP": kafka_bootstrap,
                "MHST_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
                "MHST_DATABASE_URL": store,
                "TEST_WEBHOOK_SECRET": SECRET,
            },
            routing(smtp_port, receiver.url, extra),
        )
        port = free_port()
        process = notifier.start(free_port(), port)
        try:
            await _wait_healthy(port)
            payload = {
                "version": "4",
                "status": "firing",
                "groupKey": '{}:{alertname="MhstNotifyDeliveriesFailed"}',
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {
                            "alertname": "MhstNotifyDeliveriesFailed",
                            "severity": "critical",
                        },
                        "annotations": {"summary": "2 deliveries failed for good"},
                        "fingerprint": "abc",
                    }
                ],
            }
            async with httpx.AsyncClient() as client:
                answer = await client.post(f"http://127.0.0.1:{port}/alertmanager", json=payload)
                refused = await client.post(f"http://127.0.0.1:{port}/alertmanager", content=b"[]")
            assert answer.status_code == 200
            assert refused.status_code == 400
        finally:
            process.stop()
    (message,) = mailbox.received()
    assert message["To"] == "ops@mhst.test"
    assert message["Subject"] == "[FIRING] mhst-tracker: MhstNotifyDeliveriesFailed"


async def _wait_healthy(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the notifier's endpoint did not come up")
