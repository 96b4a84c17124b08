"""Failures are retried with backoff and delivered once; failing for good is marked, counted
and sent again by ``notify retry``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

from deploy.local.receivers import smtp_server
from mhst_tracker.adapters.store.ledger import Ledger
from tests.notify.conftest import SECRET, Rig, config_of, deliveries, eventually, sample
from tests.unit.notify.builders import alert

TRACKER = str(Path(sys.executable).with_name("mhst-tracker"))


async def test_smtp_down_then_up_is_retried_and_delivered_once(rig: Rig) -> None:
    registry = CollectorRegistry()
    down_port = rig.smtp_port
    with smtp_server() as (other_port, _):
        pass  # a port nothing listens on now
    config = config_of(rig.routing().replace(f"port = {down_port}", f"port = {other_port}"))
    async with rig.notifier(config, registry=registry):
        await rig.publish([alert("R1")])
        await eventually(
            lambda: deliveries(registry, "email", "manager", "retrying") >= 2,
            what="two failed attempts",
        )
        with smtp_server(port=other_port) as (_, mailbox):
            await eventually(lambda: len(mailbox.received()) == 1, what="the email")
            await asyncio.sleep(1.5)
            assert len(mailbox.received()) == 1
    assert deliveries(registry, "email", "manager", "delivered") == 1


async def test_webhook_answering_500_then_200_and_timing_out_is_delivered_once(rig: Rig) -> None:
    rig.receiver.plan = [500, 500, 3.0]  # two refusals, then a stall past the 2 s timeout
    registry = CollectorRegistry()
    async with rig.notifier(config_of(rig.routing()), registry=registry):
        await rig.publish([alert("R1", stage="intervention", team="MHST002")])
        await eventually(lambda: len(rig.receiver.accepted()) == 2, seconds=30, what="deliveries")
        await asyncio.sleep(1.5)
    ids = [request.webhook_id for request in rig.receiver.requests]
    assert len(ids) == 4  # four attempts
    assert len(set(ids)) == 1  # of one message
    assert [r.status for r in rig.receiver.requests] == [500, 500, 200, 200]
    # The stalled attempt reached the receiver after the notifier gave up on it: a receiver
    # that drops repeated webhook-ids keeps one.
    assert rig.receiver.delivered_ids() == {ids[0]: 2}
    assert deliveries(registry, "webhook", "icb", "retrying") == 3
    assert deliveries(registry, "webhook", "icb", "delivered") == 1


async def test_failing_for_good_is_marked_counted_and_sent_by_notify_retry(
    rig: Rig, tmp_path: Path
) -> None:
    rig.receiver.plan = [503, 503, 503]
    text = rig.routing(delivery="max_attempts = 3")
    registry = CollectorRegistry()
    async with rig.notifier(config_of(text), registry=registry):
        await rig.publish([alert("R1", stage="intervention", team="MHST002")])
        await eventually(
            lambda: (
                sample(registry, "mhst_notify_ledger_deliveries", recipient="icb", status="failed")
                == 1
            ),
            seconds=30,
            what="the failed delivery in the ledger gauge",
        )
    assert deliveries(registry, "webhook", "icb", "failed") == 1
    assert rig.receiver.accepted() == []
    config_file = tmp_path / "routing.toml"
    config_file.write_text(text)
    process = await asyncio.create_subprocess_exec(
        TRACKER,
        "notify",
        "retry",
        env={
            **os.environ,
            "MHST_NOTIFY_CONFIG": str(config_file),
            "MHST_DATABASE_URL": rig.store_url,
            "TEST_WEBHOOK_SECRET": SECRET,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    assert "1 failed made due again; 1 sent: 1 delivered, 0 still failing" in stdout.decode()
    assert len(rig.receiver.accepted()) == 1
    ledger = await Ledger.open(rig.store_url)
    try:
        assert await ledger.counts() == {("icb", "delivered"): 1}
    finally:
        await ledger.close()
