"""The delivery ledger's contract, on SQLite and PostgreSQL alike (``store_url``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest

from mhst_tracker.adapters.store.database import create_engine, upgrade
from mhst_tracker.adapters.store.ledger import Job, Ledger, Outcome, Status
from tests.unit.notify.builders import alert

NOW = datetime(2026, 9, 15, 9, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
STALE = timedelta(seconds=60)


@pytest.fixture
async def ledger(store_url: str) -> AsyncIterator[Ledger]:
    engine = create_engine(store_url)
    await upgrade(engine)
    ledger = Ledger(engine)
    try:
        yield ledger
    finally:
        await ledger.close()


def job(referral: str = "R1", recipient: str = "manager") -> Job:
    return Job(alert(referral), recipient, "email", "immediate", f"{referral}-{recipient}")


async def test_a_job_is_claimed_once_then_recognised(ledger: Ledger) -> None:
    jobs = [job("R1"), job("R2"), job("R1", "icb")]
    claims = await ledger.claim(jobs, NOW, NOW - STALE)
    assert sorted((c.alert.referral_id, c.recipient) for c in claims) == [
        ("R1", "icb"), ("R1", "manager"), ("R2", "manager"),
    ]  # fmt: skip
    assert all(not claim.resent and claim.attempts == 0 for claim in claims)
    assert {claim.alert for claim in claims} == {job.alert for job in jobs}
    await ledger.record([Outcome(claim.id) for claim in claims], NOW)
    assert await ledger.claim(jobs, LATER, LATER - STALE) == []
    assert await ledger.counts() == {("manager", "delivered"): 2, ("icb", "delivered"): 1}


async def test_a_delivery_left_in_flight_is_taken_over_after_the_timeout(ledger: Ledger) -> None:
    (first,) = await ledger.claim([job()], NOW, NOW - STALE)
    assert await ledger.claim([job()], NOW + STALE / 2, NOW - STALE / 2) == []
    assert await ledger.due(NOW + STALE / 2, NOW - STALE / 2, 10) == []
    (again,) = await ledger.claim([job()], NOW + 2 * STALE, NOW + STALE)
    assert (again.id, again.resent, again.message_id) == (first.id, True, first.message_id)
    (swept,) = await ledger.due(NOW + 4 * STALE, NOW + 3 * STALE, 10)
    assert (swept.id, swept.resent) == (first.id, True)


async def test_retries_come_due_and_run_out(ledger: Ledger) -> None:
    (claim,) = await ledger.claim([job()], NOW, NOW - STALE)
    await ledger.record(
        [Outcome(claim.id, "webhook answered 500", NOW + timedelta(seconds=30))], NOW
    )
    assert await ledger.counts() == {("manager", "pending"): 1}
    assert await ledger.claim([job()], NOW, NOW - STALE) == []
    assert await ledger.due(NOW + timedelta(seconds=29), NOW - STALE, 10) == []
    (retry,) = await ledger.due(NOW + timedelta(seconds=30), NOW - STALE, 10)
    assert (retry.id, retry.attempts, retry.resent) == (claim.id, 1, False)
    await ledger.record([Outcome(retry.id, "webhook timed out", None)], LATER)
    assert await ledger.counts() == {("manager", "failed"): 1}
    assert await ledger.due(LATER + timedelta(days=1), LATER, 10) == []
    assert await ledger.reopen_failed(LATER) == 1
    (reopened,) = await ledger.due(LATER, LATER - STALE, 10)
    assert reopened.attempts == 0
    await ledger.record([Outcome(reopened.id)], LATER)
    assert await ledger.counts() == {("manager", "delivered"): 1}


async def test_an_error_is_kept_short(ledger: Ledger) -> None:
    (claim,) = await ledger.claim([job()], NOW, NOW - STALE)
    await ledger.record([Outcome(claim.id, "x" * 1000, None)], NOW)
    assert await ledger.counts() == {("manager", "failed"): 1}


async def test_digest_queue_withdrawal_and_cancel(ledger: Ledger) -> None:
    queued = [
        Job(alert("R1", detected_at=NOW - timedelta(hours=2)), "icb", "email", "digest", "q1"),
        Job(alert("R2", detected_at=NOW + timedelta(hours=1)), "icb", "email", "digest", "q2"),
    ]
    assert await ledger.queue(queued, NOW) == 2
    assert await ledger.queue(queued, NOW) == 0
    before = await ledger.queued("icb", NOW)
    assert [row_alert.referral_id for _, row_alert in before] == ["R1"]
    rows = await ledger.deliveries_of([queued[0].alert.alert_id, "no-such-alert"])
    assert [(row.recipient, row.status, row.mode) for row in rows] == [("icb", "queued", "digest")]
    assert await ledger.cancel([row.id for row in rows]) == 1
    assert await ledger.queued("icb", NOW) == []
    assert await ledger.cancel([row.id for row in rows]) == 0


async def test_a_digest_is_sent_once_and_carries_its_deliveries(ledger: Ledger) -> None:
    day = date(2026, 9, 15)
    await ledger.queue(
        [Job(alert("R1", detected_at=NOW - timedelta(hours=2)), "icb", "email", "digest", "q1")],
        NOW,
    )
    claim = await ledger.claim_digest("icb", day, "digest-1", NOW, NOW - STALE)
    assert claim is not None
    assert not claim.resent
    assert await ledger.claim_digest("icb", day, "digest-1", NOW, NOW - STALE) is None
    included = [row_id for row_id, _ in await ledger.queued("icb", NOW)]
    await ledger.record_digest(claim, included, NOW, sent=True)
    assert await ledger.claim_digest("icb", day, "digest-1", LATER, LATER) is None
    (row,) = await ledger.deliveries_of([alert("R1").alert_id])
    assert (row.status, row.message_id) == (Status.DELIVERED, "digest-1")


async def test_a_failed_digest_is_retried_and_an_abandoned_one_taken_over(ledger: Ledger) -> None:
    day = date(2026, 9, 15)
    claim = await ledger.claim_digest("icb", day, "d", NOW, NOW - STALE)
    assert claim is not None
    await ledger.record_digest(
        claim, [], NOW, sent=False, error="SMTP server answered 451", retry_at=LATER
    )
    assert await ledger.claim_digest("icb", day, "d", NOW, NOW - STALE) is None
    retry = await ledger.claim_digest("icb", day, "d", LATER, LATER - STALE)
    assert retry is not None
    assert (retry.attempts, retry.resent) == (1, False)
    taken = await ledger.claim_digest("icb", day, "d", LATER + 2 * STALE, LATER + STALE)
    assert taken is not None
    assert taken.resent


async def test_concurrent_claims_of_the_same_jobs_claim_each_once(ledger: Ledger) -> None:
    jobs = [job(f"R{number}") for number in range(200)]
    results = await asyncio.gather(
        *(ledger.claim(jobs[offset:] + jobs[:offset], NOW, NOW - STALE) for offset in (0, 50, 100))
    )
    claimed = [claim.alert.referral_id for result in results for claim in result]
    assert sorted(claimed) == sorted(f"R{number}" for number in range(200))
