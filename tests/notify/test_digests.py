"""Digests at 08:00 local time across the changes to and from British Summer Time, driven by
a simulated clock; a digest missed while the notifier was down is sent once when it comes
back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.message import EmailMessage
from functools import partial
from typing import Final

from mhst_tracker.notify.routing import digest_id
from mhst_tracker.timesource import ManualClock
from tests.notify.conftest import DAILY, Rig, config_of, eventually
from tests.unit.notify.builders import alert


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def digests(rig: Rig) -> list[str]:
    return [
        str(message["Subject"])
        for message in rig.mailbox.received()
        if str(message["To"]) == "daily@mhst.test"
    ]


async def step(clock: ManualClock, moment: str, settle: float = 1.2) -> None:
    clock.moment = utc(moment)
    await asyncio.sleep(settle)


def _accepted(rig: Rig, count: int) -> bool:
    return len(rig.receiver.accepted()) == count


SUMMER_TIME_DAYS: Final = [
    # (referral, its breach detected at, a second before 08:00 local, 08:00 local, the day)
    # Greenwich Mean Time: 08:00 local is 08:00 UTC.
    ("R1", "2026-03-28T00:00:00", "2026-03-28T07:59:59", "2026-03-28T08:00:00", "2026-03-28"),
    # British Summer Time from 01:00 UTC on 29 March: 08:00 local is 07:00 UTC.
    ("R2", "2026-03-29T00:30:00", "2026-03-29T06:59:59", "2026-03-29T07:00:00", "2026-03-29"),
    # Back to Greenwich Mean Time at 01:00 UTC on 25 October: 08:00 local is 08:00 UTC.
    ("R3", "2026-10-24T12:00:00", "2026-10-25T07:00:00", "2026-10-25T08:00:00", "2026-10-25"),
]


async def test_digest_at_eight_local_across_summer_time(rig: Rig) -> None:
    clock = ManualClock(utc("2026-03-28T07:00:00"))
    config = config_of(rig.routing(DAILY))
    async with rig.notifier(config, clock=clock):
        for sent, (referral, detected_at, before, eight, day) in enumerate(SUMMER_TIME_DAYS):
            await rig.publish([alert(referral, stage="intervention", detected_at=utc(detected_at))])
            await eventually(
                partial(_accepted, rig, sent + 1), what=f"immediate webhook {sent + 1}"
            )
            await step(clock, before)
            assert len(digests(rig)) == sent
            await step(clock, eight)
            assert digests(rig)[sent:] == [f"Daily digest {day}: 1 breach"]
    (last,) = [m for m in rig.mailbox.received() if str(m["Subject"]).endswith("10-25: 1 breach")]
    assert (
        last["Message-ID"] == f"<{digest_id('daily', utc('2026-10-25T00:00:00').date())}@mhst.test>"
    )
    body = last.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    text = body.get_content().replace("\r\n", "\n")
    assert "Team MHST001\n  intervention, breach: 1" in text
    assert "referral R3" in text


async def test_a_digest_missed_while_down_is_sent_once_when_back(rig: Rig) -> None:
    clock = ManualClock(utc("2026-11-02T09:00:00"))
    config = config_of(rig.routing(DAILY))
    async with rig.notifier(config, clock=clock):
        await asyncio.sleep(1.5)  # the 2 November digest, empty: nothing sent
    # Down from here; two alerts arrive and two 08:00s pass.
    await rig.publish(
        [
            alert("R1", stage="intervention", detected_at=utc("2026-11-03T00:00:00")),
            alert("R2", stage="intervention", detected_at=utc("2026-11-03T12:00:00")),
        ]
    )
    clock.moment = utc("2026-11-04T10:00:00")
    for _ in range(2):
        async with rig.notifier(config, clock=clock):
            await eventually(lambda: len(digests(rig)) == 1, what="the missed digest")
            await asyncio.sleep(1.5)
    assert digests(rig) == ["Daily digest 2026-11-04: 2 breaches"]
