"""The notifier on the real broker, both databases, a real SMTP server and a real webhook
receiver that checks signatures by the specification."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from email.message import EmailMessage

import pytest
from prometheus_client import CollectorRegistry

from mhst_tracker.domain.alerts import AlertKind
from mhst_tracker.notify.consumer import ConsumerOptions, NotifierRunning, skip_to_end
from mhst_tracker.notify.routing import delivery_id
from mhst_tracker.timesource import ManualClock
from tests.notify.conftest import DAILY, Rig, config_of, deliveries, eventually, sample
from tests.unit.notify.builders import DETECTED, alert


def message_ids(messages: list[EmailMessage]) -> list[str]:
    return [str(message["Message-ID"]) for message in messages]


async def test_each_routed_breach_is_delivered_immediately_by_email_and_webhook(rig: Rig) -> None:
    alerts = [
        alert("R1", stage="allocation"),  # manager only
        alert("R2", stage="intervention"),  # manager and icb
        alert("R3", kind=AlertKind.AT_RISK, stage="intervention"),  # manager only (icb: breaches)
        alert("R4", stage="intervention", team="MHST002"),  # icb only
        alert("R5", stage="allocation", team="MHST002"),  # no one
    ]
    registry = CollectorRegistry()
    async with rig.notifier(config_of(rig.routing()), registry=registry):
        await rig.publish(alerts)
        await eventually(lambda: len(rig.mailbox.received()) == 3, what="three emails")
        await eventually(lambda: len(rig.receiver.accepted()) == 2, what="two webhooks")
        await asyncio.sleep(1)  # nothing more arrives
    emails = rig.mailbox.received()
    assert len(emails) == 3
    assert sorted(str(message["Subject"]) for message in emails) == [
        "At risk: team MHST001, intervention stage, due 2026-09-14",
        "Breach: team MHST001, allocation stage, due 2026-09-14",
        "Breach: team MHST001, intervention stage, due 2026-09-14",
    ]
    assert {str(message["To"]) for message in emails} == {"manager@mhst.test"}
    assert sorted(message_ids(emails)) == sorted(
        f"<{delivery_id(a.alert_id, 'manager')}@mhst.test>" for a in alerts[:3]
    )
    by_id = {f"<{delivery_id(a.alert_id, 'manager')}@mhst.test>": a for a in alerts[:3]}
    for message in emails:
        sent = by_id[str(message["Message-ID"])]
        plain, html = message.get_body(("plain",)), message.get_body(("html",))
        assert isinstance(plain, EmailMessage)
        assert isinstance(html, EmailMessage)
        for fact in (sent.referral_id, "MHST001", "123456", sent.stage, "Days waited: 8"):
            assert fact in plain.get_content()
        assert sent.referral_id in html.get_content()
    hooks = rig.receiver.accepted()
    assert sorted(hook.body["referral_id"] for hook in hooks) == ["R2", "R4"]
    for hook in hooks:
        assert hook.webhook_id == delivery_id(hook.body["alert_id"], "icb")
        assert hook.body["recipient"] == "icb"
        assert hook.body["dashboard_url"].endswith(f"?var-team={hook.body['team_id']}")
    assert len(rig.receiver.requests) == 2  # none refused, none repeated
    assert deliveries(registry, "email", "manager", "delivered") == 3
    assert deliveries(registry, "webhook", "icb", "delivered") == 2


async def test_an_alert_sent_again_or_read_again_is_not_delivered_again(rig: Rig) -> None:
    breach = alert("R1", stage="intervention")
    registry = CollectorRegistry()
    config = config_of(rig.routing())
    async with rig.notifier(config, registry=registry):
        await rig.publish([breach, breach, b"not an alert", breach])
        await eventually(
            lambda: len(rig.receiver.accepted()) == 1 and len(rig.mailbox.received()) == 1
        )
        await asyncio.sleep(1)
    # Three copies for two recipients: two deliveries, four recognised.
    assert sample(registry, "mhst_notify_duplicates_total") == 4
    assert sample(registry, "mhst_notify_invalid_alerts_total") == 1
    # A notifier of another group reads the whole topic again: the ledger stops it.
    second = CollectorRegistry()
    async with rig.notifier(config, registry=second, group="second"):
        await eventually(lambda: sample(second, "mhst_notify_duplicates_total") == 6)
        await asyncio.sleep(1)
    assert len(rig.receiver.requests) == 1
    assert len(rig.mailbox.received()) == 1


async def test_a_notifier_moved_past_the_history_delivers_only_alerts_raised_after(
    rig: Rig,
) -> None:
    history = [alert(f"R{number}", stage="intervention") for number in range(4)]
    await rig.publish(history)
    options = ConsumerOptions(rig.bootstrap, rig.topic, f"{rig.topic}.notifier")
    assert await skip_to_end(options) == len(history)
    assert await skip_to_end(options) == 0  # already past them
    news = alert("R9", stage="intervention")
    async with rig.notifier(config_of(rig.routing())):
        await rig.publish([news])
        await eventually(
            lambda: len(rig.receiver.accepted()) == 1 and len(rig.mailbox.received()) == 1,
            what="the new breach",
        )
        with pytest.raises(NotifierRunning, match="stop it first; nothing was skipped"):
            await skip_to_end(options)  # the notifier delivering is in the group
        await asyncio.sleep(1)  # nothing of the history follows
    assert [hook.body["referral_id"] for hook in rig.receiver.accepted()] == ["R9"]
    assert message_ids(rig.mailbox.received()) == [
        f"<{delivery_id(news.alert_id, 'manager')}@mhst.test>"
    ]


async def test_withdrawal_after_delivery_sends_one_correction_before_delivery_none(
    rig: Rig,
) -> None:
    delivered = alert("R1", stage="intervention")
    digest_only = alert("R2", stage="intervention")
    # The tracker's clock at 01:01 local, on the alerts' day: the digest due is the
    # day before's, which holds nothing detected since, so R2 waits in the ledger.
    clock = ManualClock(DETECTED + timedelta(minutes=1))
    async with rig.notifier(config_of(rig.routing(DAILY)), clock=clock):
        await rig.publish([delivered, digest_only])
        await eventually(
            lambda: len(rig.receiver.accepted()) == 2 and len(rig.mailbox.received()) == 2
        )
        withdrawals = [
            alert("R1", kind=AlertKind.BREACH_WITHDRAWN, stage="intervention"),
            alert("R2", kind=AlertKind.BREACH_WITHDRAWN, stage="intervention"),
        ]
        await rig.publish([*withdrawals, withdrawals[0]])
        await eventually(
            lambda: len(rig.receiver.accepted()) == 4 and len(rig.mailbox.received()) == 4
        )
        await asyncio.sleep(1)
    corrections = [m for m in rig.mailbox.received() if str(m["Subject"]).startswith("Correction")]
    assert len(corrections) == 2  # R1 and R2 to the manager, once each
    for correction in corrections:
        referral = "R1" if "R1" in correction.get_body(("plain",)).get_content() else "R2"  # type: ignore[union-attr]
        earlier = (
            f"<{delivery_id(alert(referral, stage='intervention').alert_id, 'manager')}@mhst.test>"
        )
        assert correction["In-Reply-To"] == earlier
        assert correction["References"] == earlier
    hook_corrections = [h for h in rig.receiver.accepted() if h.body["kind"] == "breach_withdrawn"]
    assert len(hook_corrections) == 2
    for hook in hook_corrections:
        breach_id = alert(hook.body["referral_id"], stage="intervention").alert_id
        assert hook.body["corrects"] == {"message_id": delivery_id(breach_id, "icb")}
    # The digest recipient had neither breach delivered: both are cancelled, no correction.
    rows = await _ledger_rows(rig, "daily")
    assert rows == {"cancelled": 2}


async def _ledger_rows(rig: Rig, recipient: str) -> dict[str, int]:
    from mhst_tracker.adapters.store.ledger import Ledger

    ledger = await Ledger.open(rig.store_url)
    try:
        counts = await ledger.counts()
    finally:
        await ledger.close()
    return {status: n for (name, status), n in counts.items() if name == recipient}
