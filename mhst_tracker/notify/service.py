"""The notifier at work: alerts routed, recorded in the ledger, sent, retried, digested.

:class:`Notifier` does one thing at a time, each to completion, so its caller (the Kafka
loop of :mod:`mhst_tracker.notify.consumer`, or ``notify retry``) knows when every outcome
is recorded:

* :meth:`Notifier.deliver`: a batch of alerts. Breaches and warnings are routed; a digest
  recipient's are queued in the ledger; an immediate recipient's are sent in rounds of up
  to ``concurrency``: each round's deliveries are claimed in the ledger (one statement),
  sent at once, and their outcomes written (one more), so a notifier that stops leaves at
  most one round's deliveries with no outcome. Withdrawals come after the batch's breaches:
  each recipient that was sent the breach gets a correction naming that message; a breach
  not delivered yet (queued, waiting for a retry, failed) is cancelled instead.
* :meth:`Notifier.retry_due`: deliveries whose retry is due, and those a stopped notifier
  left in flight.
* :meth:`Notifier.send_digests`: each digest recipient's latest digest due and not sent.
* :meth:`Notifier.forward_operations`: Alertmanager's alerts about the tracker, to the
  operations recipients.

Log lines carry counts, recipient names and failure kinds, never an id.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from mhst_tracker.adapters.metrics import NotifierMetrics
from mhst_tracker.adapters.notify import DeliveryError, Sender
from mhst_tracker.adapters.store.backend import chunks
from mhst_tracker.adapters.store.ledger import Claim, DigestClaim, Job, Ledger, Outcome, Status
from mhst_tracker.domain.alerts import Alert, AlertKind
from mhst_tracker.notify.config import Channel, Mode, NotifyConfig, Recipient
from mhst_tracker.notify.messages import Notice, alert_notice, digest_notice, operations_notice
from mhst_tracker.notify.routing import delivery_id, digest_id, recipients_of, withdrawn_breach
from mhst_tracker.notify.schedule import digest_moment, due_digest_day, next_attempt
from mhst_tracker.timesource import TimeSource

log = logging.getLogger(__name__)

DigestListener = Callable[[Recipient, Notice], None]
"""Told of each digest sent (the demo prints them)."""


def wall_now() -> datetime:
    """The wall clock, for the ledger's attempt times and the retries' waits."""
    return datetime.now(UTC)


class Notifier:
    """Delivers alerts to the recipients of a routing file, exactly once each."""

    def __init__(
        self,
        config: NotifyConfig,
        ledger: Ledger,
        senders: Mapping[Channel, Sender],
        metrics: NotifierMetrics,
        clock: TimeSource,
        *,
        draw: Callable[[], float] = random.random,
        wall: Callable[[], datetime] = wall_now,
        on_digest: DigestListener | None = None,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.senders = senders
        self.metrics = metrics
        self.clock = clock
        self.draw = draw
        self.wall = wall
        self.on_digest = on_digest
        self.delivery = config.delivery

    # --- alerts --------------------------------------------------------------------------

    async def deliver(self, alerts: Sequence[Alert]) -> None:
        """Route, record and send a batch of alerts; returns once every outcome is in the
        ledger (delivered, queued, waiting for a retry, failed or cancelled)."""
        raised = [alert for alert in alerts if alert.kind is not AlertKind.BREACH_WITHDRAWN]
        withdrawals = [alert for alert in alerts if alert.kind is AlertKind.BREACH_WITHDRAWN]
        immediate: list[Job] = []
        digested: list[Job] = []
        for alert in raised:
            for recipient in recipients_of(alert, self.config.recipients):
                job = self._job(alert, recipient)
                (digested if recipient.mode is Mode.DIGEST else immediate).append(job)
        await self._queue(digested)
        await self._send_jobs(immediate)
        corrections, digested_corrections = await self._withdraw(withdrawals)
        await self._queue(digested_corrections)
        await self._send_jobs(corrections)

    def _job(self, alert: Alert, recipient: Recipient, corrects: str | None = None) -> Job:
        return Job(
            alert=alert,
            recipient=recipient.name,
            channel=recipient.channel.value,
            mode=recipient.mode.value,
            message_id=delivery_id(alert.alert_id, recipient.name),
            corrects=corrects,
        )

    async def _queue(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            return
        new = await self.ledger.queue(jobs, self.wall())
        self.metrics.duplicates.inc(len(jobs) - new)

    async def _withdraw(self, withdrawals: Sequence[Alert]) -> tuple[list[Job], list[Job]]:
        """The corrections the withdrawals call for (immediate, then for digests), after
        cancelling the breaches not delivered yet. Their breaches must be recorded first:
        they are earlier on the same partition, so in this batch or an earlier one."""
        if not withdrawals:
            return [], []
        breaches = {withdrawn_breach(alert): alert for alert in withdrawals}
        immediate: list[Job] = []
        digested: list[Job] = []
        cancel: list[int] = []
        for row in await self.ledger.deliveries_of(list(breaches)):
            if row.status in (Status.QUEUED, Status.PENDING, Status.FAILED):
                cancel.append(row.id)
                continue
            if row.status not in (Status.DELIVERED, Status.SENDING):
                continue
            try:
                recipient = self.config.recipient(row.recipient)
            except KeyError:
                continue
            job = self._job(breaches[row.alert_id], recipient, corrects=row.message_id)
            (digested if recipient.mode is Mode.DIGEST else immediate).append(job)
        if cancel:
            self.metrics.cancelled.inc(await self.ledger.cancel(cancel))
        # Only the first of a batch's duplicate withdrawals counts: the rest share its key.
        return _unique(immediate), _unique(digested)

    async def _send_jobs(self, jobs: Sequence[Job]) -> None:
        """Claim and send immediate deliveries, one round of ``concurrency`` at a time."""
        for part in chunks(jobs, self.delivery.concurrency):
            now = self.wall()
            claims = await self.ledger.claim(part, now, self._stale_before(now))
            self.metrics.duplicates.inc(len(part) - len(claims))
            await self._send_claims(claims)

    async def retry_due(self) -> tuple[int, int]:
        """Send the deliveries whose retry is due and those a stopped notifier left in
        flight, round by round; how many were attempted, and how many delivered."""
        attempted = delivered = 0
        while True:
            now = self.wall()
            claims = await self.ledger.due(now, self._stale_before(now), self.delivery.concurrency)
            if not claims:
                return attempted, delivered
            outcomes = await self._send_claims(claims)
            attempted += len(outcomes)
            delivered += sum(outcome.error is None for outcome in outcomes)

    def _stale_before(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.delivery.claim_timeout_seconds)

    async def _send_claims(self, claims: Sequence[Claim]) -> list[Outcome]:
        if not claims:
            return []
        outcomes = await asyncio.gather(*(self._attempt(claim) for claim in claims))
        await self.ledger.record(outcomes, self.wall())
        return outcomes

    async def _attempt(self, claim: Claim) -> Outcome:
        try:
            recipient = self.config.recipient(claim.recipient)
        except KeyError:
            log.warning("a delivery's recipient is no longer in the routing file: failed")
            return Outcome(claim.id, "recipient no longer configured")
        channel = recipient.channel.value
        if claim.resent:
            self.metrics.resent.labels(channel, recipient.name).inc()
        notice = alert_notice(
            claim.alert,
            recipient,
            claim.message_id,
            self.config.dashboard_url,
            refers_to=claim.corrects,
        )
        try:
            await self.senders[recipient.channel].send(notice, recipient)
        except DeliveryError as error:
            retry_at = next_attempt(claim.attempts + 1, self.delivery, self.wall(), self.draw())
            outcome = "failed" if retry_at is None else "retrying"
            self.metrics.deliveries.labels(channel, recipient.name, outcome).inc()
            log.warning("delivery to %s %s: %s", recipient.name, outcome, error.reason)
            return Outcome(claim.id, error.reason, retry_at)
        self.metrics.deliveries.labels(channel, recipient.name, "delivered").inc()
        self._observe_lag(channel, claim.alert.detected_at)
        return Outcome(claim.id)

    def _observe_lag(self, channel: str, detected_at: datetime) -> None:
        lag = (self.clock.now() - detected_at).total_seconds()
        self.metrics.lag.labels(channel).observe(max(0.0, lag))

    # --- digests -------------------------------------------------------------------------

    async def send_digests(self) -> int:
        """Send each digest recipient's latest digest that is due and not yet sent (a
        missed one too, once); how many were sent."""
        sent = 0
        now = self.clock.now()
        for recipient in self.config.recipients:
            if recipient.mode is not Mode.DIGEST or recipient.digest_at is None:
                continue
            day = due_digest_day(now, recipient.digest_at, recipient.timezone)
            wall = self.wall()
            claim = await self.ledger.claim_digest(
                recipient.name,
                day,
                digest_id(recipient.name, day),
                wall,
                self._stale_before(wall),
            )
            if claim is not None:
                sent += await self._send_digest(recipient, claim)
        return sent

    async def _send_digest(self, recipient: Recipient, claim: DigestClaim) -> int:
        assert recipient.digest_at is not None
        moment = digest_moment(claim.day, recipient.digest_at, recipient.timezone)
        queued = await self.ledger.queued(recipient.name, moment)
        notice = digest_notice(
            recipient,
            claim.day,
            [alert for _, alert in queued],
            claim.message_id,
            self.config.dashboard_url,
        )
        ids = [row_id for row_id, _ in queued]
        if notice is None:
            await self.ledger.record_digest(claim, ids, self.wall(), sent=False)
            self.metrics.digests.labels(recipient.name, "empty").inc()
            return 0
        if claim.resent:
            self.metrics.resent.labels(recipient.channel.value, recipient.name).inc()
        try:
            await self.senders[recipient.channel].send(notice, recipient)
        except DeliveryError as error:
            retry_at = next_attempt(claim.attempts + 1, self.delivery, self.wall(), self.draw())
            outcome = "failed" if retry_at is None else "retrying"
            self.metrics.digests.labels(recipient.name, outcome).inc()
            log.warning("digest to %s %s: %s", recipient.name, outcome, error.reason)
            await self.ledger.record_digest(
                claim, ids, self.wall(), sent=False, error=error.reason, retry_at=retry_at
            )
            return 0
        await self.ledger.record_digest(claim, ids, self.wall(), sent=True)
        self.metrics.digests.labels(recipient.name, "delivered").inc()
        for _, alert in queued:
            self._observe_lag(recipient.channel.value, alert.detected_at)
        log.info("digest of %s sent to %s (%d alerts)", claim.day, recipient.name, len(ids))
        if self.on_digest is not None:
            self.on_digest(recipient, notice)
        return 1

    # --- Alertmanager ----------------------------------------------------------------------

    async def forward_operations(self, payload: Mapping[str, Any]) -> bool:
        """Send an Alertmanager notification to every operations recipient; whether all
        took it (Alertmanager sends it again otherwise)."""
        key = f"{payload.get('groupKey', '')}\x1f{payload.get('status', '')}"
        fingerprints = sorted(
            str(alert.get("fingerprint", ""))
            for alert in payload.get("alerts", [])
            if isinstance(alert, Mapping)
        )
        results = await asyncio.gather(
            *(
                self._forward(recipient, payload, f"{key}\x1f{','.join(fingerprints)}")
                for recipient in self.config.operations
            )
        )
        delivered = all(results)
        self.metrics.operations.labels("delivered" if delivered else "retrying").inc()
        return delivered

    async def _forward(self, recipient: Recipient, payload: Mapping[str, Any], key: str) -> bool:
        notice = operations_notice(payload, delivery_id(key, recipient.name))
        try:
            await self.senders[recipient.channel].send(notice, recipient)
        except DeliveryError as error:
            log.warning("operations alert to %s not delivered: %s", recipient.name, error.reason)
            return False
        return True


def _unique(jobs: Sequence[Job]) -> list[Job]:
    seen: set[tuple[str, str]] = set()
    kept: list[Job] = []
    for job in jobs:
        key = (job.alert.alert_id, job.recipient)
        if key not in seen:
            seen.add(key)
            kept.append(job)
    return kept
